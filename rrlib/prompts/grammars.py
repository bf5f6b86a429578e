"""Grammars of the teacher answers that are parsed, so that every answer parses by construction.

Each parsed teacher task has an :class:`OutputFormat`: a GBNF grammar (llama.cpp's grammar
notation) and the most new tokens an answer under it takes. The grammar fixes the structure
(labels, separators, the final ``Rating: r``) and leaves the model free text inside each field,
bounded in words so that the whole answer fits its token budget:

* ``preference_extraction``: ``Liked: a; b`` / ``Disliked: c`` with at most MAX_ASPECTS aspects
  of at most MAX_ASPECT_WORDS words per side (the parser's own limits), ``none`` for an empty
  side;
* ``exp3rt_user_profile`` / ``exp3rt_item_profile``: ``Values: ...`` / ``Avoids: ...`` and
  ``Strengths: ...`` / ``Weaknesses: ...``, one line each;
* ``exp3rt_rating_reasoning``: ``Analysis: ...`` then the line ``Rating: r`` with the TRUE rating
  the prompt states (the teacher explains a known rating);
* ``reasoning`` (ReasoningRec): ``Profile analysis: ...`` / ``Target analysis: ...``.

The same grammar text is used by every engine: llama.cpp reads it as its ``grammar`` field,
vLLM as ``structured_outputs.grammar``, and the transformers backend compiles it with
llguidance (:mod:`rrlib.llm.local`). It travels in :attr:`GenerationRequest.grammar`, so the
generation cache keys on it. Free-text words exclude ``:`` (no section label can appear inside
a field) and newlines (each field is one line); a field starts with a letter (the 135M teacher
otherwise fills fields with enumerations such as ``1; 2; 3``).

:func:`parse_rate` records, per task, how many answers parse (the figure notebooks 04 and 05
report and the run manifest collects).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rrlib.llm.base import GenerationRequest
from rrlib.prompts.answers import parse_rating

#: tokens one word of free text is assumed to take when a grammar's bound is turned into a token
#: budget (SmolLM2's tokenizer writes English prose at about 1.3 tokens a word; the margin covers
#: numbers, model names and punctuation)
TOKENS_PER_WORD = 1.8
#: longest word a free-text field accepts, in characters
MAX_WORD_CHARS = 24
#: a field may run this much past the word budget its prompt asks for (post-processing trims to
#: whole sentences within the budget, so a field is not cut mid-sentence by the grammar)
WORD_SLACK = 1.25
#: the label and separator tokens of a format, on top of its fields' words
_FIXED_TOKENS_PER_LITERAL = 4


def literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclass(frozen=True)
class OutputFormat:
    """A parsed teacher task's grammar (GBNF) and the most new tokens an answer under it takes."""

    task: str
    gbnf: str
    max_tokens: int

    def apply(self, request: GenerationRequest) -> GenerationRequest:
        """``request`` decoded under this grammar, with a token budget the grammar fits in."""
        settings = request.settings
        if settings.max_new_tokens < self.max_tokens:
            settings = replace(settings, max_new_tokens=self.max_tokens)
        return replace(request, grammar=self.gbnf, settings=settings)


def _rules(root: str, rules: dict[str, str]) -> str:
    return "\n".join([f"root ::= {root}"] + [f"{name} ::= {body}" for name, body in rules.items()]) + "\n"


def _word_rules(exclude: str = "") -> dict[str, str]:
    """``first``: a field's first word (starts with a letter, after an optional quote or
    parenthesis); ``word``: any later word (a digit may start it)."""
    rest = f"[^ \\t\\n:{exclude}]{{0,{MAX_WORD_CHARS - 1}}}"
    return {"first": f"[\"'(]? [a-zA-Z] {rest}", "word": f"[a-zA-Z0-9\"'(] {rest}"}


def _text_rule(max_words: int) -> str:
    """1..max_words words separated by single spaces, the first starting with a letter."""
    return "first" + (f' (" " word){{0,{max_words - 1}}}' if max_words > 1 else "")


def field_words(words: int) -> int:
    """The most words a free-text field takes for a prompt that asks for ``words``."""
    return max(1, math.ceil(words * WORD_SLACK))


def token_bound(n_words: int, n_literals: int) -> int:
    """The token budget of an answer with ``n_words`` free words and ``n_literals`` fixed strings."""
    return math.ceil(n_words * TOKENS_PER_WORD) + _FIXED_TOKENS_PER_LITERAL * n_literals


# ---------------------------------------------------------------------------------------
# The formats
# ---------------------------------------------------------------------------------------
def preference_format(max_aspects: int, max_aspect_words: int) -> OutputFormat:
    """``Liked: a; b`` / ``Disliked: c``: each side ``none`` or 1..max_aspects aspects of
    1..max_aspect_words words (no ``;`` or ``,`` inside an aspect: the parser splits on them).
    What the grammar cannot refuse: ``none`` (or an aspect the parser reads as none, such as
    ``nothing``) on both sides, which the parser refuses as empty."""
    aspects = "aspect" + (f' ("; " aspect){{0,{max_aspects - 1}}}' if max_aspects > 1 else "")
    rules = {
        "aspects": aspects,
        "side": '"none" | aspects',
        "aspect": _text_rule(max_aspect_words),
        **_word_rules(";,"),
    }
    root = f"{literal('Liked: ')} side {literal(chr(10) + 'Disliked: ')} side"
    n_words = 2 * max_aspects * max_aspect_words
    return OutputFormat("preference_extraction", _rules(root, rules), token_bound(n_words, 2 + 2 * max_aspects))


def sections_format(task: str, sections: Sequence[str], words_per_section: int, tail: str = "") -> OutputFormat:
    """``Label: text`` lines, one per section in order, each text of at most
    ``field_words(words_per_section)`` words, then the fixed ``tail`` (e.g. ``\\nRating: 4``)."""
    if not sections:
        raise ValueError("a sectioned format needs at least one section label")
    n = field_words(words_per_section)
    parts = []
    for i, label in enumerate(sections):
        parts.append(literal(("" if i == 0 else "\n") + label.rstrip() + " "))
        parts.append("text")
    if tail:
        parts.append(literal(tail))
    rules = {"text": _text_rule(n), **_word_rules()}
    return OutputFormat(task, _rules(" ".join(parts), rules), token_bound(n * len(sections), len(parts)))


# ---------------------------------------------------------------------------------------
# Parse rates
# ---------------------------------------------------------------------------------------
def sections_parse(sections: Sequence[str]) -> Callable[[str], bool]:
    """Whether a text holds every section label at a line start, each followed by text."""
    pattern = re.compile(
        r"^\s*(" + "|".join(re.escape(s.rstrip(":")) for s in sections) + r")\s*:\s*(\S.*)?$", re.I | re.M
    )

    def parses(text: str) -> bool:
        found = {m.group(1).lower(): bool(m.group(2)) for m in pattern.finditer(text or "")}
        return all(found.get(s.rstrip(":").lower(), False) for s in sections)

    return parses


def rating_parse(text: str) -> bool:
    """The answer ends with a ``Rating: r`` line (the teacher's rating reasoning)."""
    return parse_rating(text) is not None


def parse_rate(
    task: str, raws: Iterable[Any], parses: Callable[[str], bool], *, constrained: bool, usable: Iterable[bool] = ()
) -> dict[str, Any]:
    """The parse record of one task: how many of the kept raw answers parse (``rate``), and how many
    were usable after post-processing (``usable_rate``, quality checks included)."""
    texts = [r if isinstance(r, str) else "" for r in raws]
    n = len(texts)
    n_parsed = sum(bool(parses(t)) for t in texts)
    ok = list(usable)
    out: dict[str, Any] = {
        "task": task,
        "constrained": bool(constrained),
        "n": n,
        "n_parsed": n_parsed,
        "rate": round(n_parsed / n, 4) if n else None,
    }
    if ok:
        out["n_usable"] = int(sum(ok))
        out["usable_rate"] = round(sum(ok) / len(ok), 4) if ok else None
    return out


def describe(job: str, record: dict[str, Any]) -> str:
    """One line for a notebook: ``job: 98 of 100 parse (98.0%), constrained``."""
    rate = record.get("rate")
    share = "no answers" if rate is None else f"{record['n_parsed']} of {record['n']} parse ({rate:.1%})"
    return f"{job}: {share}, {'constrained' if record.get('constrained') else 'free text'}"


def parse_rates(summaries: dict[str, Any]) -> dict[str, Any]:
    """``{job: parse record}`` of the step summaries that hold one (``summary["parse"]``); what
    notebooks 04 and 05 record as ``parse_rates`` and the run manifest gathers."""
    return {
        name: dict(summary["parse"])
        for name, summary in summaries.items()
        if isinstance(summary, dict) and isinstance(summary.get("parse"), dict)
    }


__all__ = [
    "describe",
    "parse_rates",
    "MAX_WORD_CHARS",
    "OutputFormat",
    "TOKENS_PER_WORD",
    "WORD_SLACK",
    "field_words",
    "literal",
    "parse_rate",
    "preference_format",
    "rating_parse",
    "sections_format",
    "sections_parse",
    "token_bound",
]
