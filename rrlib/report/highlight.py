"""Highlighting the features a text draws on: a word is marked *liked* when it is a content word
of the titles/descriptions of the items the user liked in the shown history and of none they
disliked, and *disliked* in the opposite case; words from both sides are not marked. Grounded in
the example's own input rather than a sentiment lexicon. Words are compared lower-cased, with a
plural "s" and a possessive "'s" removed, after dropping stop words and generic words."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass

STOP_WORDS = frozenset(
    """
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just me more
most my myself no nor not now of off on once only or other our ours out over own same she should so
some such than that the their theirs them themselves then there these they this those through to too
under until up very was we were what when where which while who whom why will with would you your
yours yourself yourselves one two three well much many may might must shall via per etc its
item items product products user users profile target like liked likes dislike disliked dislikes
prediction yes reasoning based overall however make makes made use used using get gets great good
really also new used work works would could this that these those very""".split()
)


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


__all__ = ["FeatureTerms", "content_terms", "feature_terms", "highlight_html", "highlight_spans", "normalize_word"]
