"""Which items and users need teacher text: the scope of notebooks 02-05 (ENRICH_SCOPE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from rrlib.config.params import Config, run_seeds
from rrlib.data.schema import as_list, eval_subset, kshot
from rrlib.methods import registry
from rrlib.methods.retrieval import RetrievalConfig, candidate_lists, ranking_examples


@dataclass(frozen=True)
class Scope:
    """The items and users that need text, and the examples that make them needed."""

    item_ids: list[str]
    user_ids: list[str]
    examples: pd.DataFrame
    mode: str

    def summary(self) -> dict[str, Any]:
        counts = self.examples["split"].value_counts().to_dict() if len(self.examples) else {}
        return {
            "mode": self.mode,
            "n_items": len(self.item_ids),
            "n_users": len(self.user_ids),
            "examples_by_split": {str(k): int(v) for k, v in counts.items()},
        }


def scoped_examples(examples: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The K-shot training examples for max(KSHOT_SIZES) and the valid/test subsamples."""
    sizes = cfg.data.kshot_sizes
    if not sizes:
        raise ValueError("KSHOT_SIZES is empty: give at least one training-set size.")
    parts = [
        kshot(examples, max(sizes), seed=s, base_seed=cfg.common.seed, sampling=cfg.data.kshot_sampling)
        for s in run_seeds(cfg)
    ]
    parts += [eval_subset(examples, "valid", cfg.data.n_valid), eval_subset(examples, "test", cfg.data.n_test)]
    return pd.concat(parts, ignore_index=True).drop_duplicates("example_id")


def reranking_items(examples: pd.DataFrame, interactions: pd.DataFrame, cfg: Config) -> set[str]:
    """The items of the rerankers' candidate lists (:func:`rrlib.methods.retrieval.candidate_lists`
    of the RANK_USERS ranking users, under RANK_PROTOCOLS) when EVAL_METHODS holds a reranker, else
    none. They need the texts the held-out item has (it is a test target, so in scope): otherwise
    the one candidate with a description would give the held-out item away."""

    wanted = [m for m in cfg.evaluate.eval_methods if m in registry.REGISTRY and registry.get(m).kind == "reranker"]
    if not wanted:
        return set()
    rank = ranking_examples(examples, cfg.exp3rt.rank_users, within=cfg.data.n_test)
    if rank.empty:
        return set()
    lists, _ = candidate_lists(
        cfg.exp3rt.retriever,
        interactions,
        examples,
        rank,
        RetrievalConfig.from_config(cfg),
        list(cfg.exp3rt.rank_protocols),
    )
    return set(lists["item_id"].astype(str))


def enrichment_scope(
    items: pd.DataFrame,
    users: pd.DataFrame,
    examples: pd.DataFrame,
    cfg: Config,
    interactions: pd.DataFrame | None = None,
) -> Scope:
    """ENRICH_SCOPE 'needed': the users of the scoped examples and every item they touch (targets,
    histories, profile items), and with ``interactions`` the rerankers' candidates
    (:func:`reranking_items`); 'all': every item and user of the tables."""
    mode = cfg.enrich.enrich_scope
    if mode == "all":
        return Scope(sorted(map(str, items["item_id"])), sorted(map(str, users["user_id"])), examples, mode)
    if mode != "needed":
        raise ValueError(f"ENRICH_SCOPE={mode!r} is not 'needed' or 'all'.")
    ex = scoped_examples(examples, cfg)
    user_ids = sorted(set(map(str, ex["user_id"])))
    needed: set[str] = set(map(str, ex["target_item_id"]))
    for hist in ex["history_item_ids"]:
        needed.update(map(str, as_list(hist)))
    profiled = users[users["user_id"].astype(str).isin(user_ids)]
    for ids in profiled["profile_item_ids"]:
        needed.update(map(str, as_list(ids)))
    if interactions is not None:
        needed |= reranking_items(examples, interactions, cfg)
    unknown = needed - set(map(str, items["item_id"]))
    if unknown:
        raise ValueError(
            f"examples/users tables name {len(unknown)} item(s) absent from the items table "
            f"(e.g. {sorted(unknown)[:3]}); the run folder's data tables are inconsistent — "
            f"rerun 01_data_prep."
        )
    return Scope(sorted(needed), user_ids, ex, mode)
