"""Qualitative inspection of a run's outputs (notebook 07): side-by-side cases, filters,
feature highlighting, a failure-type summary and a self-contained HTML report.

Side by side (like the paper's Table 12): for each chosen test example, the target item and its
description, the user profile, the recent history with liked/disliked, the reasoning ground truth
where one exists, the lead method's (``INSPECT_METHOD``) prediction, probability and reasoning,
and every other method's output for the same example.

Highlighting. A word of a shown text is marked *liked* when it is a content word of the
descriptions/titles of the items the user liked in the shown history and of none they disliked,
and *disliked* in the opposite case; words from both sides are not marked. It shows which
features of the history a profile or a piece of reasoning draws on, grounded in this example's
own input rather than in a general sentiment lexicon. Words are compared lower-cased, with a
plural "s" and a possessive "'s" removed, after dropping stop words and generic words.

Failure types (heuristics, documented in :data:`FAILURE_TYPES`): format errors (``format_ok`` is
False), empty reasoning from a method that should reason, contradictions between the predicted
Yes/No and the reasoning's concluding stance, mentions of items not in the input (quoted titles
or multi-word capitalised names absent from every text the prompt held), reasoning that copies
the input, and degenerate repetition.
"""
from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

#: methods that should produce reasoning text (mirrors rrlib.evaluate.REASONING_METHODS)
REASONING_METHODS = ("zeroshot_reasoningrec", "reasoningrec", "reasoningrec_no_description",
                     "reasoningrec_no_profile")
FILTERS = ("all", "correct", "wrong", "confident_wrong", "liked", "disliked")
FAILURE_TYPES = {
    "format_error": "the output does not start with 'Prediction: Yes/No' (format_ok is False)",
    "empty_reasoning": "a reasoning method gave no reasoning text",
    "contradiction": "the reasoning concludes the opposite of the predicted Yes/No",
    "unknown_item": "the reasoning names an item (quoted title or capitalised name) that is not in the input",
    "copies_input": "at least half of the reasoning's 8-word sequences are copied from the input",
    "repetitive": "a 6-word sequence repeats 3 or more times",
}


class InspectError(ValueError):
    """The inputs cannot give what was asked (unknown method or user, empty selection)."""


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------
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
        meta = self.items["metadata_description"].fillna("").astype(str)
        attrs = self.items["attributes"].fillna("").astype(str)
        out = dict(zip(self.items["item_id"].astype(str), meta.where(meta.str.strip() != "", attrs)))
        if self.descriptions is not None:
            for iid, d in zip(self.descriptions["item_id"].astype(str), self.descriptions["description"]):
                if isinstance(d, str) and d.strip():
                    out[iid] = d
        return out

    def title_of(self) -> dict[str, str]:
        return dict(zip(self.items["item_id"].astype(str), self.items["title"].astype(str)))

    def profile_of(self) -> dict[str, str]:
        if self.profiles is None:
            return {}
        return {u: (p if isinstance(p, str) else "") for u, p in
                zip(self.profiles["user_id"].astype(str), self.profiles["profile"])}

    def truth_of(self) -> dict[str, str]:
        if self.reasoning is None:
            return {}
        return {e: r for e, r in zip(self.reasoning["example_id"].astype(str), self.reasoning["reasoning"])
                if isinstance(r, str) and r.strip()}


def load_inputs(paths) -> InspectionInputs:
    """Read a run's tables (``rrlib.data.load_tables``), enrichment, reasoning and predictions.
    The predictions table is required; the enrichment files are optional (a run with imported or
    no descriptions still inspects)."""
    from rrlib.data import load_tables
    tables = load_tables(paths)
    paths.require(paths.predictions, "06_evaluate")
    predictions = pd.read_parquet(paths.predictions)
    opt = {}
    for name, path in (("descriptions", paths.item_descriptions), ("profiles", paths.user_profiles),
                       ("reasoning", paths.reasoning)):
        opt[name] = pd.read_parquet(path) if Path(path).exists() else None
    return InspectionInputs(examples=tables.examples, items=tables.items, predictions=predictions, **opt)


# ---------------------------------------------------------------------------------------
# Choosing examples
# ---------------------------------------------------------------------------------------
def confidence(p_yes: pd.Series | float, predicted_label: pd.Series | int):
    """Probability the model gave to the label it predicted."""
    return p_yes * predicted_label + (1 - p_yes) * (1 - predicted_label)


def method_block(predictions: pd.DataFrame, method: str, split: str = "test", k: int | None = None
                 ) -> pd.DataFrame:
    """One method's rows for a split, at ``k`` (default: the largest K it was run with)."""
    rows = predictions[(predictions["method"] == method) & (predictions["split"] == split)]
    if rows.empty:
        have = sorted(predictions.loc[predictions["split"] == split, "method"].unique())
        raise InspectError(f"method {method!r} has no {split} predictions; available: {', '.join(have)}. "
                           f"Set INSPECT_METHOD to one of them.")
    if k is None:
        k = int(rows["k"].max())
    block = rows[rows["k"] == k]
    if block.empty:
        raise InspectError(f"method {method!r} has no predictions at K={k}; it has K in "
                           f"{sorted(rows['k'].astype(int).unique())}.")
    block = block.copy()
    block["correct"] = block["predicted_label"].astype(int) == block["label"].astype(int)
    block["confidence"] = confidence(block["p_yes"].astype(float), block["predicted_label"].astype(int))
    return block


def select_examples(block: pd.DataFrame, how: str = "all", user: str = "", n: int = 12,
                    order: pd.Series | None = None) -> pd.DataFrame:
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
            raise InspectError(f"SHOWCASE_USER={user!r} has no test example for this method; users with "
                               f"one include: {sample}.")
    masks = {"all": None, "correct": rows["correct"], "wrong": ~rows["correct"],
             "confident_wrong": ~rows["correct"], "liked": rows["label"].astype(int) == 1,
             "disliked": rows["label"].astype(int) == 0}
    chosen = rows if masks[how] is None else rows[masks[how].to_numpy()]
    if chosen.empty:
        raise InspectError(f"no example matches SHOWCASE_FILTER={how!r}"
                           f"{f' for user {user!r}' if user else ''} among {len(rows)} test example(s) "
                           f"({int(rows['correct'].sum())} correct, {int((~rows['correct']).sum())} wrong); "
                           f"choose another filter.")
    if how == "confident_wrong":
        chosen = chosen.sort_values(["confidence", "example_id"], ascending=[False, True], kind="stable")
    elif order is not None:
        rank = chosen["example_id"].map(order)
        chosen = chosen.assign(_rank=rank.fillna(float("inf")).to_numpy()).sort_values(
            ["_rank", "example_id"], kind="stable").drop(columns="_rank")
    return chosen.head(n)


# ---------------------------------------------------------------------------------------
# Highlighting liked / disliked features
# ---------------------------------------------------------------------------------------
STOP_WORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just me more
most my myself no nor not now of off on once only or other our ours out over own same she should so
some such than that the their theirs them themselves then there these they this those through to too
under until up very was we were what when where which while who whom why will with would you your
yours yourself yourselves one two three well much many may might must shall via per etc its
item items product products user users profile target like liked likes dislike disliked dislikes
prediction yes reasoning based overall however make makes made use used using get gets great good
really also new used work works would could this that these those very""".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*[A-Za-z]|[A-Za-z]")


def normalize_word(word: str) -> str:
    w = word.lower().replace("\u2019", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    return w


def content_terms(text: str) -> set[str]:
    """Normalised content words of a text (stop words, generic words and short words dropped)."""
    out = set()
    for m in _WORD.finditer(text or ""):
        w = normalize_word(m.group())
        if len(w) >= 3 and w not in STOP_WORDS:
            out.add(w)
    return out


@dataclass(frozen=True)
class FeatureTerms:
    liked: frozenset
    disliked: frozenset


def feature_terms(liked_texts: Iterable[str], disliked_texts: Iterable[str]) -> FeatureTerms:
    """Words only in liked-item texts and words only in disliked-item texts."""
    liked = set().union(*(content_terms(t) for t in liked_texts)) if liked_texts else set()
    disliked = set().union(*(content_terms(t) for t in disliked_texts)) if disliked_texts else set()
    return FeatureTerms(frozenset(liked - disliked), frozenset(disliked - liked))


def highlight_spans(text: str, terms: FeatureTerms) -> list[tuple[int, int, str]]:
    """``(start, end, "liked"|"disliked")`` for every word of ``text`` that is a feature term."""
    spans = []
    for m in _WORD.finditer(text or ""):
        w = normalize_word(m.group())
        if w in terms.liked:
            spans.append((m.start(), m.end(), "liked"))
        elif w in terms.disliked:
            spans.append((m.start(), m.end(), "disliked"))
    return spans


def highlight_html(text: str, terms: FeatureTerms | None) -> str:
    """``text`` HTML-escaped, feature words wrapped in ``<mark class="liked|disliked">``."""
    text = text or ""
    if terms is None:
        return html.escape(text)
    out, pos = [], 0
    for start, end, kind in highlight_spans(text, terms):
        out.append(html.escape(text[pos:start]))
        out.append(f'<mark class="{kind}">{html.escape(text[start:end])}</mark>')
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


# ---------------------------------------------------------------------------------------
# Failure types
# ---------------------------------------------------------------------------------------
_PREDICTION = re.compile(r"prediction\W{0,3}\s*[:\-]?\s*\W{0,2}(yes|no)\b", re.I)
_LIKE_VERBS = r"(?:like|enjoy|love|appreciate|want|purchase|buy|prefer|be (?:interested|satisfied|happy|pleased))"
_NEGATIVE = [re.compile(p, re.I) for p in (
    rf"\b(?:will|would|should|does|do|may|might|is going to|are going to)\s+(?:probably\s+|likely\s+)?not\s+{_LIKE_VERBS}",
    rf"\b(?:won't|wouldn't|doesn't|don't|isn't going to)\s+(?:probably\s+|likely\s+)?{_LIKE_VERBS}",
    rf"\b(?:unlikely|not likely|less likely)\s+to\s+{_LIKE_VERBS}",
    r"\b(?:will|would|is likely to|are likely to|may|might|probably)\s+(?:likely\s+)?dislike\b",
    r"\bnot\s+(?:be\s+)?(?:a\s+)?(?:good|suitable|great|perfect|strong)\s+(?:fit|match|choice)",
    r"\b(?:poor|bad)\s+(?:fit|match|choice)\b",
    r"\bnot\s+recommend",
)]
_POSITIVE = [re.compile(p, re.I) for p in (
    rf"\b(?:will|would|should|is going to|are going to)\s+(?:likely\s+|probably\s+|definitely\s+|most likely\s+)?{_LIKE_VERBS}",
    rf"\b(?:likely|probably)\s+to\s+{_LIKE_VERBS}",
    r"\b(?:good|suitable|great|perfect|strong)\s+(?:fit|match|choice)\b",
    r"\brecommend(?:ed)?\b",
)]


def parse_prediction(text: str) -> int | None:
    """1 for 'Prediction: Yes', 0 for 'Prediction: No', None when absent."""
    m = _PREDICTION.search(text or "")
    return None if m is None else int(m.group(1).lower() == "yes")


def reasoning_stance(text: str) -> int | None:
    """The reasoning's concluding stance on the target: 1 (will like), 0 (will not), None (no
    conclusion found). The last conclusion phrase wins; a positive phrase inside a negative one
    ("not likely to like", "not a good fit") counts as negative."""
    text = text or ""
    negatives = [(m.start(), m.end()) for p in _NEGATIVE for m in p.finditer(text)]
    found = [(s, 0) for s, _ in negatives]
    for p in _POSITIVE:
        for m in p.finditer(text):
            if not any(s <= m.start() < e or m.start() <= s < m.end() for s, e in negatives):
                found.append((m.start(), 1))
    return max(found)[1] if found else None


_QUOTED = re.compile(r"[\"\u201c\u201d]([^\"\u201c\u201d\n]{3,100})[\"\u201c\u201d]")
_CAP_TOKEN = r"(?:[A-Z][\w'&\-.]*|\d[\w\-.]*)"
_CAPITALISED = re.compile(rf"{_CAP_TOKEN}(?:\s+(?:of|and|&|the|for|de|la|with|{_CAP_TOKEN})){{1,7}}")
_GENERIC = frozenset("""the this that these those a an user users user's profile item items target product
products prediction yes no however overall based reasoning analysis it he she they their his her its as in
on for with and but so if given since additionally furthermore therefore thus also moreover finally first
second third lastly step part i we you my recent history description descriptions liked disliked like
dislike amazon beauty fashion movie movies conclusion summary considering while although""".split())


def _norm_text(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", (text or "").lower()).split())


def unknown_mentions(reasoning: str, known_text: str) -> list[str]:
    """Quoted titles and multi-word capitalised names in ``reasoning`` that appear nowhere in
    ``known_text`` (everything the prompt held: titles, descriptions, profile)."""
    known = f" {_norm_text(known_text)} "
    out: list[str] = []
    seen: set[str] = set()
    candidates = [(m.group(1), True) for m in _QUOTED.finditer(reasoning or "")]
    candidates += [(m.group(0), False) for m in _CAPITALISED.finditer(reasoning or "")]
    for raw, quoted in candidates:
        words = raw.split()
        while words and _norm_text(words[0]) in _GENERIC:
            words.pop(0)
        while words and _norm_text(words[-1]) in _GENERIC:
            words.pop()
        phrase = _norm_text(" ".join(words))
        if not phrase or len(phrase) < 4 or (not quoted and len(phrase.split()) < 2):
            continue
        if quoted and len(phrase.split()) > 8:
            continue  # a quoted sentence, not a title
        if f" {phrase} " not in known and phrase not in seen:
            seen.add(phrase)
            out.append(" ".join(words).strip(".,;:!?'\"-"))
    return out


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def copies_input(reasoning: str, known_text: str, n: int = 8, share: float = 0.5) -> bool:
    words = _norm_text(reasoning).split()
    grams = _ngrams(words, n)
    if len(words) < 2 * n or not grams:
        return False
    known = set(_ngrams(_norm_text(known_text).split(), n))
    return sum(g in known for g in grams) / len(grams) >= share


def is_repetitive(text: str, n: int = 6, times: int = 3) -> bool:
    grams = _ngrams(_norm_text(text).split(), n)
    return bool(grams) and Counter(grams).most_common(1)[0][1] >= times


def failure_types(row: Mapping[str, Any], known_text: str) -> list[str]:
    """The failure types (keys of :data:`FAILURE_TYPES`) of one predictions-table row."""
    out = []
    generated = str(row.get("generated_text") or "")
    reasoning = str(row.get("reasoning") or "")
    if not bool(row.get("format_ok", True)):
        out.append("format_error")
    if row.get("method") in REASONING_METHODS and generated.strip() and not reasoning.strip():
        out.append("empty_reasoning")
    if reasoning.strip():
        said = parse_prediction(generated)
        predicted = said if said is not None else int(row.get("predicted_label", 0))
        stance = reasoning_stance(reasoning)
        if stance is not None and stance != predicted:
            out.append("contradiction")
        if unknown_mentions(reasoning, known_text):
            out.append("unknown_item")
        if copies_input(reasoning, known_text):
            out.append("copies_input")
        if is_repetitive(reasoning):
            out.append("repetitive")
    return out


def known_texts(inputs: InspectionInputs) -> dict[str, str]:
    """example_id -> every text its prompt could hold (target and history titles, descriptions,
    attributes, the user's profile)."""
    titles, descs, profiles = inputs.title_of(), inputs.description_of(), inputs.profile_of()
    attrs = dict(zip(inputs.items["item_id"].astype(str), inputs.items["attributes"].astype(str)))
    return {str(ex["example_id"]): known_texts_for(ex, titles, descs, profiles, attrs)
            for ex in inputs.examples.to_dict("records")}


def text_outputs(predictions: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Rows of methods that generate text (LLM methods), for the failure analysis."""
    rows = predictions[predictions["split"] == split]
    has_text = rows.groupby("method")["generated_text"].transform(
        lambda s: s.fillna("").astype(str).str.strip().ne("").any())
    return rows[has_text.to_numpy()]


def annotate_failures(inputs: InspectionInputs, split: str = "test") -> pd.DataFrame:
    """The text-generating rows of ``split`` with a ``failures`` column (list of types)."""
    rows = text_outputs(inputs.predictions, split).copy()
    known = known_texts(inputs)
    rows["failures"] = [failure_types(r, known.get(str(r["example_id"]), ""))
                        for r in rows.to_dict("records")]
    return rows


def failure_summary(annotated: pd.DataFrame, examples_per_type: int = 5) -> pd.DataFrame:
    """Failure types, most frequent first: count, share of text outputs, per-method counts and
    a few example ids."""
    n = len(annotated)
    records = []
    for ftype, meaning in FAILURE_TYPES.items():
        hit = annotated[annotated["failures"].map(lambda f: ftype in f)]
        by_method = hit.groupby(["method", "k"]).size()
        records.append({
            "failure": ftype, "count": len(hit), "share": (len(hit) / n) if n else 0.0,
            "by_method": ", ".join(f"{m}@K{k}: {c}" for (m, k), c in by_method.items()),
            "examples": ", ".join(hit["example_id"].astype(str).head(examples_per_type)),
            "meaning": meaning})
    return (pd.DataFrame(records).sort_values(["count", "failure"], ascending=[False, True], kind="stable")
            .reset_index(drop=True))


def failure_rates(annotated: pd.DataFrame) -> pd.DataFrame:
    """Share of each method's text outputs with each failure type (rows: method@K)."""
    if annotated.empty:
        return pd.DataFrame(columns=list(FAILURE_TYPES))
    keys = annotated["method"].astype(str) + "@K" + annotated["k"].astype(int).astype(str)
    table = {f: annotated["failures"].map(lambda x, f=f: f in x).groupby(keys.to_numpy()).mean()
             for f in FAILURE_TYPES}
    return pd.DataFrame(table)


# ---------------------------------------------------------------------------------------
# Cases (one side-by-side view per example)
# ---------------------------------------------------------------------------------------
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


def build_cases(inputs: InspectionInputs, example_ids: Sequence[str], lead_method: str,
                lead_k: int | None = None) -> list[Case]:
    """Side-by-side cases for ``example_ids``: input, ground truth and every method's output
    (the lead method at ``lead_k``, every other method at its largest K)."""
    titles, descs, profiles, truths = (inputs.title_of(), inputs.description_of(), inputs.profile_of(),
                                       inputs.truth_of())
    examples = inputs.examples.set_index(inputs.examples["example_id"].astype(str))
    preds = inputs.predictions[inputs.predictions["example_id"].astype(str).isin(set(map(str, example_ids)))]
    attrs = dict(zip(inputs.items["item_id"].astype(str), inputs.items["attributes"].astype(str)))
    known = {e: known_texts_for(examples.loc[e], titles, descs, profiles, attrs)
             for e in example_ids if e in examples.index}
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
            outputs.append(MethodOutput(method=method, k=k, p_yes=float(r["p_yes"]), predicted_label=pred,
                                        correct=pred == int(r["label"]),
                                        generated_text=str(r.get("generated_text") or ""),
                                        reasoning=str(r.get("reasoning") or ""),
                                        format_ok=bool(r.get("format_ok", True)),
                                        failures=failure_types(r, known.get(eid, ""))))
        lead = [o for o in outputs if o.method == lead_method]
        if not lead:
            raise InspectError(f"example {eid} has no {lead_method} prediction.")
        history = [HistoryEntry(item_id=str(i), title=titles.get(str(i), str(i)), description=descs.get(str(i), ""),
                                rating=float(r), liked=bool(l))
                   for i, r, l in zip(ex["history_item_ids"], ex["history_ratings"], ex["history_liked"])]
        terms = feature_terms([f"{h.title} {h.description}" for h in history if h.liked],
                              [f"{h.title} {h.description}" for h in history if not h.liked])
        cases.append(Case(example_id=eid, user_id=str(ex["user_id"]), label=int(ex["label"]),
                          target_item_id=str(ex["target_item_id"]),
                          target_title=titles.get(str(ex["target_item_id"]), str(ex["target_item_id"])),
                          target_description=descs.get(str(ex["target_item_id"]), ""),
                          profile=profiles.get(str(ex["user_id"]), ""), history=history,
                          reasoning_truth=truths.get(eid), lead=lead[0],
                          others=sorted((o for o in outputs if o.method != lead_method),
                                        key=lambda o: (o.method not in REASONING_METHODS, o.method)),
                          terms=terms))
    return cases


def known_texts_for(ex: Mapping[str, Any], titles: Mapping[str, str], descs: Mapping[str, str],
                    profiles: Mapping[str, str], attrs: Mapping[str, str] | None = None) -> str:
    """Every text the prompt of example ``ex`` could hold."""
    ids = [str(ex["target_item_id"]), *[str(i) for i in ex["history_item_ids"]]]
    parts = [profiles.get(str(ex["user_id"]), "")]
    for i in ids:
        parts += [titles.get(i, ""), descs.get(i, ""), (attrs or {}).get(i, "")]
    return "\n".join(p for p in parts if p)


def cases_frame(cases: Sequence[Case]) -> pd.DataFrame:
    """A compact table of the cases (one row each) for a quick look in the notebook."""
    return pd.DataFrame([{
        "example_id": c.example_id, "user_id": c.user_id, "target": c.target_title,
        "label": "liked" if c.label else "disliked", "method": f"{c.lead.method}@K{c.lead.k}",
        "prediction": "Yes" if c.lead.predicted_label else "No", "p_yes": round(c.lead.p_yes, 3),
        "correct": c.lead.correct, "failures": ", ".join(c.lead.failures)} for c in cases])


# ---------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;padding:1.5rem;
  color:#1d2330;background:#f5f6f8;line-height:1.45;font-size:15px}
h1{margin:0 0 .3rem}h2{margin:1.6rem 0 .6rem}h3{margin:.2rem 0 .4rem;font-size:1rem}
.meta{color:#555;margin-bottom:1rem}.meta span{margin-right:1.2rem}
table{border-collapse:collapse;background:#fff;margin:.4rem 0}
th,td{border:1px solid #d9dce3;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eceef3}
.legend mark{padding:0 .3rem}
mark.liked{background:#c8f0cf;color:inherit;border-radius:3px}
mark.disliked{background:#ffd0cc;color:inherit;border-radius:3px}
.case{background:#fff;border:1px solid #d9dce3;border-radius:8px;margin:1rem 0;padding:1rem}
.case header{display:flex;flex-wrap:wrap;gap:.6rem;align-items:baseline;margin-bottom:.6rem}
.case header .id{font-family:ui-monospace,Menlo,monospace;font-weight:600}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
@media (max-width:900px){.grid{grid-template-columns:1fr}}
.box{border-left:4px solid #aab;padding:.2rem .7rem;margin:.5rem 0}
.box.truth{border-color:#6a5acd}.box.lead{border-color:#1f77b4}
.badge{display:inline-block;border-radius:999px;padding:0 .55rem;font-size:.82rem;font-weight:600}
.badge.liked,.badge.ok{background:#c8f0cf}.badge.disliked,.badge.bad{background:#ffd0cc}
.badge.neutral{background:#e3e6ee}.badge.fail{background:#ffe7b3}
ul.history{padding-left:1.1rem;margin:.3rem 0}ul.history li{margin:.2rem 0}
.small{font-size:.85rem;color:#555}.mono{font-family:ui-monospace,Menlo,monospace}
pre{white-space:pre-wrap;word-wrap:break-word;margin:.2rem 0;font-family:inherit}
.filters button{margin-right:.4rem;padding:.25rem .7rem;border:1px solid #99a;border-radius:5px;
  background:#fff;cursor:pointer}.filters button.active{background:#1f77b4;color:#fff}
"""

_SCRIPT = """
document.querySelectorAll('.filters button').forEach(function(b){b.addEventListener('click',function(){
  document.querySelectorAll('.filters button').forEach(function(x){x.classList.remove('active')});
  b.classList.add('active');var f=b.getAttribute('data-filter');
  document.querySelectorAll('section.case').forEach(function(c){
    var show=f==='all'||(f==='correct'&&c.dataset.correct==='true')||(f==='wrong'&&c.dataset.correct==='false')
      ||(f==='liked'&&c.dataset.label==='1')||(f==='disliked'&&c.dataset.label==='0');
    c.style.display=show?'':'none';});});});
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def case_anchor(example_id: str) -> str:
    return "case-" + re.sub(r"[^A-Za-z0-9_-]", "-", example_id)


def _prediction_badge(o: MethodOutput) -> str:
    word = "Yes" if o.predicted_label else "No"
    cls = "ok" if o.correct else "bad"
    return (f'<span class="badge {cls}">Prediction: {word} · P(yes)={o.p_yes:.3f} · '
            f'{"correct" if o.correct else "wrong"}</span>')


def _failures_html(o: MethodOutput) -> str:
    return "".join(f' <span class="badge fail" title="{_e(FAILURE_TYPES[f])}">{_e(f)}</span>' for f in o.failures)


def case_html(case: Case) -> str:
    """One side-by-side view (also displayed in the notebook)."""
    t = case.terms
    hist = "".join(
        f'<li><span class="badge {"liked" if h.liked else "disliked"}">{"liked" if h.liked else "disliked"} '
        f'{h.rating:g}</span> <b>{_e(h.title)}</b> <span class="small">{highlight_html(h.description, t)}</span></li>'
        for h in case.history) or "<li class='small'>no history</li>"
    truth = (f'<div class="box truth"><h3>Reasoning ground truth (teacher)</h3><pre>'
             f'{highlight_html(case.reasoning_truth, t)}</pre></div>' if case.reasoning_truth else
             '<div class="box truth small">No reasoning ground truth for this example (the teacher writes '
             'it for training examples).</div>')
    lead = case.lead
    lead_html = (f'<div class="box lead"><h3>{_e(lead.method)} (K={lead.k}) {_prediction_badge(lead)}'
                 f'{_failures_html(lead)}</h3><pre>{highlight_html(lead.reasoning or lead.generated_text, t)}</pre></div>')
    others = "".join(
        f"<tr><td class='mono'>{_e(o.method)}</td><td>{o.k}</td><td>{_prediction_badge(o)}{_failures_html(o)}</td>"
        f"<td><pre>{highlight_html(o.reasoning or o.generated_text, t) or '<span class=small>(no text)</span>'}"
        f"</pre></td></tr>" for o in case.others)
    others_html = (f"<h3>Other methods</h3><table><tr><th>method</th><th>K</th><th>prediction</th>"
                   f"<th>output</th></tr>{others}</table>") if others else ""
    label = "liked" if case.label else "disliked"
    return (
        f'<section class="case" id="{_e(case_anchor(case.example_id))}" data-example-id="{_e(case.example_id)}" '
        f'data-correct="{str(lead.correct).lower()}" data-label="{case.label}">'
        f'<header><span class="id">{_e(case.example_id)}</span><span>user <b>{_e(case.user_id)}</b></span>'
        f'<span class="badge {label}">truth: {label}</span>{_prediction_badge(lead)}</header>'
        f'<div class="grid"><div>'
        f'<h3>Target item</h3><p><b>{_e(case.target_title)}</b> <span class="small mono">{_e(case.target_item_id)}'
        f'</span><br>{highlight_html(case.target_description, t)}</p>'
        f'<h3>User profile</h3><p>{highlight_html(case.profile, t) or "<span class=small>(no profile)</span>"}</p>'
        f'<h3>Recent history (oldest first)</h3><ul class="history">{hist}</ul>'
        f'</div><div>{truth}{lead_html}</div></div>{others_html}</section>')


def _table_html(df: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in [df.index.name or ""] + list(df.columns))
    body = []
    for idx, row in df.iterrows():
        cells = "".join(f"<td>{_e(float_format.format(v) if isinstance(v, float) else v)}</td>" for v in row)
        body.append(f"<tr><th>{_e(idx)}</th>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_report(cases: Sequence[Case], summary: pd.DataFrame, rates: pd.DataFrame,
                  meta: Mapping[str, Any]) -> str:
    """A self-contained HTML page: inline CSS and script, no external assets, all text escaped."""
    meta_html = "".join(f"<span><b>{_e(k)}</b>: {_e(v)}</span>" for k, v in meta.items())
    summary_view = summary.set_index("failure")[["count", "share", "by_method", "examples", "meaning"]]
    filters = "".join(f'<button data-filter="{f}"{" class=active" if f == "all" else ""}>{f}</button>'
                      for f in ("all", "correct", "wrong", "liked", "disliked"))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ReasoningRec inspection: {_e(meta.get('run', ''))}</title>
<style>{CSS}</style></head>
<body>
<h1>ReasoningRec: what the models said</h1>
<div class="meta">{meta_html}</div>
<p class="legend">Highlighting: <mark class="liked">words</mark> found only in the descriptions of items the
user <b>liked</b> in the shown history, <mark class="disliked">words</mark> found only in those of items
they <b>disliked</b>.</p>
<h2>Most frequent failure types</h2>
<p class="small">Over every text output of the test split; heuristics explained in the last column.</p>
{_table_html(summary_view)}
<h2>Failure rate per method</h2>
{_table_html(rates) if not rates.empty else '<p class="small">No method generated text.</p>'}
<h2>Examples side by side ({len(cases)})</h2>
<div class="filters">{filters}</div>
{''.join(case_html(c) for c in cases)}
<script>{_SCRIPT}</script>
</body></html>
"""


def write_report(path: str | Path, page: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


def inspect_run(inputs: InspectionInputs, *, method: str = "reasoningrec", how: str = "all", user: str = "",
                n: int = 12, meta: Mapping[str, Any] | None = None
                ) -> tuple[list[Case], pd.DataFrame, pd.DataFrame, str]:
    """Everything notebook 07 shows: ``(cases, failure summary, failure rates, report HTML)``."""
    block = method_block(inputs.predictions, method)
    order = dict(zip(inputs.examples["example_id"].astype(str), inputs.examples["sample_rank"]))
    chosen = select_examples(block, how=how, user=user, n=n, order=pd.Series(order))
    cases = build_cases(inputs, chosen["example_id"].astype(str).tolist(), method, int(block["k"].iloc[0]))
    annotated = annotate_failures(inputs)
    summary, rates = failure_summary(annotated), failure_rates(annotated)
    info = {"method": f"{method}@K{int(block['k'].iloc[0])}", "filter": how, **({"user": user} if user else {}),
            "shown": len(cases), "test examples": int(block.shape[0]),
            "accuracy": f"{block['correct'].mean():.3f}", **dict(meta or {})}
    return cases, summary, rates, render_report(cases, summary, rates, info)
