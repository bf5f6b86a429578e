"""EXP3RT's view in notebook 08 (:mod:`rrlib.report.families`): for test examples, the preferences
extracted from the user's allowed reviews (step 1), both profiles (step 2), the student's reasoning
and its predicted vs true rating (step 3); and the blind human-evaluation sheets comparing EXP3RT's
explanations with another reasoning method's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rrlib import predictions as pr
from rrlib.errors import ReportError
from rrlib.evaluate.human_eval import build_comparisons, export_human_eval
from rrlib.evaluate.section import Section
from rrlib.methods import registry
from rrlib.prompts.exp3rt import RatingContext
from rrlib.prompts.postprocess import USABLE_STATUSES
from rrlib.report.context import InspectionContext

FAMILY = "exp3rt"
#: the methods whose cases are shown, the first one with predictions
LEADS = ("exp3rt", "exp3rt_zeroshot")

CASES_ABOUT = """\
For the EXP3RT student's test predictions with the largest and the smallest errors: the preferences
extracted from the user's allowed reviews (step 1), the user and item profiles (step 2), the
reasoning it wrote and its expected (and arg-max) rating against the true one (step 3). Then the blind
pairwise sheets comparing EXP3RT's explanations with every other reasoning method's on the same test
examples (shuffled, A/B order random, method names only in the key): `scripts/score_human_eval.py`
scores the filled copies."""


def _usable(table: pd.DataFrame) -> dict[str, str]:
    ok = table[table["status"].isin(USABLE_STATUSES) & (table["profile"].fillna("").str.strip() != "")]
    return dict(zip(ok["id"].astype(str), ok["profile"].astype(str)))


def exp3rt_cases(paths, predictions: pd.DataFrame, method: str = "exp3rt", n: int = 4) -> pd.DataFrame:
    """One row per shown test example of ``method``'s largest (K, seed) block: the user's extracted
    preferences, user and item profiles, the reasoning, the predicted (expected and arg-max) and
    the true rating; the examples with the largest and smallest errors first, alternating."""
    rows = predictions[(predictions["method"] == method) & (predictions["task"] == "rating")]
    if rows.empty:
        raise ReportError(
            f"no rating predictions of {method!r} in {paths.predictions}; run 07_evaluate with "
            f"{method!r} in METHODS or EVAL_METHODS."
        )
    k = int(rows["k"].max())
    block = pr.block(rows, method, k, int(rows[rows["k"] == k]["seed"].min()))
    prefs = pd.read_parquet(paths.require(paths.preferences, "04_review_preferences"))
    prefs = prefs[(prefs["source"] == "user") & prefs["status"].isin(USABLE_STATUSES)]
    by_user = prefs.groupby(prefs["user_id"].astype(str))["preferences"].apply(lambda s: "\n".join(s)).to_dict()
    users = _usable(pd.read_parquet(paths.require(paths.review_user_profiles, "04_review_preferences")))
    items = _usable(pd.read_parquet(paths.require(paths.review_item_profiles, "04_review_preferences")))
    block = block.assign(error=(block["predicted_rating"] - block["target_rating"]).abs()).sort_values(
        ["error", "example_id"], ascending=[False, True], kind="stable"
    )
    order: list[dict] = []
    head, tail = block.head(n).to_dict("records"), block.iloc[::-1].head(n).to_dict("records")
    for pair in zip(head, tail):
        for r in pair:
            if r["example_id"] not in {o["example_id"] for o in order}:
                order.append(r)
    out = pd.DataFrame(
        [
            {
                "example_id": r["example_id"],
                "method": registry.label(method),
                "k": k,
                "user_id": r["user_id"],
                "item_id": r["target_item_id"],
                "extracted preferences (user's allowed reviews)": by_user.get(str(r["user_id"]), ""),
                "user profile": users.get(str(r["user_id"]), ""),
                "item profile": items.get(str(r["target_item_id"]), ""),
                "reasoning": r["reasoning"],
                "predicted rating": round(float(r["predicted_rating"]), 3),
                "arg-max rating": r["rating_argmax"],
                "true rating": r["target_rating"],
                "abs. error": round(float(r["error"]), 3),
            }
            for r in order[:n]
        ]
    )
    return out


def human_eval_pairs(predictions: pd.DataFrame, lead: str = "exp3rt") -> list[tuple[str, str]]:
    """(lead, other) for every other reasoning method with reasoning in ``predictions``."""
    have = set(predictions.loc[predictions["reasoning"].fillna("").str.strip() != "", "method"])
    if lead not in have:
        return []
    return [(lead, m) for m in registry.names(reasons=True) if m != lead and m in have]


def export_exp3rt_human_eval(
    paths,
    predictions: pd.DataFrame,
    ctx,
    examples: pd.DataFrame,
    *,
    n_examples: int,
    seed: int,
    lead: str = "exp3rt",
    pairs: Sequence[tuple[str, str]] | None = None,
) -> dict[str, Path]:
    """Blind pairwise sheets of EXP3RT's explanations against each other reasoning method's on the
    same test examples (one (K, seed) block per method: the largest K), into
    ``paths.inspect/human_eval_exp3rt`` (the key in a separate folder). The context raters see
    is EXP3RT's rating prompt (profiles and item), the target its title."""
    pairs = list(pairs) if pairs is not None else human_eval_pairs(predictions, lead)
    if not pairs:
        raise ReportError(f"human evaluation: no reasoning method to compare {lead!r} with.")
    blocks = []
    for m in dict.fromkeys(x for p in pairs for x in p):
        rows = predictions[predictions["method"] == m]
        k = int(rows["k"].max())
        blocks.append(pr.block(rows, m, k, int(rows[rows["k"] == k]["seed"].min())))
    chosen = pd.concat(blocks, ignore_index=True)
    test = examples[examples["example_id"].astype(str).isin(set(chosen["example_id"].astype(str)))]
    contexts = {
        str(r["example_id"]): ctx.student_messages(str(r["user_id"]), str(r["target_item_id"]))[-1]["content"]
        for r in test.to_dict("records")
    }
    targets = {str(r["example_id"]): ctx.catalog.title(str(r["target_item_id"])) for r in test.to_dict("records")}
    comparisons = build_comparisons(chosen, pairs, contexts, targets, n_examples=n_examples, seed=seed)
    folder = Path(paths.inspect) / "human_eval_exp3rt"
    return export_human_eval(
        comparisons,
        folder,
        Path(paths.inspect) / "human_eval_exp3rt_key" / "key.csv",
        title="Which explanation of the predicted rating is better?",
    )


def sections(ctx: InspectionContext) -> list[Section]:
    """EXP3RT's cases (printed, one block per example) and, when another reasoning method wrote
    reasoning for the same examples, the human-evaluation sheets (``inspect/human_eval_exp3rt``).
    Record: ``shown_example_ids``, ``human_eval``."""
    paths, predictions = ctx.paths, ctx.inputs.predictions
    section = Section(FAMILY, "EXP3RT cases and human-evaluation sheets", about=CASES_ABOUT)
    shown: list[Any] = []
    sheets: dict[str, Path] = {}
    lead = next((m for m in LEADS if (predictions["method"] == m).any()), None)
    if lead:
        table = exp3rt_cases(paths, predictions, lead, n=ctx.n_showcase)
        shown = table["example_id"].tolist()
        for r in table.to_dict("records"):
            section.lines += ["=" * 100, *(f"{key}: {value}" for key, value in r.items())]
        test = predictions[predictions["split"] == "test"]
        if human_eval_pairs(test, lead):
            ctx_rating = RatingContext.from_run(paths, ctx.domain)
            sheets = export_exp3rt_human_eval(
                paths, test, ctx_rating, ctx.inputs.examples, n_examples=ctx.n_showcase, seed=ctx.seed, lead=lead
            )
            section.lines.append(str({k: str(v) for k, v in sheets.items()}))
    else:
        section.lines.append("no EXP3RT predictions in this run")
    section.record = {
        "shown_example_ids": shown,
        "human_eval": {k: str(v.relative_to(paths.root)) for k, v in sheets.items()},
    }
    return [section]


__all__ = ["CASES_ABOUT", "export_exp3rt_human_eval", "exp3rt_cases", "human_eval_pairs", "sections"]
