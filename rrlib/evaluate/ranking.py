"""Metrics of the top-k ranking task (rankings.parquet, :func:`rrlib.predictions.ranking_rows`).

Protocol: every evaluated user has exactly **one** held-out target (the test interaction, which
the user liked), and each method ranks a list of items for that user; the lists come from one of
the named protocols of :mod:`rrlib.methods.retrieval` (``retrieved``: the retriever's top-N with
the target inserted; ``sampled``: the target plus sampled unrated items), and every table row
names its protocol. Methods are compared within a protocol only. With r the 1-based rank of the target in the
list (r = infinity when the target is not in it):

* HitRate@k = 1 if r <= k else 0: did the top k contain the target?
* Recall@k = |relevant in top k| / |relevant|; with a single relevant item it equals HitRate@k
  (both are reported, because papers name either).
* NDCG@k = DCG@k / IDCG@k with binary gain: 1 / log2(r + 1) if r <= k else 0 (the ideal list
  puts the single target first, so IDCG = 1).

Each is the mean over users, with a percentile bootstrap 95% interval over users (seeded), and
:func:`paired_ranking_difference` compares two rankings of the same users (a reranker with the
retriever whose candidates it reorders, or any method with the strongest retriever). A user
whose list lacks the target counts as 0, and so does a user in ``users`` with no list at all.
A reranker only reorders its candidates, so at k >= the list length its Recall equals the
retriever's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from rrlib.errors import PredictionsError
from rrlib.methods import registry
from rrlib.predictions import LEGACY_PROTOCOL, RANKING_BLOCK, check_rankings

METRICS = ("ndcg", "recall", "hit")
DEFAULT_CUTOFFS = (5, 10, 20)


def target_ranks(block: pd.DataFrame, users: Iterable[str] | None = None) -> pd.Series:
    """Rank of each user's target in one (method, K, seed) block (NaN: not in the list), indexed
    by user_id; ``users`` adds the users that have no list (NaN)."""
    n_targets = block.groupby("user_id")["is_target"].sum()
    if (n_targets > 1).any():
        u = n_targets[n_targets > 1].index[0]
        raise PredictionsError(
            f"user {u}: more than one ranked item is marked is_target; the ranking protocol has "
            f"one held-out target per user."
        )
    listed = pd.Series(np.nan, index=pd.Index(block["user_id"].astype(str).unique(), name="user_id"))
    hits = block[block["is_target"].astype(bool)]
    listed.loc[hits["user_id"].astype(str).to_numpy()] = hits["rank"].astype(float).to_numpy()
    if users is not None:
        listed = listed.reindex(sorted(set(listed.index) | {str(u) for u in users}))
    return listed


def per_user_metrics(ranks: pd.Series, cutoffs: Sequence[int] = DEFAULT_CUTOFFS) -> pd.DataFrame:
    """Per user: ``target_rank`` and ``ndcg@k``, ``recall@k``, ``hit@k`` for each cutoff."""
    if any(int(k) < 1 for k in cutoffs):
        raise PredictionsError(f"ranking cutoffs must be >= 1, got {list(cutoffs)}.")
    r = ranks.to_numpy(dtype=float)
    out = pd.DataFrame({"target_rank": r}, index=ranks.index)
    for k in cutoffs:
        inside = np.isfinite(r) & (r <= k)
        hit = inside.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"ndcg@{k}"] = np.where(inside, 1.0 / np.log2(np.where(inside, r, 1.0) + 1.0), 0.0)
        out[f"recall@{k}"] = hit  # single relevant item: recall = hit
        out[f"hit@{k}"] = hit
    return out


def _boot_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // max(len(values), 1))
    parts = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, len(values), size=(min(chunk, n_boot - start), len(values)))
        parts.append(values[idx].mean(axis=1))
    return np.concatenate(parts)


def mean_with_ci(values: Iterable[float], *, n_boot: int, seed: int, level: float = 0.95) -> dict[str, Any]:
    """Mean of per-user values with a percentile bootstrap interval over users."""
    v = np.asarray(list(values), dtype=float)
    if not len(v):
        raise PredictionsError("mean_with_ci: no users to average over.")
    if np.isnan(v).any():
        raise PredictionsError(f"mean_with_ci: {int(np.isnan(v).sum())} per-user value(s) are NaN.")
    out = {"mean": float(v.mean()), "ci_low": math.nan, "ci_high": math.nan, "n": int(len(v))}
    if n_boot > 0:
        alpha = (1 - level) / 2
        out["ci_low"], out["ci_high"] = (
            float(x) for x in np.quantile(_boot_means(v, n_boot, seed), [alpha, 1 - alpha])
        )
    return out


def paired_ranking_difference(
    a: pd.Series, b: pd.Series, *, n_boot: int, seed: int, level: float = 0.95
) -> dict[str, Any]:
    """mean(a) - mean(b) of a per-user metric over the users both hold (Series indexed by
    user_id), with a paired bootstrap interval over users and a two-sided bootstrap p-value
    ``2 * min(P(d <= 0), P(d >= 0))``."""
    common = a.index.intersection(b.index)
    if not len(common):
        raise PredictionsError("paired_ranking_difference: the two rankings share no user.")
    d = a.loc[common].to_numpy(dtype=float) - b.loc[common].to_numpy(dtype=float)
    out = {
        "delta": float(d.mean()),
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p_value": math.nan,
        "n": int(len(d)),
        "n_only_a": int(len(a.index.difference(common))),
        "n_only_b": int(len(b.index.difference(common))),
    }
    if n_boot > 0:
        boot = _boot_means(d, n_boot, seed)
        alpha = (1 - level) / 2
        out["ci_low"], out["ci_high"] = (float(x) for x in np.quantile(boot, [alpha, 1 - alpha]))
        out["p_value"] = min(1.0, 2 * min(float(np.mean(boot <= 0)), float(np.mean(boot >= 0))))
    return out


RANKING_RESULT_COLUMNS = [
    "dataset",
    "protocol",
    "method",
    "label",
    "k",
    "seed",
    "cutoff",
    "n_users",
    "list_length",
    "ndcg",
    "ndcg_ci_low",
    "ndcg_ci_high",
    "recall",
    "recall_ci_low",
    "recall_ci_high",
    "hit",
    "hit_ci_low",
    "hit_ci_high",
    "reference",
    "delta_ndcg",
    "delta_ndcg_ci_low",
    "delta_ndcg_ci_high",
    "delta_ndcg_p",
    "delta_hit",
    "delta_hit_ci_low",
    "delta_hit_ci_high",
    "delta_hit_p",
    "delta_n_users",
    "note",
]


def strongest_retriever(
    per_block: Mapping[tuple, pd.DataFrame], cutoff: int, protocol: str | None = None
) -> str | None:
    """The retriever (registry kind ``retriever``) with the highest mean NDCG@cutoff (among the
    blocks of ``protocol`` when given; block keys are (method, k, seed[, protocol]))."""
    best, best_v = None, -math.inf
    for key, table in per_block.items():
        method = key[0]
        if protocol is not None and len(key) > 3 and key[3] != protocol:
            continue
        if registry.REGISTRY.get(method) is None or registry.get(method).kind != "retriever":
            continue
        v = float(table[f"ndcg@{cutoff}"].mean())
        if v > best_v:
            best, best_v = method, v
    return best


def score_rankings(
    rankings: pd.DataFrame,
    *,
    n_boot: int,
    seed: int,
    cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
    dataset: str = "",
    users: Iterable[str] | None = None,
    references: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every (method, K, seed, protocol) block of a rankings table: one row per block and
    cutoff with NDCG / Recall / HitRate @cutoff and their intervals, and the paired difference
    (NDCG, hit) with a reference ranking of the same protocol, on the users both rank.
    ``references``: method -> the method to compare it with (e.g. a reranker -> its retriever);
    others are compared with the protocol's strongest retriever by NDCG@10 (or the largest cutoff
    below 10). ``users``: every user that should have a list (missing ones count as misses).
    A cutoff at or above a block's list length is noted: every list then holds the target.
    Returns ``(results, per_user)``."""
    check_rankings(rankings)
    cutoffs = sorted({int(k) for k in cutoffs})
    if not cutoffs:
        raise PredictionsError("score_rankings: no cutoffs given.")
    per_block: dict[tuple, pd.DataFrame] = {}
    lengths: dict[tuple, float] = {}
    for key, block in rankings.groupby(RANKING_BLOCK, sort=False):
        key = (str(key[0]), int(key[1]), int(key[2]), str(key[3]))
        per_block[key] = per_user_metrics(target_ranks(block, users), cutoffs)
        lengths[key] = float(block.groupby("user_id").size().median())
    pick = max([k for k in cutoffs if k <= 10] or [cutoffs[0]])
    default_ref = {p: strongest_retriever(per_block, pick, p) for p in {key[3] for key in per_block}}
    references = dict(references or {})
    rows, per_user = [], []
    for key, table in per_block.items():
        method, k, s, protocol = key
        ref = references.get(method, default_ref[protocol])
        same = [rk for rk in per_block if rk[0] == ref and rk[3] == protocol]
        ref_key = next((rk for rk in same if rk[2] == s), None) or next(iter(same), None)
        per_user.append(table.reset_index().assign(method=method, k=k, seed=s, protocol=protocol))
        for cutoff in cutoffs:
            row: dict[str, Any] = {
                "dataset": dataset,
                "protocol": protocol,
                "method": method,
                "label": registry.label(method),
                "k": k,
                "seed": s,
                "cutoff": cutoff,
                "n_users": len(table),
                "list_length": lengths[key],
                "reference": ref or "",
                "note": "",
            }
            for m in METRICS:
                ci = mean_with_ci(table[f"{m}@{cutoff}"], n_boot=n_boot, seed=seed)
                row.update({m: ci["mean"], f"{m}_ci_low": ci["ci_low"], f"{m}_ci_high": ci["ci_high"]})
            row["delta_n_users"] = 0
            for m in ("ndcg", "hit"):
                row.update(
                    {
                        f"delta_{m}": math.nan,
                        f"delta_{m}_ci_low": math.nan,
                        f"delta_{m}_ci_high": math.nan,
                        f"delta_{m}_p": math.nan,
                    }
                )
            notes = []
            if cutoff >= lengths[key] and protocol != LEGACY_PROTOCOL:
                notes.append(f"cutoff >= list length {lengths[key]:g}: every list holds the target")
            if ref_key is not None and ref_key != key:
                for m in ("ndcg", "hit"):
                    d = paired_ranking_difference(
                        table[f"{m}@{cutoff}"], per_block[ref_key][f"{m}@{cutoff}"], n_boot=n_boot, seed=seed
                    )
                    row.update(
                        {
                            f"delta_{m}": d["delta"],
                            f"delta_{m}_ci_low": d["ci_low"],
                            f"delta_{m}_ci_high": d["ci_high"],
                            f"delta_{m}_p": d["p_value"],
                        }
                    )
                    row["delta_n_users"] = d["n"]
                    note = f"paired difference on the {d['n']} users both rankings hold"
                    if (d["n_only_a"] or d["n_only_b"]) and note not in notes:
                        notes.append(note)
            elif ref and ref_key is None:
                notes.append(f"reference {ref} has no ranking here")
            row["note"] = "; ".join(notes)
            rows.append(row)
    results = pd.DataFrame(rows, columns=RANKING_RESULT_COLUMNS)
    results = (
        results.assign(_o=results["method"].map(registry.order))
        .sort_values(["protocol", "_o", "k", "seed", "cutoff"], kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)
    )
    per = pd.concat(per_user, ignore_index=True) if per_user else pd.DataFrame()
    return results, per


__all__ = [
    "DEFAULT_CUTOFFS",
    "METRICS",
    "RANKING_RESULT_COLUMNS",
    "mean_with_ci",
    "paired_ranking_difference",
    "per_user_metrics",
    "score_rankings",
    "strongest_retriever",
    "target_ranks",
]
