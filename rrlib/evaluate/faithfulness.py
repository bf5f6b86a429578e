"""Faithfulness checks of generated reasoning, for every reasoning method: does the verdict agree
with the prediction, does it mention items or facts absent from its input, does it copy the
input, does it loop. Computed in notebook 06 (figures in the results) and shown per case in 07.

The checks are heuristics grounded in the example's own prompt: an item or name counts as
"unknown" when it appears nowhere in the texts the prompt held (titles, attributes,
descriptions, profile), by string match after normalisation.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from rrlib.methods import registry
from rrlib.prompts.answers import parse_prediction
from rrlib.prompts.postprocess import repetition

FAILURE_TYPES = {
    "format_error": "the output does not start with the answer line ('Prediction: Yes/No')",
    "empty_reasoning": "a reasoning method gave no reasoning text",
    "contradiction": "the reasoning concludes the opposite of the prediction",
    "unknown_item": "the reasoning names an item (quoted title or capitalised name) that is not in the input",
    "copies_input": "at least half of the reasoning's 8-word sequences are copied from the input",
    "repetitive": "a line, sentence or phrase loops (the teacher post-processing's repetition check)",
}


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


def failure_types(row: Mapping[str, Any], known_text: str) -> list[str]:
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
        said = parse_prediction(generated)
        predicted = said if said is not None else int(row.get("predicted_label", 0))
        stance = reasoning_stance(reasoning)
        if stance is not None and stance != predicted:
            out.append("contradiction")
        if unknown_mentions(reasoning, known_text):
            out.append("unknown_item")
        if copies_input(reasoning, known_text):
            out.append("copies_input")
        if repetition(reasoning):
            out.append("repetitive")
    return out


def known_texts_for(ex: Mapping[str, Any], titles: Mapping[str, str], descs: Mapping[str, str],
                    profiles: Mapping[str, str], attrs: Mapping[str, str] | None = None) -> str:
    """Every text the prompt of example ``ex`` could hold."""
    ids = [str(ex["target_item_id"]), *[str(i) for i in ex["history_item_ids"]]]
    parts = [profiles.get(str(ex["user_id"]), "")]
    for i in ids:
        parts += [titles.get(i, ""), descs.get(i, ""), (attrs or {}).get(i, "")]
    return "\n".join(p for p in parts if p)



__all__ = ["FAILURE_TYPES", "copies_input", "failure_types", "known_texts_for", "reasoning_stance", "unknown_mentions"]
