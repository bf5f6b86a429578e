"""EXP3RT in notebook 07: the top-k ranking run (retrievers alone, popularity, lists reranked by
an LLM's score), the rating and ranking tables, and the faithfulness figures of every reasoning
method (ReasoningRec's on its prompts, EXP3RT's on its rating prompts). Its views of the notebook
are :func:`sections` (:mod:`rrlib.evaluate.families`); the faithfulness figures of every reasoning
method sit in EXP3RT's record (``exp3rt.faithfulness`` of the results), where they always were.

Reranking (issue 12, step 5; protocols issue 20): a ranking user is a test user whose held-out
item they liked. Under each protocol of RANK_PROTOCOLS (:mod:`rrlib.methods.retrieval`:
``retrieved``, the retriever's top RANK_CANDIDATES with the held-out item inserted when missing;
``sampled``, the held-out item plus RANK_CANDIDATES - 1 sampled items the user never rated) the
retrievers rank every ranking user of the test split (RANK_RETRIEVER_USERS, 0: all; cheap), and
the rerankers reorder the lists notebook 04 wrote for the first RANK_USERS ranking users of the
N_TEST subsample: the same lists the retriever ranks for those users (checked). A reranker
(registry kind ``reranker``) reorders each list by its ``scorer``'s score of every (user,
candidate) pair, ties broken by the retriever's score: the expected rating of an EXP3RT student,
or ReasoningRec's P(Yes). A candidate is scored with the user's test example, its target
replaced by the candidate (same history, same profile). Each reranker's paired difference with
the retriever is on the users both rank (bootstrap over users).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rrlib import predictions as pr
from rrlib.config.params import Config
from rrlib.enrich.preferences import rank_examples
from rrlib.errors import MethodError, MissingArtifactError
from rrlib.evaluate.context import EvaluationContext
from rrlib.evaluate.faithfulness import explanation_quality, prompt_known_texts
from rrlib.evaluate.llm import predict_llm
from rrlib.evaluate.ranking import score_rankings
from rrlib.evaluate.section import Section
from rrlib.evaluate.tables import markdown_table
from rrlib.methods import registry, retrieval
from rrlib.methods.retrieval import PROTOCOL_LABELS, rerank
from rrlib.prompts.exp3rt import RatingContext
from rrlib.student.prompts import PromptContext

FAMILY = "exp3rt"


@dataclass
class RankingPlan:
    """The ranking methods of EVAL_METHODS: retrievers alone, and rerankers with the runs of
    their scorer (method, K, seed, adapter folder or None for a zero-shot scorer)."""

    retrievers: list[str] = field(default_factory=list)
    rerankers: list[tuple[str, str, int, int, Path | None]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"retrievers": self.retrievers, "rerankers": [[r, s, k, seed] for r, s, k, seed, _ in self.rerankers]}


def ranking_plan(cfg: Config, paths, finetuned: Sequence[tuple[str, int, int]]) -> RankingPlan:
    """From EVAL_METHODS and the finetuned runs of the evaluation plan: a reranker of a finetuned
    scorer reranks with every (K, seed) of that scorer; its scorer must be in METHODS."""
    plan = RankingPlan()
    for m in cfg.evaluate.eval_methods:
        spec = registry.get(m)
        if spec.kind == "retriever":
            plan.retrievers.append(m)
        elif spec.kind == "reranker":
            scorer = registry.get(spec.scorer)
            if scorer.finetuned:
                runs = [(k, s) for name, k, s in finetuned if name == spec.scorer]
                if not runs:
                    raise MethodError(
                        f"EVAL_METHODS has {m!r}, which reranks by {spec.scorer!r}; put "
                        f"{spec.scorer!r} in METHODS so that it is trained."
                    )
                plan.rerankers += [
                    (m, spec.scorer, k, s, paths.adapter_dir(spec.scorer, k, s, cfg.common.seed)) for k, s in runs
                ]
            else:
                plan.rerankers.append((m, spec.scorer, 0, cfg.common.seed, None))
    return plan


def candidate_examples(candidates: pd.DataFrame, examples: pd.DataFrame) -> pd.DataFrame:
    """One example row per distinct (test example, candidate) pair (a candidate in several
    protocols' lists is scored once): the user's test example with the candidate as its target
    (``example_id`` '<test example>|<item>'; ``label`` 1 for the held-out target)."""
    candidates = candidates.drop_duplicates(["example_id", "item_id"])
    examples = examples.drop_duplicates("example_id")
    base = examples.set_index(examples["example_id"].astype(str))
    missing = sorted(set(candidates["example_id"].astype(str)) - set(base.index))
    if missing:
        raise MissingArtifactError(
            f"the candidate lists name {len(missing)} test example(s) absent from the "
            f"evaluated examples (e.g. {missing[0]}); rerun 04_review_preferences with this "
            f"N_TEST / RANK_USERS."
        )
    rows = base.loc[candidates["example_id"].astype(str)].reset_index(drop=True).copy()
    rows["example_id"] = [
        f"{e}|{i}" for e, i in zip(candidates["example_id"].astype(str), candidates["item_id"].astype(str))
    ]
    rows["target_item_id"] = candidates["item_id"].astype(str).to_numpy()
    rows["label"] = candidates["is_target"].astype(int).to_numpy()
    return rows


def rerank_with_llm(
    reranker: str,
    k: int,
    seed: int,
    candidates: pd.DataFrame,
    examples: pd.DataFrame,
    cfg: Config,
    ctx,
    adapter: Path | None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rankings rows of ``reranker`` (K, seed): its scorer scores every candidate (expected
    rating or P(Yes), cached like every prediction), :func:`rrlib.methods.retrieval.rerank` reorders."""
    spec = registry.get(reranker)
    if spec.kind != "reranker":
        raise MethodError(f"{reranker!r} is a {spec.kind} method, not a reranker.")
    scorer = registry.get(spec.scorer)
    ex = candidate_examples(candidates, examples)
    rows = predict_llm(spec.scorer, k, ex, cfg, ctx, adapter, seed=seed, reasoning_ids=[])
    score = rows["predicted_rating"] if scorer.task == "rating" else rows["p_yes"]
    table = pd.DataFrame(
        {
            "user_id": ex["user_id"].astype(str).to_numpy(),
            "item_id": ex["target_item_id"].astype(str).to_numpy(),
            "score": score.to_numpy(),
        }
    )
    return rerank(candidates, table, method=reranker, k=k, seed=seed), rows.attrs.get("stats", {})


@dataclass
class RankingRun:
    rankings: pd.DataFrame
    results: pd.DataFrame
    info: dict[str, Any]
    files: dict[str, Path]


def reranking_candidates(paths, cfg: Config, rank_test: pd.DataFrame) -> pd.DataFrame:
    """Notebook 04's candidate lists of the reranking users, for the protocols of RANK_PROTOCOLS."""
    candidates = pd.read_parquet(paths.require(paths.candidates, "04_review_preferences"))
    protocols = list(cfg.exp3rt.rank_protocols)
    if "protocol" not in candidates.columns or not set(protocols) <= set(candidates["protocol"].astype(str)):
        raise MissingArtifactError(
            f"{paths.candidates} holds no candidate lists of the protocols {protocols} (written before the ranking "
            f"protocols, or with other RANK_PROTOCOLS); rerun 04_review_preferences."
        )
    keep = candidates["example_id"].astype(str).isin(set(rank_test["example_id"].astype(str)))
    candidates = candidates[keep & candidates["protocol"].astype(str).isin(protocols)]
    missing = set(rank_test["example_id"].astype(str)) - set(candidates["example_id"].astype(str))
    if candidates.empty or missing:
        raise MissingArtifactError(
            f"{paths.candidates} lacks the candidates of {len(missing) or len(rank_test)} of this run's "
            f"{len(rank_test)} reranking users; rerun 04_review_preferences with this N_TEST / RANK_USERS."
        )
    return candidates.reset_index(drop=True)


def _same_lists(candidates: pd.DataFrame, retriever_rows: pd.DataFrame) -> int:
    """How many (protocol, user) candidate lists differ from the retriever's own lists."""
    users = set(candidates["user_id"].astype(str))
    mine = retriever_rows[retriever_rows["user_id"].astype(str).isin(users)]

    def sets(df: pd.DataFrame) -> dict[tuple[str, str], frozenset]:
        return {
            (str(p), str(u)): frozenset(g.astype(str)) for (p, u), g in df.groupby(["protocol", "user_id"])["item_id"]
        }

    a, b = sets(candidates), sets(mine)
    return sum(a.get(key) != b.get(key) for key in a)


def run_rankings(paths, cfg: Config, plan: RankingPlan, tables, contexts: Mapping[str, Any]) -> RankingRun:
    """Retrievers alone on every ranking user (RANK_RETRIEVER_USERS of the test split) and every
    reranker of ``plan`` on the reranking users (RANK_USERS of the N_TEST subsample), under each
    protocol of RANK_PROTOCOLS, scored by NDCG / Recall / HitRate @ RANK_K (and @10) with bootstrap
    intervals and the paired difference of each reranker with the retriever it reorders (on the
    users both rank). ``contexts``: scorer -> its prompt context. Writes ``paths.rankings`` and
    the ranking tables."""
    protocols = list(cfg.exp3rt.rank_protocols)
    rank_test = rank_examples(tables.examples, cfg)
    rank_all = retrieval.ranking_examples(tables.examples, cfg.exp3rt.rank_retriever_users)
    # the reranking users are ranked by the retrievers too, so that every paired difference has them
    rank_all = pd.concat([rank_all, rank_test], ignore_index=True).drop_duplicates("example_id")
    n_test = tables.examples[tables.examples["split"] == "test"]
    info: dict[str, Any] = {
        "protocols": protocols,
        "n_test_users": int(len(n_test)),
        "n_liked_test_users": int(n_test["label"].astype(int).sum()),
        "n_retriever_users": len(rank_all),
        "n_reranker_users": len(rank_test) if plan.rerankers else 0,
        "retriever": cfg.exp3rt.retriever,
    }
    parts = []
    retriever_rows = None
    if plan.retrievers:
        retriever_rows, info["retrievers"] = retrieval.predict(plan.retrievers, tables, rank_all, cfg, protocols)
        parts.append(retriever_rows)
    if plan.rerankers:
        candidates = reranking_candidates(paths, cfg, rank_test)
        if retriever_rows is not None and cfg.exp3rt.retriever in plan.retrievers:
            own = retriever_rows[retriever_rows["method"] == cfg.exp3rt.retriever]
            differ = _same_lists(candidates, own)
            if differ:
                raise MissingArtifactError(
                    f"{differ} of notebook 04's candidate lists differ from {cfg.exp3rt.retriever}'s lists here (the "
                    f"data or the retriever changed); rerun 04_review_preferences."
                )
        elif cfg.exp3rt.retriever not in plan.retrievers:
            # the rerankers' reference: the retriever's own order of the lists they reorder
            parts.append(pr.ranking_rows(cfg.exp3rt.retriever, 0, candidates, seed=cfg.common.seed))
            info["retriever_from_candidates"] = True
        info["rerankers"] = {}
        for reranker, scorer, k, seed, adapter in plan.rerankers:
            rows, stats = rerank_with_llm(reranker, k, seed, candidates, rank_test, cfg, contexts[scorer], adapter)
            info["rerankers"][f"{reranker}@K{k}@seed{seed}"] = {
                kk: v for kk, v in stats.items() if kk != "model_identity"
            }
            parts.append(rows)
    new = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(pr.RANKING_COLUMNS))
    rankings = pr.merge_rankings(pr.load_rankings(paths.rankings), new) if len(new) else new
    if len(new):
        pr.save_rankings(rankings, paths.rankings)
    cutoffs = sorted(set(cfg.exp3rt.rank_k) | {10})
    if new.empty:
        return RankingRun(new, pd.DataFrame(), info, {})
    results, _ = score_rankings(
        new,
        n_boot=cfg.evaluate.bootstrap_samples,
        seed=cfg.common.seed,
        cutoffs=cutoffs,
        dataset=cfg.common.dataset,
        references={r: cfg.exp3rt.retriever for r, *_ in plan.rerankers},
    )
    folder = Path(paths.evaluate)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"ranking_results_csv": folder / "ranking_results.csv", "ranking_md": folder / "ranking_results.md"}
    results.to_csv(files["ranking_results_csv"], index=False)
    files["ranking_md"].write_text(ranking_markdown(results))
    return RankingRun(rankings, results, info, files)


def _ci(r: Mapping[str, Any], m: str) -> str:
    v, lo, hi = r[m], r.get(f"{m}_ci_low"), r.get(f"{m}_ci_high")
    if pd.isna(v):
        return "–"
    return f"{v:.3f}" + ("" if lo is None or pd.isna(lo) else f" [{lo:.3f}, {hi:.3f}]")


def ranking_view(results: pd.DataFrame, cutoff: int = 10) -> pd.DataFrame:
    """Protocol, method, NDCG@k, Recall@k, Hit@k with intervals and the paired NDCG difference vs
    the reference (on the users both rank)."""

    rows = results[results["cutoff"] == cutoff]

    def delta(r) -> str:
        if pd.isna(r["delta_ndcg"]):
            return "reference" if r["method"] == r["reference"] else "–"
        return f"{r['delta_ndcg']:+.3f} [{r['delta_ndcg_ci_low']:+.3f}, {r['delta_ndcg_ci_high']:+.3f}]"

    recs = rows.to_dict("records")
    protocol = rows["protocol"] if "protocol" in rows.columns else pd.Series("topn", index=rows.index)
    return pd.DataFrame(
        {
            "protocol": protocol.map(lambda p: PROTOCOL_LABELS.get(str(p), str(p))),
            "method": rows["label"],
            "K": rows["k"],
            "seed": rows["seed"],
            "users": rows["n_users"],
            "list": rows["list_length"].map(lambda v: f"{v:g}"),
            f"NDCG@{cutoff}": [_ci(r, "ndcg") for r in recs],
            f"Recall@{cutoff}": [_ci(r, "recall") for r in recs],
            f"Hit@{cutoff}": [_ci(r, "hit") for r in recs],
            "compared with": rows["reference"].map(registry.label),
            f"ΔNDCG@{cutoff} (paired)": [delta(r) for r in recs],
            "paired users": [int(r["delta_n_users"]) if pd.notna(r["delta_ndcg"]) else "" for r in recs],
        }
    ).reset_index(drop=True)


def ranking_tables(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One :func:`ranking_view` per protocol and cutoff, under the heading that names them."""
    out = {}
    protocols = results["protocol"].unique() if "protocol" in results.columns else ["topn"]
    for protocol in protocols:
        part = results[results["protocol"] == protocol] if "protocol" in results.columns else results
        name = PROTOCOL_LABELS.get(str(protocol), str(protocol))
        for cutoff in sorted(part["cutoff"].unique()):
            out[f"Top-k ranking, protocol {name} @ {cutoff}"] = ranking_view(part, int(cutoff)).drop(columns="protocol")
    return out


def ranking_markdown(results: pd.DataFrame) -> str:
    """One table per protocol and cutoff, each headed by the protocol's name."""
    out = []
    for heading, view in ranking_tables(results).items():
        out += [f"### {heading}", "", markdown_table(view), ""]
    return "\n".join(out)


def rating_view(results: pd.DataFrame) -> pd.DataFrame:
    """Rating-task rows of the results: RMSE and MAE with intervals, the arg-max RMSE and the
    paired RMSE difference vs the strongest rating baseline (below 0: better). On half-star data
    also the count of half-star targets and the RMSE against the label rounded half up, which
    the rating students were trained on (:mod:`rrlib.evaluate.rating`)."""
    rows = results[results["task"] == "rating"]

    def delta(r) -> str:
        if pd.isna(r["delta_rmse"]):
            return "reference" if r["method"] == r["rating_reference"] else "–"
        return f"{r['delta_rmse']:+.3f} [{r['delta_rmse_ci_low']:+.3f}, {r['delta_rmse_ci_high']:+.3f}]"

    recs = rows.to_dict("records")
    view = pd.DataFrame(
        {
            "method": rows["label"],
            "K": rows["k"],
            "seed": rows["seed"],
            "n": rows["n"],
            "RMSE": [_ci(r, "rmse") for r in recs],
            "MAE": [_ci(r, "mae") for r in recs],
            "RMSE (arg-max)": [f"{r['argmax_rmse']:.3f}" if pd.notna(r["argmax_rmse"]) else "–" for r in recs],
            "ΔRMSE vs best baseline": [delta(r) for r in recs],
            "format errors": rows["format_errors"],
        }
    ).reset_index(drop=True)
    half = [int(r.get("n_half_star", 0) or 0) for r in recs]
    if any(half):  # the rating students learn labels rounded half up (rrlib.evaluate.rating)
        view.insert(
            5,
            "RMSE vs label rounded half up (3.5→4)",
            [_ci(r, "rmse_rounded") if pd.notna(r.get("rmse_rounded")) else "–" for r in recs],
        )
        view.insert(4, "half-star targets", half)
    return view


def rating_known_texts(ctx, examples: pd.DataFrame) -> dict[str, str]:
    """example_id -> the text of EXP3RT's rating prompt (what its reasoning may draw on)."""
    return {
        str(r["example_id"]): ctx.student_messages(str(r["user_id"]), str(r["target_item_id"]))[-1]["content"]
        for r in examples.to_dict("records")
    }


def explanation_quality_all(
    predictions: pd.DataFrame,
    like_known: Mapping[str, str],
    rating_known: Mapping[str, str] | None,
    *,
    like_threshold: float,
) -> pd.DataFrame:
    """Faithfulness figures of every reasoning method: like-task methods checked against their
    prompts' texts, rating-task methods (EXP3RT) against the rating prompt's."""
    parts = []
    like = predictions[predictions["task"] == "like"]
    if len(like):
        parts.append(explanation_quality(like, like_known, like_threshold=like_threshold))
    rating = predictions[
        (predictions["task"] == "rating")
        & predictions["method"].map(lambda m: m in registry.REGISTRY and registry.get(m).reasons)
    ]
    if len(rating) and rating_known is not None:
        parts.append(explanation_quality(rating, rating_known, like_threshold=like_threshold))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    return (
        out.assign(_o=out["method"].map(registry.order))
        .sort_values(["_o", "k", "seed"], kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)
    )


RATING_ABOUT = """\
Rating methods answer the same test examples: the finetuned students (`exp3rt`, `tallrec_rating`) and
zero-shot EXP3RT were predicted with the other LLM methods — a reasoning student writes its reasoning
greedily, then the **expected rating** Σ r·P(r) is read from the probabilities of the tokens 1–5 after
`Rating: ` (the arg-max beside it) — and the rating baselines (global, user, item mean, μ + b_u + b_i,
biased MF) with the other fitted methods, all fitted on training interactions only. RMSE and MAE carry
bootstrap 95% intervals; the paired difference is with the strongest rating baseline (lowest RMSE) on
the same examples: below 0 with the whole interval below 0 is a real gain."""

RANKING_ABOUT = """\
A ranking user is a test user whose held-out item they **liked**: that item is the one relevant item
(users with a disliked held-out item are not ranking users). Each list has `RANK_CANDIDATES` items,
built by the protocols of `RANK_PROTOCOLS`, and every table names its protocol:

- **(a) `retrieved`**: the retriever's top `RANK_CANDIDATES` (`RETRIEVER`, fitted on training
  interactions only), the held-out item inserted in place of the last one when missing;
- **(b) `sampled`**: the held-out item plus `RANK_CANDIDATES` − 1 items the user never rated, sampled
  with a seed per user.

The retrievers rank every ranking user of the test split (`RANK_RETRIEVER_USERS`, 0: all; cheap, so
their intervals are narrow). The rerankers reorder the same lists (notebook 04's, checked against the
retriever's) for the first `RANK_USERS` ranking users of the `N_TEST` subsample, by their scorer —
EXP3RT's expected rating, or ReasoningRec's P(Yes) as a cross-system comparison — ties broken by the
retriever's score. NDCG, Recall and HitRate at `RANK_K` (and 10) with bootstrap intervals over users,
and each reranker's paired NDCG difference with the retriever on the users both rank."""

FAITHFULNESS_ABOUT = """\
For ReasoningRec's methods and EXP3RT's alike (`rrlib.evaluate.faithfulness`): does the reasoning's
verdict agree with the prediction (a stated rating or its high/low stance vs the predicted rating, for
rating methods), does it name items, numbers or aspects absent from its own prompt, and is it specific
to the user (TF-IDF cosine between different users' reasonings, near-duplicate share)?"""

#: the faithfulness columns notebook 07 shows
FAITHFULNESS_SHOWN = [
    "label",
    "k",
    "task",
    "n_reasoning",
    "verdict_agreement",
    "contradiction_rate",
    "any_unknown_rate",
    "copies_input_rate",
    "mean_pairwise_cosine",
    "near_duplicate_share",
]


def rating_section(ctx: EvaluationContext) -> Section:
    """The rating-task rows of the results (:func:`rating_view`)."""
    section = Section(FAMILY, "EXP3RT: rating prediction", about=RATING_ABOUT)
    results = ctx.evaluation.results
    if (results["task"] == "rating").any():
        section.lines.append(f"strongest rating baseline: {ctx.evaluation.metrics.get('strongest_rating_baseline')}")
        section.tables["Rating prediction"] = rating_view(results)
    else:
        section.lines.append("no rating method in this run")
    return section


def ranking_section(ctx: EvaluationContext) -> Section:
    """The ranking run (:func:`run_rankings`) of the plan's retrievers and rerankers (each scorer's
    prompt context added to ``ctx.contexts``). Record: ``ranking_plan``, ``ranking``, ``ranking_info``."""
    section = Section(FAMILY, "EXP3RT: top-k reranking", about=RANKING_ABOUT)
    plan = ranking_plan(ctx.cfg, ctx.paths, ctx.plan.finetuned)
    run = None
    if plan.retrievers or plan.rerankers:
        for _, scorer, *_ in plan.rerankers:
            if scorer not in ctx.contexts:
                ctx.contexts[scorer] = PromptContext.from_run(ctx.paths, ctx.domain, scorer)
        run = run_rankings(ctx.paths, ctx.cfg, plan, ctx.data, ctx.contexts)
        if len(run.results):
            section.tables.update(ranking_tables(run.results))
    else:
        section.lines.append("no retriever or reranker in EVAL_METHODS")
    section.record = {
        "ranking_plan": plan.as_dict(),
        "ranking": run.results.to_dict(orient="records") if run else [],
        "ranking_info": run.info if run else {},
    }
    return section


def faithfulness_section(ctx: EvaluationContext) -> Section:
    """:func:`explanation_quality_all` of the plan's rows: like-task reasoning against the texts its
    prompt could hold (items, descriptions, profiles of the run), rating-task reasoning against the
    rating prompt; ``evaluate/faithfulness.csv``. Record: ``faithfulness``."""
    paths = ctx.paths
    section = Section(FAMILY, "Faithfulness of every reasoning method", about=FAITHFULNESS_ABOUT)
    optional = {
        name: pd.read_parquet(path) if Path(path).exists() else None
        for name, path in (("descriptions", paths.item_descriptions), ("profiles", paths.user_profiles))
    }
    like_known = prompt_known_texts(ctx.data.examples, ctx.data.items, **optional)
    rating_known = None
    if (ctx.scored["task"] == "rating").any():
        rating_known = rating_known_texts(RatingContext.from_run(paths, ctx.domain), ctx.test)
    table = explanation_quality_all(ctx.scored, like_known, rating_known, like_threshold=ctx.cfg.data.like_threshold)
    if len(table):
        table.to_csv(paths.evaluate / "faithfulness.csv", index=False)
        section.tables["Faithfulness per method"] = table[FAITHFULNESS_SHOWN].round(3)
    else:
        section.lines.append("no reasoning method wrote reasoning in this run")
    section.record["faithfulness"] = table.to_dict(orient="records")
    return section


def sections(ctx: EvaluationContext) -> list[Section]:
    """EXP3RT's views of notebook 07: the rating table, the ranking run, the faithfulness figures."""
    return [rating_section(ctx), ranking_section(ctx), faithfulness_section(ctx)]


__all__ = [
    "FAITHFULNESS_ABOUT",
    "RANKING_ABOUT",
    "RATING_ABOUT",
    "RankingPlan",
    "RankingRun",
    "candidate_examples",
    "explanation_quality_all",
    "ranking_markdown",
    "ranking_plan",
    "ranking_section",
    "ranking_tables",
    "ranking_view",
    "faithfulness_section",
    "rating_known_texts",
    "rating_section",
    "rating_view",
    "rerank_with_llm",
    "reranking_candidates",
    "run_rankings",
    "sections",
]
