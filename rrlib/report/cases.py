"""Choosing and assembling the cases of notebook 08: the run's inputs, the lead method's rows,
the filters, and one side-by-side case per example (input, ground truth, every method's output),
plus the failure summary over all text outputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rrlib.data import load_tables
from rrlib.errors import ReportError
from rrlib.evaluate.faithfulness import (
    FAILURE_TYPES,
    failure_types,
    item_descriptions,
    item_titles,
    known_texts_for,
    prompt_known_texts,
    user_profiles,
)
from rrlib.methods import registry
from rrlib.report.highlight import FeatureTerms, feature_terms

InspectError = ReportError  # the name notebooks and tests knew


def _reasons(method: str) -> bool:
    spec = registry.REGISTRY.get(method)
    return bool(spec and spec.reasons)


FILTERS = ("all", "correct", "wrong", "confident_wrong", "liked", "disliked")


@dataclass
class InspectionInputs:
    examples: pd.DataFrame
    items: pd.DataFrame
    predictions: pd.DataFrame
    descriptions: pd.DataFrame | None = None  # item_id, description
    profiles: pd.DataFrame | None = None  # user_id, profile
    reasoning: pd.DataFrame | None = None  # example_id, reasoning (ground truth)

    def description_of(self) -> dict[str, str]:
        """item_id -> the best text describing it: generated description, else metadata."""
        return item_descriptions(self.items, self.descriptions)

    def title_of(self) -> dict[str, str]:
        return item_titles(self.items)

    def profile_of(self) -> dict[str, str]:
        return user_profiles(self.profiles)

    def truth_of(self) -> dict[str, str]:
        if self.reasoning is None:
            return {}
        return {
            e: r
            for e, r in zip(self.reasoning["example_id"].astype(str), self.reasoning["reasoning"])
            if isinstance(r, str) and r.strip()
        }


def load_inputs(paths) -> InspectionInputs:
    """Read a run's tables (``rrlib.data.load_tables``), enrichment, reasoning and predictions.
    The predictions table is required; the enrichment files are optional (a run with imported or
    no descriptions still inspects)."""

    tables = load_tables(paths)
    paths.require(paths.predictions, "07_evaluate")
    predictions = pd.read_parquet(paths.predictions)
    opt = {}
    for name, path in (
        ("descriptions", paths.item_descriptions),
        ("profiles", paths.user_profiles),
        ("reasoning", paths.reasoning),
    ):
        opt[name] = pd.read_parquet(path) if Path(path).exists() else None
    return InspectionInputs(examples=tables.examples, items=tables.items, predictions=predictions, **opt)


def confidence(p_yes: pd.Series | float, predicted_label: pd.Series | int):
    """Probability the model gave to the label it predicted."""
    return p_yes * predicted_label + (1 - p_yes) * (1 - predicted_label)


def method_block(predictions: pd.DataFrame, method: str, split: str = "test", k: int | None = None) -> pd.DataFrame:
    """One method's rows for a split, at ``k`` (default: the largest K it was run with)."""
    rows = predictions[(predictions["method"] == method) & (predictions["split"] == split)]
    if rows.empty:
        have = sorted(predictions.loc[predictions["split"] == split, "method"].unique())
        raise InspectError(
            f"method {method!r} has no {split} predictions; available: {', '.join(have)}. "
            f"Set INSPECT_METHOD to one of them."
        )
    if k is None:
        k = int(rows["k"].max())
    block = rows[rows["k"] == k]
    if block.empty:
        raise InspectError(
            f"method {method!r} has no predictions at K={k}; it has K in {sorted(rows['k'].astype(int).unique())}."
        )
    block = block.copy()
    block["correct"] = block["predicted_label"].astype(int) == block["label"].astype(int)
    block["confidence"] = confidence(block["p_yes"].astype(float), block["predicted_label"].astype(int))
    return block


def select_examples(
    block: pd.DataFrame, how: str = "all", user: str = "", n: int = 12, order: pd.Series | None = None
) -> pd.DataFrame:
    """Filter the lead method's rows. ``all``, ``correct``, ``wrong``, ``liked`` and ``disliked``
    keep the seeded example order (``order``: example_id -> rank, e.g. sample_rank);
    ``confident_wrong`` gives the wrong predictions most confident first. Raises
    :class:`InspectError` rather than returning nothing."""
    if how not in FILTERS:
        raise InspectError(f"SHOWCASE_FILTER={how!r} is not one of {list(FILTERS)}.")
    rows = block
    if user:
        rows = rows[rows["user_id"].astype(str) == str(user)]
        if rows.empty:
            sample = ", ".join(block["user_id"].astype(str).unique()[:8])
            raise InspectError(
                f"SHOWCASE_USER={user!r} has no test example for this method; users with one include: {sample}."
            )
    masks = {
        "all": None,
        "correct": rows["correct"],
        "wrong": ~rows["correct"],
        "confident_wrong": ~rows["correct"],
        "liked": rows["label"].astype(int) == 1,
        "disliked": rows["label"].astype(int) == 0,
    }
    chosen = rows if masks[how] is None else rows[masks[how].to_numpy()]
    if chosen.empty:
        raise InspectError(
            f"no example matches SHOWCASE_FILTER={how!r}"
            f"{f' for user {user!r}' if user else ''} among {len(rows)} test example(s) "
            f"({int(rows['correct'].sum())} correct, {int((~rows['correct']).sum())} wrong); "
            f"choose another filter."
        )
    if how == "confident_wrong":
        chosen = chosen.sort_values(["confidence", "example_id"], ascending=[False, True], kind="stable")
    elif order is not None:
        rank = chosen["example_id"].map(order)
        chosen = (
            chosen.assign(_rank=rank.fillna(float("inf")).to_numpy())
            .sort_values(["_rank", "example_id"], kind="stable")
            .drop(columns="_rank")
        )
    return chosen.head(n)


def known_texts(inputs: InspectionInputs) -> dict[str, str]:
    """example_id -> every text its prompt could hold (target and history titles, descriptions,
    attributes, the user's profile)."""
    return prompt_known_texts(inputs.examples, inputs.items, inputs.descriptions, inputs.profiles)


def text_outputs(predictions: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Rows of methods that generate text (LLM methods), for the failure analysis."""
    rows = predictions[predictions["split"] == split]
    has_text = rows.groupby("method")["generated_text"].transform(
        lambda s: s.fillna("").astype(str).str.strip().ne("").any()
    )
    return rows[has_text.to_numpy()]


def annotate_failures(inputs: InspectionInputs, split: str = "test") -> pd.DataFrame:
    """The text-generating rows of ``split`` with a ``failures`` column (list of types)."""
    rows = text_outputs(inputs.predictions, split).copy()
    known = known_texts(inputs)
    rows["failures"] = [failure_types(r, known.get(str(r["example_id"]), "")) for r in rows.to_dict("records")]
    return rows


def failure_summary(annotated: pd.DataFrame, examples_per_type: int = 5) -> pd.DataFrame:
    """Failure types, most frequent first: count, share of text outputs, per-method counts and
    a few example ids."""
    n = len(annotated)
    records = []
    for ftype, meaning in FAILURE_TYPES.items():
        # a boolean array: an empty (object) Series would select columns, not rows
        hit = annotated[annotated["failures"].map(lambda f, ftype=ftype: ftype in f).to_numpy(dtype=bool)]
        by_method = hit.groupby(["method", "k"]).size()
        records.append(
            {
                "failure": ftype,
                "count": len(hit),
                "share": (len(hit) / n) if n else 0.0,
                "by_method": ", ".join(f"{m}@K{k}: {c}" for (m, k), c in by_method.items()),
                "examples": ", ".join(hit["example_id"].astype(str).head(examples_per_type)),
                "meaning": meaning,
            }
        )
    return (
        pd.DataFrame(records)
        .sort_values(["count", "failure"], ascending=[False, True], kind="stable")
        .reset_index(drop=True)
    )


def failure_rates(annotated: pd.DataFrame) -> pd.DataFrame:
    """Share of each method's text outputs with each failure type (rows: method@K)."""
    if annotated.empty:
        return pd.DataFrame(columns=list(FAILURE_TYPES))
    keys = annotated["method"].astype(str) + "@K" + annotated["k"].astype(int).astype(str)
    table = {f: annotated["failures"].map(lambda x, f=f: f in x).groupby(keys.to_numpy()).mean() for f in FAILURE_TYPES}
    return pd.DataFrame(table)


@dataclass
class MethodOutput:
    method: str
    k: int
    p_yes: float
    predicted_label: int
    correct: bool
    generated_text: str
    reasoning: str
    format_ok: bool
    failures: list[str] = field(default_factory=list)


@dataclass
class HistoryEntry:
    item_id: str
    title: str
    description: str
    rating: float
    liked: bool


@dataclass
class Case:
    example_id: str
    user_id: str
    label: int
    target_item_id: str
    target_title: str
    target_description: str
    profile: str
    history: list[HistoryEntry]
    reasoning_truth: str | None
    lead: MethodOutput
    others: list[MethodOutput]
    terms: FeatureTerms


def build_cases(
    inputs: InspectionInputs, example_ids: Sequence[str], lead_method: str, lead_k: int | None = None
) -> list[Case]:
    """Side-by-side cases for ``example_ids``: input, ground truth and every method's output
    (the lead method at ``lead_k``, every other method at its largest K)."""
    titles, descs, profiles, truths = (
        inputs.title_of(),
        inputs.description_of(),
        inputs.profile_of(),
        inputs.truth_of(),
    )
    examples = inputs.examples.set_index(inputs.examples["example_id"].astype(str))
    preds = inputs.predictions[inputs.predictions["example_id"].astype(str).isin(set(map(str, example_ids)))]
    attrs = dict(zip(inputs.items["item_id"].astype(str), inputs.items["attributes"].astype(str)))
    known = {
        e: known_texts_for(examples.loc[e], titles, descs, profiles, attrs) for e in example_ids if e in examples.index
    }
    lead_k = int(method_block(inputs.predictions, lead_method, k=lead_k)["k"].iloc[0])
    cases = []
    for eid in example_ids:
        if eid not in examples.index:
            raise InspectError(f"example {eid!r} is not in the examples table of this run.")
        ex = examples.loc[eid]
        rows = preds[preds["example_id"].astype(str) == eid]
        outputs = []
        for method, group in rows.groupby("method", sort=False):
            k = lead_k if method == lead_method else int(group["k"].max())
            r = group[group["k"] == k].iloc[0].to_dict()
            pred = int(r["predicted_label"])
            outputs.append(
                MethodOutput(
                    method=method,
                    k=k,
                    p_yes=float(r["p_yes"]),
                    predicted_label=pred,
                    correct=pred == int(r["label"]),
                    generated_text=str(r.get("generated_text") or ""),
                    reasoning=str(r.get("reasoning") or ""),
                    format_ok=bool(r.get("format_ok", True)),
                    failures=failure_types(r, known.get(eid, "")),
                )
            )
        lead = [o for o in outputs if o.method == lead_method]
        if not lead:
            raise InspectError(f"example {eid} has no {lead_method} prediction.")
        history = [
            HistoryEntry(
                item_id=str(i),
                title=titles.get(str(i), str(i)),
                description=descs.get(str(i), ""),
                rating=float(r),
                liked=bool(liked),
            )
            for i, r, liked in zip(ex["history_item_ids"], ex["history_ratings"], ex["history_liked"])
        ]
        terms = feature_terms(
            [f"{h.title} {h.description}" for h in history if h.liked],
            [f"{h.title} {h.description}" for h in history if not h.liked],
        )
        cases.append(
            Case(
                example_id=eid,
                user_id=str(ex["user_id"]),
                label=int(ex["label"]),
                target_item_id=str(ex["target_item_id"]),
                target_title=titles.get(str(ex["target_item_id"]), str(ex["target_item_id"])),
                target_description=descs.get(str(ex["target_item_id"]), ""),
                profile=profiles.get(str(ex["user_id"]), ""),
                history=history,
                reasoning_truth=truths.get(eid),
                lead=lead[0],
                others=sorted(
                    (o for o in outputs if o.method != lead_method),
                    key=lambda o: (not _reasons(o.method), registry.order(o.method), o.method),
                ),
                terms=terms,
            )
        )
    return cases


def cases_frame(cases: Sequence[Case]) -> pd.DataFrame:
    """A compact table of the cases (one row each) for a quick look in the notebook."""
    return pd.DataFrame(
        [
            {
                "example_id": c.example_id,
                "user_id": c.user_id,
                "target": c.target_title,
                "label": "liked" if c.label else "disliked",
                "method": f"{c.lead.method}@K{c.lead.k}",
                "prediction": "Yes" if c.lead.predicted_label else "No",
                "p_yes": round(c.lead.p_yes, 3),
                "correct": c.lead.correct,
                "failures": ", ".join(c.lead.failures),
            }
            for c in cases
        ]
    )


__all__ = [
    "Case",
    "FILTERS",
    "HistoryEntry",
    "InspectError",
    "InspectionInputs",
    "MethodOutput",
    "annotate_failures",
    "build_cases",
    "cases_frame",
    "confidence",
    "failure_rates",
    "failure_summary",
    "known_texts",
    "load_inputs",
    "method_block",
    "select_examples",
    "text_outputs",
]
