"""RecPIE's own views in notebook 07 (:mod:`rrlib.evaluate.families`): the data-efficiency curve of
its hybrid, and the reward-tuned explainer's texts (their coverage of the test users, their
faithfulness to what the explainer was shown, and blind pairwise sheets against the explainer
before any reward). RecPIE's rows of the results table are scored with every other fitted method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from rrlib import predictions as pr
from rrlib.errors import ReportError
from rrlib.evaluate.context import EvaluationContext
from rrlib.evaluate.efficiency import efficiency_examples, efficiency_view, plot_data_efficiency, run_data_efficiency
from rrlib.evaluate.faithfulness import explanation_quality
from rrlib.evaluate.human_eval import build_comparisons, context_texts, export_human_eval, target_texts
from rrlib.evaluate.section import Section
from rrlib.finetune.rl import explainer_known_texts, round_explanations

FAMILY = "recpie"
#: the hybrid whose curve is drawn, and the method fed the reward-tuned explainer's texts
HYBRID, EXPLAINED = "recpie_hybrid", "recpie_rl"

EFFICIENCY_ABOUT = """\
RecPIE's hybrids (`recpie_*`, text fused into SASRec) are scored above with the other fitted
methods, with their paired difference to the strongest bias baseline. **Data efficiency**: the
paper's headline claim is that text lets a recommender match the best baseline with a fraction of
the data. The bias baselines, SASRec and the hybrid are retrained on nested, seeded shares of the
training users (`RECPIE_FRACTIONS`, percent) with the RecPIE settings (`RECPIE_*`, SASRec included, so
the two differ only by the texts), each early-stopped on the validation targets of its own share's
users, over `RECPIE_EFFICIENCY_SEEDS` seeds (each its own shares and training seed), and scored on the
same test examples (`RECPIE_EFFICIENCY_TEST`: every test user by default). Each cell: the AUC averaged
over seeds with a bootstrap 95% interval over examples, and the paired difference with SASRec at the
same share (same examples and seeds in every resample)."""

EXPLAINER_ABOUT = """\
- **Coverage of `recpie_rl`**: notebook 06 explains every evaluated user; a user it could not explain
  is left out of `recpie_rl`'s row, and the table's note says on how many examples it was scored.
- **The explanations of `recpie_rl`**: the reward-tuned explainer's texts (notebook 06) get the
  faithfulness checks of the reasoning methods, held to what the explainer was shown (the user's
  interactions before the reward targets), and blind pairwise human-evaluation sheets that put them
  against the same users' round-0 explanations (the explainer before any reward)."""


def efficiency_section(ctx: EvaluationContext) -> Section:
    """The data-efficiency curve (:mod:`rrlib.evaluate.efficiency`) when the plan holds the hybrid:
    its table, per-seed rows and plot under ``RUN_DIR/recpie``."""
    section = Section(FAMILY, "RecPIE: data efficiency", about=EFFICIENCY_ABOUT)
    if HYBRID not in ctx.plan.names():
        section.lines.append(f"data efficiency skipped: {HYBRID} is not in EVAL_METHODS")
        return section
    cfg, paths = ctx.cfg, ctx.paths
    test = efficiency_examples(ctx.data, cfg)  # RECPIE_EFFICIENCY_TEST: every test user, or the N_TEST subsample
    efficiency = run_data_efficiency(cfg, paths, ctx.data, test)
    paths.explainer.mkdir(parents=True, exist_ok=True)
    efficiency.to_csv(paths.explainer_efficiency, index=False)
    per_seed_csv = paths.explainer / "data_efficiency_per_seed.csv"
    efficiency.attrs["per_seed"].to_csv(per_seed_csv, index=False)
    png = paths.explainer / "data_efficiency.png"
    plot_data_efficiency(efficiency, png, title=f"Data efficiency ({cfg.common.dataset})")
    coverage = efficiency.attrs.get("text_coverage", {})
    section.lines.append(
        f"{len(test)} test examples ({int((test['label'] == 0).sum())} dislikes), "
        f"{cfg.recpie.recpie_efficiency_seeds} seeds; paired Δ vs {efficiency['reference'].iloc[0]}; text coverage of "
        f"these examples: {coverage}"
    )
    section.tables["AUC per share of training users"] = efficiency_view(efficiency)
    section.images.append(png)
    section.record["data_efficiency"] = {
        "table": efficiency.to_dict(orient="records"),
        "n_examples": len(test),
        "text_coverage": coverage,
        "csv": str(paths.explainer_efficiency.relative_to(paths.root)),
        "per_seed_csv": str(per_seed_csv.relative_to(paths.root)),
        "plot": str(png.relative_to(paths.root)),
    }
    return section


def round_zero_block(block: pd.DataFrame, round0: pd.DataFrame, method: str = "recpie_rl_round0") -> pd.DataFrame:
    """``block`` (the recpie_rl predictions rows) with each shown explanation replaced by the
    same user's explanation from round 0 (the explainer before any reward), renamed ``method``:
    the baseline of the pairwise comparison."""
    texts = dict(zip(round0["user_id"].astype(str), round0["explanation"].fillna("").astype(str)))
    shown = block["reasoning"].fillna("").astype(str).str.strip() != ""
    reasoning = [texts.get(str(u), "") if s else "" for u, s in zip(block["user_id"], shown)]
    return block.assign(method=method, reasoning=reasoning)


def explanation_comparisons(
    predictions: pd.DataFrame,
    round0: pd.DataFrame,
    examples: pd.DataFrame,
    items: pd.DataFrame,
    *,
    seed: int,
    n_examples: int = 20,
    method: str = EXPLAINED,
    others: Sequence[str] = (),
):
    """Blind pairwise sheets: ``method``'s reward-tuned explanations against round 0's, and
    against each method of ``others`` that wrote reasoning for the same examples."""
    block = predictions[(predictions["method"] == method) & (predictions["split"] == "test")]
    if block.empty:
        raise ReportError(f"human evaluation: no test predictions of {method}; put it in EVAL_METHODS.")
    base = round_zero_block(block, round0)
    parts = [block, base] + [
        predictions[(predictions["method"] == m) & (predictions["split"] == "test")] for m in others
    ]
    pairs = [(method, str(base["method"].iloc[0]))] + [(method, m) for m in others]
    ex = examples[examples["example_id"].astype(str).isin(block["example_id"].astype(str))]
    return build_comparisons(
        pd.concat(parts, ignore_index=True),
        pairs,
        context_texts(ex, items),
        target_texts(ex, items),
        n_examples=n_examples,
        seed=seed,
    )


def explainer_section(ctx: EvaluationContext) -> Section | None:
    """When the plan holds the explained hybrid: its coverage of the test users, the faithfulness
    of its explanations against the explainer's prompts (``evaluate/recpie_explanation_quality.csv``)
    and the blind sheets against round 0 (``evaluate/human_eval_recpie``)."""
    if EXPLAINED not in ctx.plan.names():
        return None
    paths = ctx.paths
    section = Section(FAMILY, "RecPIE: the reward-tuned explainer's texts", about=EXPLAINER_ABOUT)
    rows = pr.block(ctx.scored, EXPLAINED)
    coverage = ctx.baseline_info.get(EXPLAINED, {}).get("coverage", {})
    section.record["coverage"] = coverage
    section.lines.append(
        f"{EXPLAINED} explained {coverage.get('explained')} of {coverage.get('evaluated')} test users; its row is "
        f"scored on those"
    )
    known = explainer_known_texts(pd.read_parquet(paths.require(paths.explainer_prompts, "06_finetune")), ctx.test)
    quality = explanation_quality(rows, known)
    quality.to_csv(paths.evaluate / "recpie_explanation_quality.csv", index=False)
    section.tables["Faithfulness of the explanations"] = quality.set_index("method").T
    explanations: dict[str, Any] = {"quality": quality.to_dict(orient="records")}
    section.record["explanations"] = explanations
    if rows["reasoning"].fillna("").str.strip().ne("").any():  # some test user was explained (RECPIE_RL_USERS)
        round0 = round_explanations(paths.explainer_rl, 0)
        comparisons = explanation_comparisons(
            ctx.predictions, round0, ctx.data.examples, ctx.data.items, seed=ctx.cfg.common.seed
        )
        sheets = export_human_eval(
            comparisons, paths.evaluate / "human_eval_recpie", title="Which explanation of the user's taste is better?"
        )
        section.lines.append(
            f"{len(comparisons.sheet)} blind questions: {sheets['sheet_html']} (key: {sheets['key_csv']})"
        )
        explanations["human_eval"] = {k: str(v.relative_to(paths.root)) for k, v in sheets.items()}
    else:
        section.lines.append("no test user was among the explained users (RECPIE_RL_USERS): no human-evaluation sheet")
    return section


def sections(ctx: EvaluationContext) -> list[Section]:
    """RecPIE's views of notebook 07 (its record: ``data_efficiency``, ``coverage``, ``explanations``)."""
    return [s for s in (efficiency_section(ctx), explainer_section(ctx)) if s is not None]


__all__ = [
    "EFFICIENCY_ABOUT",
    "EXPLAINER_ABOUT",
    "efficiency_section",
    "explainer_section",
    "explanation_comparisons",
    "round_zero_block",
    "sections",
]
