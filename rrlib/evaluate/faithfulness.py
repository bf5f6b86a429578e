"""Faithfulness checks of generated reasoning, for every reasoning method: does the verdict agree
with the prediction, does it mention items or facts absent from its input, does it copy the
input, does it loop. Computed in notebook 07 (figures in the results) and shown per case in 08.

The checks are heuristics grounded in the example's own prompt: an item or name counts as
"unknown" when it appears nowhere in the texts the prompt held (titles, attributes,
descriptions, profile), by string match after normalisation.

Explanation quality per method (:func:`explanation_quality`, one row per method / K / seed):

(a) verdict agreement: the reasoning's conclusion vs the prediction; for rating methods a
    rating the reasoning states, else its high/low stance, vs the predicted rating
    (:func:`verdict_agreement`);
(b) facts absent from the input: items and names (:func:`unknown_mentions`), numbers such as
    prices or star counts (:func:`unknown_numbers`) and aspects from a domain list
    (:func:`unknown_aspects`);
(c) user specificity: are different users' reasonings near-identical (TF-IDF cosine, shared
    8-grams, near-duplicate share; :func:`user_specificity`)?

All are string heuristics: they find clear cases and miss paraphrases, so read the rates as
indicators to compare methods by, and check cases in notebook 07.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer

from rrlib.errors import PredictionsError
from rrlib.methods import registry
from rrlib.predictions import BLOCK
from rrlib.prompts.answers import parse_prediction
from rrlib.prompts.postprocess import repetition

FAILURE_TYPES = {
    "format_error": "the output does not start with the answer line ('Prediction: Yes/No')",
    "empty_reasoning": "a reasoning method gave no reasoning text",
    "contradiction": "the reasoning concludes the opposite of the prediction (rating methods: another rating)",
    "unknown_item": "the reasoning names an item (quoted title or capitalised name) that is not in the input",
    "unknown_number": "the reasoning states a price, star count, percentage, count or year that is not in the input",
    "copies_input": "at least half of the reasoning's 8-word sequences are copied from the input",
    "repetitive": "a line, sentence or phrase loops (the teacher post-processing's repetition check)",
}


_LIKE_VERBS = r"(?:like|enjoy|love|appreciate|want|purchase|buy|prefer|be (?:interested|satisfied|happy|pleased))"


_NEGATIVE = [
    re.compile(p, re.I)
    for p in (
        rf"\b(?:will|would|should|does|do|may|might|is going to|are going to)\s+(?:probably\s+|likely\s+)?not\s+{_LIKE_VERBS}",
        rf"\b(?:won't|wouldn't|doesn't|don't|isn't going to)\s+(?:probably\s+|likely\s+)?{_LIKE_VERBS}",
        rf"\b(?:unlikely|not likely|less likely)\s+to\s+{_LIKE_VERBS}",
        r"\b(?:will|would|is likely to|are likely to|may|might|probably)\s+(?:likely\s+)?dislike\b",
        r"\bnot\s+(?:be\s+)?(?:a\s+)?(?:good|suitable|great|perfect|strong)\s+(?:fit|match|choice)",
        r"\b(?:poor|bad)\s+(?:fit|match|choice)\b",
        r"\bnot\s+recommend",
    )
]


_POSITIVE = [
    re.compile(p, re.I)
    for p in (
        rf"\b(?:will|would|should|is going to|are going to)\s+(?:likely\s+|probably\s+|definitely\s+|most likely\s+)?{_LIKE_VERBS}",
        rf"\b(?:likely|probably)\s+to\s+{_LIKE_VERBS}",
        r"\b(?:good|suitable|great|perfect|strong)\s+(?:fit|match|choice)\b",
        r"\brecommend(?:ed)?\b",
    )
]


def _stance(text: str, negative: Sequence[re.Pattern], positive: Sequence[re.Pattern]) -> int | None:
    text = text or ""
    negatives = [(m.start(), m.end()) for p in negative for m in p.finditer(text)]
    found = [(s, 0) for s, _ in negatives]
    for p in positive:
        for m in p.finditer(text):
            if not any(s <= m.start() < e or m.start() <= s < m.end() for s, e in negatives):
                found.append((m.start(), 1))
    return max(found)[1] if found else None


def reasoning_stance(text: str) -> int | None:
    """The reasoning's concluding stance on the target: 1 (will like), 0 (will not), None (no
    conclusion found). The last conclusion phrase wins; a positive phrase inside a negative one
    ("not likely to like", "not a good fit") counts as negative."""
    return _stance(text, _NEGATIVE, _POSITIVE)


_QUOTED = re.compile(r"[\"\u201c\u201d]([^\"\u201c\u201d\n]{3,100})[\"\u201c\u201d]")


_CAP_TOKEN = r"(?:[A-Z][\w'&\-.]*|\d[\w\-.]*)"


_CAPITALISED = re.compile(rf"{_CAP_TOKEN}(?:\s+(?:of|and|&|the|for|de|la|with|{_CAP_TOKEN})){{1,7}}")


_GENERIC = frozenset(
    """the this that these those a an user users user's profile item items target product
products prediction yes no however overall based reasoning analysis it he she they their his her its as in
on for with and but so if given since additionally furthermore therefore thus also moreover finally first
second third lastly step part i we you my recent history description descriptions liked disliked like
dislike amazon beauty fashion movie movies conclusion summary considering while although""".split()
)


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
        words = re.sub(r"['\u2019]s\b", "", raw).split()  # "Rose Shampoo's" names "Rose Shampoo"
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
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def copies_input(reasoning: str, known_text: str, n: int = 8, share: float = 0.5) -> bool:
    words = _norm_text(reasoning).split()
    grams = _ngrams(words, n)
    if len(words) < 2 * n or not grams:
        return False
    known = set(_ngrams(_norm_text(known_text).split(), n))
    return sum(g in known for g in grams) / len(grams) >= share


def failure_types(row: Mapping[str, Any], known_text: str, like_threshold: float = 3.0) -> list[str]:
    """The failure types (keys of :data:`FAILURE_TYPES`) of one predictions-table row."""
    out = []
    generated = str(row.get("generated_text") or "")
    reasoning = str(row.get("reasoning") or "")
    if not bool(row.get("format_ok", True)):
        out.append("format_error")
    spec = registry.REGISTRY.get(str(row.get("method")))
    if spec is not None and spec.reasons and generated.strip() and not reasoning.strip():
        out.append("empty_reasoning")
    if reasoning.strip():
        if verdict_agreement(row, like_threshold=like_threshold)["agrees"] is False:
            out.append("contradiction")
        if unknown_mentions(reasoning, known_text):
            out.append("unknown_item")
        allow = [
            float(x)
            for x in (row.get("predicted_rating"), row.get("rating_argmax"))
            if x is not None and np.isfinite(float(x))
        ]
        if unknown_numbers(reasoning, known_text, allow=allow):
            out.append("unknown_number")
        if copies_input(reasoning, known_text):
            out.append("copies_input")
        if repetition(reasoning):
            out.append("repetitive")
    return out


def known_texts_for(
    ex: Mapping[str, Any],
    titles: Mapping[str, str],
    descs: Mapping[str, str],
    profiles: Mapping[str, str],
    attrs: Mapping[str, str] | None = None,
) -> str:
    """Every text the prompt of example ``ex`` could hold."""
    ids = [str(ex["target_item_id"]), *[str(i) for i in ex["history_item_ids"]]]
    parts = [profiles.get(str(ex["user_id"]), "")]
    for i in ids:
        parts += [titles.get(i, ""), descs.get(i, ""), (attrs or {}).get(i, "")]
    return "\n".join(p for p in parts if p)


def item_titles(items: pd.DataFrame) -> dict[str, str]:
    """item_id -> title."""
    return dict(zip(items["item_id"].astype(str), items["title"].astype(str)))


def item_descriptions(items: pd.DataFrame, descriptions: pd.DataFrame | None = None) -> dict[str, str]:
    """item_id -> the best text describing it: the generated description (notebook 02), else the
    metadata's description, else the attributes."""
    meta = items["metadata_description"].fillna("").astype(str)
    attrs = items["attributes"].fillna("").astype(str)
    out = dict(zip(items["item_id"].astype(str), meta.where(meta.str.strip() != "", attrs)))
    if descriptions is not None:
        for iid, d in zip(descriptions["item_id"].astype(str), descriptions["description"]):
            if isinstance(d, str) and d.strip():
                out[iid] = d
    return out


def user_profiles(profiles: pd.DataFrame | None) -> dict[str, str]:
    """user_id -> the user's profile (notebook 03; '' where it has none)."""
    if profiles is None:
        return {}
    return {u: (p if isinstance(p, str) else "") for u, p in zip(profiles["user_id"].astype(str), profiles["profile"])}


def prompt_known_texts(
    examples: pd.DataFrame,
    items: pd.DataFrame,
    descriptions: pd.DataFrame | None = None,
    profiles: pd.DataFrame | None = None,
) -> dict[str, str]:
    """example_id -> every text a like-task prompt of the example could hold (target and history
    titles, descriptions, attributes, the user's profile): what its reasoning is checked against."""
    titles, descs, profs = item_titles(items), item_descriptions(items, descriptions), user_profiles(profiles)
    attrs = dict(zip(items["item_id"].astype(str), items["attributes"].astype(str)))
    return {
        str(ex["example_id"]): known_texts_for(ex, titles, descs, profs, attrs) for ex in examples.to_dict("records")
    }


# ---------------------------------------------------------------------------------------
# (a) Verdict agreement, also for rating methods
# ---------------------------------------------------------------------------------------
_RATING_HIGH = [
    re.compile(p, re.I)
    for p in (
        r"\b(?:high|positive|favou?rable|strong|excellent|top|good|great)\s+(?:rating|score)\b",
        r"\brat(?:e|ed|ing)\s+(?:it\s+|this\s+(?:\w+\s+)?)?(?:highly|high|well)\b",
        r"\b(?:be|feel|is|are)\s+(?:very\s+|highly\s+|quite\s+)?(?:satisfied|pleased|delighted|impressed)\b",
    )
]
_RATING_LOW = [
    re.compile(p, re.I)
    for p in (
        r"\b(?:low|negative|poor|unfavou?rable|mediocre|bad)\s+(?:rating|score)\b",
        r"\brat(?:e|ed|ing)\s+(?:it\s+|this\s+(?:\w+\s+)?)?(?:low|lowly|poorly|badly)\b",
        r"\b(?:be|feel|is|are)\s+(?:likely\s+|probably\s+)?(?:disappointed|dissatisfied|unsatisfied|frustrated)\b",
        r"\bnot\s+(?:be\s+)?(?:very\s+)?(?:satisfied|pleased|impressed)\b",
    )
]
_NUMBER = r"(\d+(?:\.\d+)?)"
# a rating the reasoning concludes with: "predicted rating: 4", "would rate it 4 out of 5", "give it 2 stars"
_STATED = [
    re.compile(p, re.I | re.M)
    for p in (
        rf"\b(?:predicted|expected|estimated|final|overall|likely)\s+rating\s*(?:[:=]|(?:\s*(?:is|was|would|will|"
        rf"should|be|of|around|about|at|likely|probably|approximately|roughly)\b)+)?\s*[:=]?\s*(?:a\s+)?{_NUMBER}",
        rf"\b(?:would|will|should|might|may|to|likely)\s+(?:probably\s+|likely\s+)?(?:rate|give|score)\s+"
        rf"(?:it|this|the\s+\w+(?:\s+\w+)?)?\s*(?:a\s+|an\s+|around\s+|about\s+)?{_NUMBER}",
        rf"(?:^|[.!?]\s+)\s*\**\s*rating\s*\**\s*:\s*\**\s*{_NUMBER}",  # "Rating: 4" opening a line or sentence
    )
]


def rating_stance(text: str) -> int | None:
    """The stance of a rating method's reasoning: 1 (a high rating / will like), 0 (a low one /
    will not), None (no conclusion found); rating phrases ("a high rating", "would be
    disappointed") join the like/dislike phrases of :func:`reasoning_stance`, last one wins."""
    return _stance(text, _NEGATIVE + _RATING_LOW, _POSITIVE + _RATING_HIGH)


def stated_rating(text: str, scale: tuple[float, float] = (1.0, 5.0)) -> float | None:
    """The last rating the reasoning states as its conclusion ("predicted rating: 4", "would rate
    it 4/5", "give it 2 stars"), when it lies on ``scale``; None when it states none. Ratings the
    reasoning quotes from the history ("rated X 5 stars") do not count: only phrases that
    predict do."""
    found = []
    for p in _STATED:
        for m in p.finditer(text or ""):
            v = float(m.group(1))
            if scale[0] <= v <= scale[1]:
                found.append((m.start(), v))
    return max(found)[1] if found else None


def verdict_agreement(
    row: Mapping[str, Any],
    *,
    like_threshold: float = 3.0,
    scale: tuple[float, float] = (1.0, 5.0),
    tolerance: float = 0.5,
) -> dict[str, Any]:
    """Does the reasoning's conclusion agree with the method's prediction?

    Like-task rows: the stance of the reasoning vs the stated answer (else ``predicted_label``).
    Rating-task rows: a rating the reasoning states is compared with the method's rating
    (``rating_argmax`` when there is one, else ``predicted_rating``): they agree within
    ``tolerance``; without a stated rating, a high/low stance agrees when the rating is above /
    at most ``like_threshold``. Returns ``verdict`` (the reasoning's: a stance 0/1 or a
    rating), ``how`` ('stance', 'stated_rating' or '' when no conclusion was found) and
    ``agrees`` (True, False, or None when there is no conclusion)."""
    reasoning = str(row.get("reasoning") or "")
    out: dict[str, Any] = {"verdict": None, "how": "", "agrees": None}
    if not reasoning.strip():
        return out
    if str(row.get("task", "like")) == "rating":
        rating = row.get("rating_argmax")
        if rating is None or not np.isfinite(float(rating)):
            rating = row.get("predicted_rating")
        rating = float(rating) if rating is not None else math.nan
        stated = stated_rating(reasoning, scale)
        if stated is not None:
            return {"verdict": stated, "how": "stated_rating", "agrees": abs(stated - rating) <= tolerance + 1e-9}
        stance = rating_stance(reasoning)
        if stance is not None:
            return {"verdict": stance, "how": "stance", "agrees": stance == int(rating > like_threshold)}
        return out
    said = parse_prediction(str(row.get("generated_text") or ""))
    predicted = said if said is not None else int(row.get("predicted_label", 0))
    stance = reasoning_stance(reasoning)
    if stance is None:
        return out
    return {"verdict": stance, "how": "stance", "agrees": stance == predicted}


# ---------------------------------------------------------------------------------------
# (b) Facts absent from the input: numbers and aspects (items and names: unknown_mentions)
# ---------------------------------------------------------------------------------------
_NUMERIC_FACTS = {
    "price": re.compile(
        r"(?:[$\u00a3\u20ac]\s?(\d+(?:[.,]\d{1,2})?)|\b(\d+(?:\.\d{1,2})?)\s?(?:dollars|usd|euros?|"
        r"pounds)\b)",
        re.I,
    ),
    "stars": re.compile(r"\b(\d(?:\.\d)?)\s?(?:-\s?)?(?:stars?\b|/\s?(?:5|10)\b|out of (?:5|five|10|ten)\b)", re.I),
    "percent": re.compile(r"\b(\d+(?:\.\d+)?)\s?(?:%|percent\b)", re.I),
    "count": re.compile(
        r"\b(\d[\d,]*)\s+(?:reviews|ratings|customers|buyers|users|reviewers|people|times|"
        r"purchases|votes)\b",
        re.I,
    ),
    "year": re.compile(r"\b((?:19|20)\d{2})\b"),
}


def _numbers_in(text: str) -> set[float]:
    out = set()
    for m in re.finditer(r"\d[\d,]*(?:\.\d+)?", text or ""):
        try:
            out.add(round(float(m.group(0).replace(",", "")), 2))
        except ValueError:
            continue
    return out


def unknown_numbers(reasoning: str, known_text: str, allow: Sequence[float] = ()) -> list[str]:
    """Numeric facts in ``reasoning`` (prices, star counts, percentages, counts of reviews or
    buyers, years) whose number appears nowhere in ``known_text``, as 'kind: matched text'.
    ``allow``: numbers the method may state without the input holding them (its own predicted
    rating)."""
    known = _numbers_in(known_text) | {round(float(a), 2) for a in allow}
    out: list[str] = []
    for kind, pattern in _NUMERIC_FACTS.items():
        for m in pattern.finditer(reasoning or ""):
            raw = next(g for g in m.groups() if g)
            value = round(float(raw.replace(",", "")), 2)
            if value not in known:
                item = f"{kind}: {m.group(0).strip()}"
                if item not in out:
                    out.append(item)
    return out


#: aspect words per domain (what reviews praise or criticise); the checks flag the ones a
#: reasoning names although its input never does. Pass your own list (e.g. EXP3RT's
#: extracted aspects) to :func:`unknown_aspects` for another domain.
ASPECTS: dict[str, tuple[str, ...]] = {
    "beauty": (
        "scent",
        "fragrance",
        "smell",
        "texture",
        "packaging",
        "price",
        "value",
        "moisturizing",
        "hydrating",
        "greasy",
        "sticky",
        "lather",
        "longevity",
        "sensitive skin",
        "allergic",
        "residue",
        "pump",
        "bottle",
        "color",
        "shade",
        "coverage",
        "organic",
        "natural ingredients",
        "sulfate",
        "paraben",
    ),
    "movies": (
        "plot",
        "acting",
        "performance",
        "cast",
        "cinematography",
        "soundtrack",
        "score",
        "pacing",
        "dialogue",
        "special effects",
        "visual effects",
        "director",
        "ending",
        "twist",
        "humor",
        "romance",
        "violence",
        "character development",
        "screenplay",
        "sequel",
    ),
    "fashion": (
        "fit",
        "size",
        "sizing",
        "fabric",
        "material",
        "color",
        "comfort",
        "durability",
        "stitching",
        "price",
        "value",
        "style",
        "length",
        "width",
        "waist",
        "breathable",
    ),
    "instruments": (
        "tone",
        "sound quality",
        "durability",
        "build quality",
        "price",
        "value",
        "tuning",
        "strings",
        "noise",
        "cable",
        "volume",
        "setup",
        "pickup",
        "weight",
    ),
    "books": (
        "plot",
        "characters",
        "writing style",
        "prose",
        "pacing",
        "ending",
        "author",
        "series",
        "narrator",
        "world-building",
        "dialogue",
        "length",
    ),
}


def _term_re(term: str) -> re.Pattern:
    words = [re.escape(w) for w in term.lower().split()]
    return re.compile(r"\b" + r"\s+".join(words) + r"(?:s|es)?\b", re.I)


def unknown_aspects(reasoning: str, known_text: str, aspects: Sequence[str]) -> list[str]:
    """The aspect terms (from ``aspects``) that ``reasoning`` names and ``known_text`` never does
    (word match, plural s/es allowed). A synonym in the input ("fragrance" for "scent") is not
    recognised: read the figure as an upper bound of invented aspects."""
    return [a for a in aspects if _term_re(a).search(reasoning or "") and not _term_re(a).search(known_text or "")]


# ---------------------------------------------------------------------------------------
# (c) User specificity
# ---------------------------------------------------------------------------------------
def user_specificity(
    texts: Sequence[str],
    users: Sequence[str],
    items: Sequence[str] | None = None,
    *,
    near_duplicate: float = 0.9,
    n: int = 8,
) -> dict[str, Any]:
    """How near-identical one method's reasonings are across users (higher = less specific).

    * ``mean_pairwise_cosine``: mean TF-IDF cosine (words and word pairs, fitted on these
      texts) over all pairs of reasonings of different users;
    * ``same_item_cosine``: the same over pairs of different users with the same target item
      (the sharpest test of personalisation; NaN without such pairs or without ``items``);
    * ``near_duplicate_share``: share of reasonings whose cosine to some other user's reasoning
      is at least ``near_duplicate``;
    * ``shared_ngram_rate``: mean over reasonings of the share of their word ``n``-grams that
      also occur in another user's reasoning.

    Empty texts are left out; with fewer than two users, or no words, the figures are NaN."""
    keep = [i for i, t in enumerate(texts) if str(t or "").strip()]
    texts = [str(texts[i]) for i in keep]
    users = [str(users[i]) for i in keep]
    item_list = [str(items[i]) for i in keep] if items is not None else None
    nan = float("nan")
    out = {
        "n_texts": len(texts),
        "mean_pairwise_cosine": nan,
        "same_item_cosine": nan,
        "near_duplicate_share": nan,
        "shared_ngram_rate": nan,
    }
    if len(set(users)) < 2:
        return out
    try:
        x = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts)
    except ValueError:  # no text has a word of two characters or more: nothing to compare
        return out
    sim = (x @ x.T).toarray()
    u = np.array(users)
    other = u[:, None] != u[None, :]
    upper = np.triu(other, k=1)
    out["mean_pairwise_cosine"] = float(sim[upper].mean())
    if item_list is not None:
        it = np.array(item_list)
        same = upper & (it[:, None] == it[None, :])
        if same.any():
            out["same_item_cosine"] = float(sim[same].mean())
    best_other = np.where(other, sim, -1.0).max(axis=1)
    out["near_duplicate_share"] = float(np.mean(best_other >= near_duplicate - 1e-12))
    grams = [set(_ngrams(_norm_text(t).split(), n)) for t in texts]
    owners: dict[tuple[str, ...], set[str]] = {}
    for g, user in zip(grams, users):
        for gram in g:
            owners.setdefault(gram, set()).add(user)
    rates = [sum(len(owners[gram]) > 1 for gram in g) / len(g) for g in grams if g]
    out["shared_ngram_rate"] = float(np.mean(rates)) if rates else nan
    return out


# ---------------------------------------------------------------------------------------
# Per example and per method
# ---------------------------------------------------------------------------------------
def _known_for(known_texts: Mapping[str, str], example_ids: Sequence[str]) -> list[str]:
    unique = list(dict.fromkeys(example_ids))
    missing = [e for e in unique if e not in known_texts]
    if missing:
        raise PredictionsError(
            f"explanation checks: known_texts lacks {len(missing)} of {len(unique)} "
            f"example(s), e.g. {missing[0]}; give the prompt texts of every scored example "
            f"(rrlib.evaluate.faithfulness.prompt_known_texts builds them)."
        )
    return [str(known_texts[e] or "") for e in example_ids]


def explanation_checks(
    predictions: pd.DataFrame,
    known_texts: Mapping[str, str],
    *,
    like_threshold: float = 3.0,
    scale: tuple[float, float] = (1.0, 5.0),
    aspects: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per predictions row with non-empty reasoning: verdict agreement (``verdict``,
    ``verdict_how``, ``agrees``), ``unknown_items``, ``unknown_numbers``, ``unknown_aspects`` (lists),
    ``copies_input`` and ``repetitive``."""
    rows = predictions[predictions["reasoning"].fillna("").astype(str).str.strip() != ""]
    known = _known_for(known_texts, rows["example_id"].astype(str).tolist())
    out = []
    for r, text in zip(rows.to_dict("records"), known):
        reasoning = str(r["reasoning"])
        v = verdict_agreement(r, like_threshold=like_threshold, scale=scale)
        allow = [
            float(x)
            for x in (r.get("predicted_rating"), r.get("rating_argmax"))
            if x is not None and np.isfinite(float(x))
        ]
        out.append(
            {
                "method": r["method"],
                "k": int(r["k"]),
                "seed": int(r.get("seed", 0)),
                "task": str(r.get("task", "like")),
                "example_id": str(r["example_id"]),
                "user_id": str(r["user_id"]),
                "target_item_id": str(r["target_item_id"]),
                "verdict": v["verdict"],
                "verdict_how": v["how"],
                "agrees": v["agrees"],
                "unknown_items": unknown_mentions(reasoning, text),
                "unknown_numbers": unknown_numbers(reasoning, text, allow=allow),
                "unknown_aspects": unknown_aspects(reasoning, text, aspects),
                "copies_input": copies_input(reasoning, text),
                "repetitive": bool(repetition(reasoning)),
            }
        )
    cols = [
        "method",
        "k",
        "seed",
        "task",
        "example_id",
        "user_id",
        "target_item_id",
        "verdict",
        "verdict_how",
        "agrees",
        "unknown_items",
        "unknown_numbers",
        "unknown_aspects",
        "copies_input",
        "repetitive",
    ]
    return pd.DataFrame(out, columns=cols)


EXPLANATION_COLUMNS = {
    "n": "rows of the block",
    "n_reasoning": "rows with non-empty reasoning",
    "empty_reasoning_rate": "share of rows without reasoning",
    "verdict_found_rate": "share of reasonings with a conclusion the heuristics recognise",
    "verdict_agreement": "among those, share whose conclusion agrees with the prediction",
    "contradiction_rate": "share of reasonings whose conclusion contradicts the prediction",
    "unknown_item_rate": "share naming an item or name absent from the input",
    "unknown_number_rate": "share stating a price, star count, percentage, count or year absent from the input",
    "unknown_aspect_rate": "share naming an aspect (from the aspect list) absent from the input",
    "any_unknown_rate": "share with any of the three",
    "copies_input_rate": "share copying half of their 8-grams from the input",
    "repetitive_rate": "share that loop",
    "mean_pairwise_cosine": "mean TF-IDF cosine between different users' reasonings (lower: more specific)",
    "same_item_cosine": "the same for different users with the same target item",
    "near_duplicate_share": "share of reasonings with a near-duplicate (cosine >= 0.9) for another user",
    "shared_ngram_rate": "mean share of a reasoning's 8-grams found in another user's reasoning",
}


def explanation_quality(
    predictions: pd.DataFrame,
    known_texts: Mapping[str, str],
    *,
    like_threshold: float = 3.0,
    scale: tuple[float, float] = (1.0, 5.0),
    aspects: Sequence[str] = (),
    near_duplicate: float = 0.9,
    methods: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Explanation quality of every reasoning method: one row per (method, K, seed) with the
    columns of :data:`EXPLANATION_COLUMNS` (verdict agreement, facts absent from the input,
    user specificity). Methods: ``methods``, else every registered reasoning method and any
    other method that wrote reasoning."""

    has_text = predictions["reasoning"].fillna("").astype(str).str.strip() != ""
    if methods is None:
        methods = [
            m
            for m in dict.fromkeys(predictions["method"])
            if (registry.REGISTRY.get(m) is not None and registry.get(m).reasons)
            or has_text[predictions["method"] == m].any()
        ]
    chosen = predictions[predictions["method"].isin(list(methods))]
    checks = explanation_checks(chosen, known_texts, like_threshold=like_threshold, scale=scale, aspects=aspects)
    rows = []
    for (method, k, s), block in chosen.groupby(BLOCK, sort=False):
        c = checks[(checks["method"] == method) & (checks["k"] == int(k)) & (checks["seed"] == int(s))]
        n_r = len(c)
        found = c["agrees"].notna()

        def rate(mask, n_r: int = n_r) -> float:
            return float(np.mean(mask)) if n_r else float("nan")

        spec = user_specificity(
            c["example_id"].map(dict(zip(block["example_id"], block["reasoning"]))).tolist(),
            c["user_id"].tolist(),
            c["target_item_id"].tolist(),
            near_duplicate=near_duplicate,
        )
        unk_i, unk_n = c["unknown_items"].map(bool), c["unknown_numbers"].map(bool)
        unk_a = c["unknown_aspects"].map(bool)
        rows.append(
            {
                "method": method,
                "label": registry.label(method),
                "k": int(k),
                "seed": int(s),
                "task": str(block["task"].iloc[0]) if "task" in block else "like",
                "n": len(block),
                "n_reasoning": n_r,
                "empty_reasoning_rate": 1 - n_r / len(block) if len(block) else float("nan"),
                "verdict_found_rate": rate(found),
                "verdict_agreement": float(c.loc[found, "agrees"].astype(bool).mean()) if found.any() else float("nan"),
                "contradiction_rate": rate(found & (c["agrees"] == False)),  # noqa: E712 (None stays out)
                "unknown_item_rate": rate(unk_i),
                "unknown_number_rate": rate(unk_n),
                "unknown_aspect_rate": rate(unk_a),
                "any_unknown_rate": rate(unk_i | unk_n | unk_a),
                "copies_input_rate": rate(c["copies_input"]),
                "repetitive_rate": rate(c["repetitive"]),
                **{
                    key: spec[key]
                    for key in ("mean_pairwise_cosine", "same_item_cosine", "near_duplicate_share", "shared_ngram_rate")
                },
            }
        )
    cols = ["method", "label", "k", "seed", "task", *EXPLANATION_COLUMNS]
    out = pd.DataFrame(rows, columns=cols)
    return (
        out.assign(_o=out["method"].map(registry.order))
        .sort_values(["_o", "k", "seed"], kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)
    )


__all__ = [
    "ASPECTS",
    "EXPLANATION_COLUMNS",
    "FAILURE_TYPES",
    "copies_input",
    "explanation_checks",
    "explanation_quality",
    "failure_types",
    "item_descriptions",
    "item_titles",
    "known_texts_for",
    "prompt_known_texts",
    "rating_stance",
    "reasoning_stance",
    "stated_rating",
    "unknown_aspects",
    "unknown_mentions",
    "unknown_numbers",
    "user_profiles",
    "user_specificity",
    "verdict_agreement",
]
