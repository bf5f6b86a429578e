"""Clean and check what the teacher LLM writes, retry what is unusable, flag what stays bad.

Cleaning removes chat-template tokens, role prefixes ("assistant:"), answer labels
("Description:"), pleasantries ("Sure, here is ..."), trailing offers ("I hope this helps"),
markdown headers, emphasis and bullets, and lines that merely echo the prompt. Then the word
budget is enforced, cutting at a sentence boundary where that keeps most of the text.

Every output gets a ``status``:

* ``ok``: usable as is;
* ``too_long_trimmed``: usable, but cut to the word budget (or its unfinished last sentence,
  left by max_new_tokens, was dropped);
* ``repetitive``: a line, a sentence or an n-gram loop repeats;
* ``degenerate``: too short, mostly non-letters, or a copy of the prompt;
* ``empty``: nothing left after cleaning.

Only :data:`USABLE_STATUSES` should be fed downstream; ``detail`` says what was found.

Retries (:func:`generate_checked`): an unusable output is generated again up to
MAX_OUTPUT_RETRIES times with a new seed. A new seed only changes the answer when sampling at a
real temperature; with greedy decoding (temperature 0) or the paper's near-greedy 0.01 it would
return the same text, so each retry also raises the temperature to at least
``RETRY_TEMPERATURE_STEP * attempt`` (0.3, then 0.6, ...). A request decoded under a grammar also
gets half its token budget again: the grammar bounds words, not tokens, so a run of long junk words
(``a630GBAEBGA0,427A,186R,1``) is the one way its answer can be cut before its last label. Retries go
through the same durable cache (their settings differ, so their keys differ) and the best attempt
is kept.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from rrlib.llm.base import GenerationRequest, GenerationResult, GenerationSettings

STATUSES = ("ok", "too_long_trimmed", "repetitive", "degenerate", "empty")
USABLE_STATUSES = frozenset({"ok", "too_long_trimmed"})
_RANK = {s: i for i, s in enumerate(STATUSES)}  # lower is better
RETRY_TEMPERATURE_STEP = 0.3
ECHO_NGRAM = 8
ECHO_FRACTION = 0.6  # share of the output's 8-grams found verbatim in the prompt


def is_usable(status: str) -> bool:
    return status in USABLE_STATUSES


def count_words(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True)
class Cleaned:
    text: str
    status: str
    n_words: int
    detail: str = ""

    @property
    def usable(self) -> bool:
        return is_usable(self.status)


# ---------------------------------------------------------------------------------------
# Boilerplate
# ---------------------------------------------------------------------------------------
_SPECIAL_TOKENS = re.compile(r"<\|[^|>]{1,40}\|>|</?s>|\[/?INST\]")
_ROLE_PREFIX = re.compile(r"^\s*(assistant|system|user)\s*(:|\n)\s*", re.I)
_ANSWER_LABEL = re.compile(
    r"^\s*(\*\*)?((item|product|movie|film|user|customer|viewer)\s+)?(description|profile|summary|answer|"
    r"response|output|reasoning|explanation)(\*\*)?\s*(\(\s*\d+\s*words?\s*\))?\s*(:|-)(\*\*)?\s*",
    re.I,
)
_PLEASANTRY = re.compile(
    r"^\s*(sure( thing)?|certainly|of course|okay|ok|absolutely|great|alright|happy to help)\s*[.!:,]\s*", re.I
)
_INTRO = re.compile(r"^\s*(here is|here's|here are|below is|the following is)\b[^:\n]*(:|\.\s|\n)\s*", re.I)
_OUTRO = re.compile(
    r"\s*(i hope (this|that) helps|let me know if|feel free to|is there anything else)"
    r"[^\n]*$",
    re.I | re.S,
)
_WORD_COUNT_NOTE = re.compile(r"\(?\s*(word count|words?)\s*:\s*\d+\s*\)?|\(\s*\d+\s*words?\s*\)", re.I)
_MD_HEADER = re.compile(r"^\s*#{1,6}\s*")
_BULLET = re.compile(r"^\s*([-*\u2022]|\d{1,2}[.)])\s+")
# input field labels of the teacher prompts that small models copy at the start of a line
_FIELD_LABEL = re.compile(
    r"^\s*(title|details|plot|seller description|reviews?(\s*\([^)]*\))?|"
    r"new (movie|product))\s*:\s*",
    re.I,
)
_EMPTY_LABEL = re.compile(r"^\s*[^\W\d_][\w ]{0,30}:\s*$")
_BRACKET_CODE = re.compile(r"\[[^\]\s]*\d[^\]\s]*\]|\[\S*$")  # "[5]", "[B000FI4S1E]", a torn "[5"


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", s.lower())).strip()


def _is_echo(line: str, prompt_norm: str, prompt_lines: set[str]) -> bool:
    norm = _norm(line)
    if not norm:
        return False
    return norm in prompt_lines or (count_words(norm) >= 4 and f" {norm} " in prompt_norm)


def strip_boilerplate(text: str, prompt_text: str = "", keep_labels: Sequence[str] = ()) -> tuple[str, int]:
    """Remove wrapper text and copied prompt lines; return (cleaned, number of echoed lines removed).
    ``keep_labels`` (e.g. the reasoning's section markers) survive even on a line of their own."""
    keep = {_norm(k) for k in keep_labels}
    text = _SPECIAL_TOKENS.sub(" ", text).replace("\r", "")
    for _ in range(3):  # prefixes can stack: "assistant: Sure! Description: ..."
        before = text
        for pattern in (_ROLE_PREFIX, _PLEASANTRY, _INTRO, _ANSWER_LABEL):
            text = pattern.sub("", text, count=1)
        if text == before:
            break
    text = _OUTRO.sub("", text)
    text = _WORD_COUNT_NOTE.sub("", text)
    # ids the prompt shows in brackets (e.g. an ASIN after a title) are noise in the answer
    for code in set(re.findall(r"\[([A-Za-z0-9_-]{4,})\]", prompt_text)):
        if not code.isdigit():
            pattern = re.compile(rf"\[?\b{re.escape(code)}\b\]?:?")
            text, prompt_text = pattern.sub(" ", text), pattern.sub(" ", prompt_text)
    prompt_lines = {_norm(line) for line in prompt_text.splitlines() if count_words(line) >= 2}
    prompt_norm = f" {_norm(prompt_text)} "
    kept, echoed = [], 0
    for line in text.split("\n"):
        if _MD_HEADER.match(line):
            line = _MD_HEADER.sub("", line)
            if count_words(line) <= 6 and not line.rstrip().endswith((".", "!", "?")):
                continue  # a heading such as "### Description", not content
        line = _BULLET.sub("", line).replace("**", "").replace("__", "")
        if prompt_text and _is_echo(line, prompt_norm, prompt_lines):
            echoed += 1
            continue
        line = _BRACKET_CODE.sub(" ", _FIELD_LABEL.sub("", line))
        line = _BULLET.sub("", line)
        if _EMPTY_LABEL.match(line) and _norm(line) not in keep:
            continue  # "Strengths:" with nothing after it
        if prompt_text and _is_echo(line, prompt_norm, prompt_lines):
            echoed += 1
            continue
        kept.append(re.sub(r"[ \t]+", " ", line).strip())
    return "\n".join(line for line in kept if line).strip(), echoed


# ---------------------------------------------------------------------------------------
# Word budget
# ---------------------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+")


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def trim_to_words(text: str, budget: int, keep_fraction: float = 0.6) -> tuple[str, bool]:
    """At most ``budget`` words: whole sentences when they keep at least ``keep_fraction``
    of the budget, else a hard cut closed with a full stop. Returns (text, trimmed)."""
    if count_words(text) <= budget:
        return text, False
    kept, n = [], 0
    for s in sentences(text):
        w = count_words(s)
        if n + w > budget:
            break
        kept.append(s)
        n += w
    if kept and n >= keep_fraction * budget:
        return " ".join(kept), True
    words = text.split()[:budget]
    return " ".join(words).rstrip(",;:-\u2014").rstrip() + ("" if words[-1][-1] in ".!?" else "."), True


def drop_unfinished_sentence(text: str, keep_fraction: float = 0.5) -> tuple[str, bool]:
    """Drop a last sentence cut off by max_new_tokens, when the rest keeps most of the text."""
    if not text or text.rstrip()[-1] in ".!?\"')":
        return text, False
    parts = sentences(text)
    if len(parts) < 2:
        return text, False
    rest = " ".join(parts[:-1])
    if count_words(rest) >= keep_fraction * count_words(text):
        return rest, True
    return text, False


# ---------------------------------------------------------------------------------------
# Quality checks
# ---------------------------------------------------------------------------------------
def repetition(text: str) -> str:
    """Why ``text`` is repetitive ('' when it is not)."""
    lines = [_norm(line) for line in text.split("\n") if count_words(line) >= 3]
    if lines:
        line, n = Counter(lines).most_common(1)[0]
        if n >= 3:
            return f"a line repeats {n} times"
    sents = [_norm(s) for s in sentences(text.replace("\n", " ")) if count_words(s) >= 4]
    if sents:
        sent, n = Counter(sents).most_common(1)[0]
        if n >= 2:
            return f"a sentence repeats {n} times: '{sent[:60]}'"
    words = _norm(text).split()
    run = 1
    for a, b in zip(words, words[1:]):
        run = run + 1 if a == b else 1
        if run >= 4:
            return f"the word '{a}' repeats {run} times in a row"
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    if len(grams) >= 8:
        gram, n = Counter(grams).most_common(1)[0]
        if n >= 3 and len(set(grams)) / len(grams) < 0.6:
            return f"the phrase '{' '.join(gram)}' repeats {n} times"
    return ""


def degeneracy(text: str, prompt_text: str, min_words: int) -> str:
    """Why ``text`` is degenerate ('' when it is not)."""
    chars = [c for c in text if not c.isspace()]
    if chars and sum(c.isalpha() for c in chars) / len(chars) < 0.5:
        return "mostly punctuation, digits or symbols"
    tokens = [t.strip(".,;:!?\"'()") for t in text.split()]
    wordlike = sum(bool(re.fullmatch(r"[^\W\d_]{2,}(['\u2019-][^\W\d_]+)*|[aAI]", t)) for t in tokens)
    if len(tokens) >= 5 and wordlike / len(tokens) < 0.6:
        return f"mostly codes or symbols rather than words ({wordlike} of {len(tokens)} tokens are words)"
    n = count_words(text)
    if n < min_words:
        return f"too short ({n} words, at least {min_words} expected)"
    if prompt_text:
        words, prompt = _norm(text).split(), _norm(prompt_text)
        grams = [" ".join(words[i : i + ECHO_NGRAM]) for i in range(len(words) - ECHO_NGRAM + 1)]
        if grams:
            copied = sum(g in prompt for g in grams) / len(grams)
            if copied >= ECHO_FRACTION:
                return f"copies the prompt ({copied:.0%} of its {ECHO_NGRAM}-word phrases)"
    return ""


INSTRUCTION_NGRAM = 6


def drop_instruction_echo(text: str, prompt_text: str) -> tuple[str, int]:
    """Drop sentences that repeat the prompt's instructions (its last paragraph; every teacher
    template ends with them), e.g. "... their taste in at most 100 words, inventing nothing".
    A sentence goes when it shares a 6-word phrase with the instructions."""
    if not prompt_text.strip() or not text:
        return text, 0
    words = _norm(re.split(r"\n\s*\n", prompt_text.strip())[-1]).split()
    grams = {tuple(words[i : i + INSTRUCTION_NGRAM]) for i in range(len(words) - INSTRUCTION_NGRAM + 1)}
    kept, dropped = [], 0
    for sent in sentences(text):
        w = _norm(sent).split()
        if any(tuple(w[i : i + INSTRUCTION_NGRAM]) in grams for i in range(len(w) - INSTRUCTION_NGRAM + 1)):
            dropped += 1
        else:
            kept.append(sent)
    return " ".join(kept), dropped


def clean_output(
    raw: str,
    *,
    word_budget: int,
    prompt_text: str = "",
    hit_length_limit: bool = False,
    min_words: int | None = None,
    one_paragraph: bool = True,
) -> Cleaned:
    """Clean ``raw``, enforce ``word_budget`` and classify the result."""
    min_words = max(3, word_budget // 5) if min_words is None else min_words
    text, echoed = strip_boilerplate(raw, prompt_text)
    if one_paragraph:
        text = re.sub(r"\s+", " ", text).strip()
    text, parroted = drop_instruction_echo(text, prompt_text)
    if not text:
        if echoed or parroted:
            return Cleaned(
                "",
                "degenerate",
                0,
                f"only echoes the prompt ({echoed} line(s), {parroted} sentence(s) repeating the instructions)",
            )
        return Cleaned("", "empty", 0, "nothing left after removing boilerplate" if raw.strip() else "")
    details: list[str] = []
    text, trimmed = _fit_budget(text, parroted, hit_length_limit, word_budget, details)
    return _classify(text, prompt_text, min_words, trimmed, details)


def _fit_budget(
    text: str, parroted: int, hit_length_limit: bool, word_budget: int, details: list[str]
) -> tuple[str, bool]:
    """Drop an unfinished last sentence and trim to the budget, noting why in ``details``."""
    trimmed = False
    if parroted:
        details.append(f"{parroted} sentence(s) repeating the instructions removed")
    if hit_length_limit:
        text, cut = drop_unfinished_sentence(text)
        if cut:
            details.append("unfinished last sentence dropped (max_new_tokens reached)")
            trimmed = True
    text, cut = trim_to_words(text, word_budget)
    if cut:
        details.append(f"trimmed to {word_budget} words")
        trimmed = True
    return text, trimmed


def _classify(text: str, prompt_text: str, min_words: int, trimmed: bool, details: list[str]) -> Cleaned:
    n = count_words(text)
    if n == 0:
        return Cleaned("", "empty", 0, "; ".join(details))
    why = repetition(text)
    if why:
        return Cleaned(text, "repetitive", n, "; ".join(details + [why]))
    why = degeneracy(text, prompt_text, min_words)
    if why:
        return Cleaned(text, "degenerate", n, "; ".join(details + [why]))
    return Cleaned(text, "too_long_trimmed" if trimmed else "ok", n, "; ".join(details))


def clean_sectioned(
    raw: str, *, sections: Sequence[str], words_per_section: int, prompt_text: str = "", hit_length_limit: bool = False
) -> Cleaned:
    """Clean a two-part answer such as the reasoning ('Profile analysis: ... Target analysis:
    ...'): each part is trimmed to ``words_per_section``; parts are kept on their own lines.
    Without the section markers the text is treated as one part of twice the budget."""
    text, echoed = strip_boilerplate(raw, prompt_text, keep_labels=sections)
    text = re.sub(r"[ \t]+", " ", text)
    if not text.strip():
        if echoed:
            return Cleaned("", "degenerate", 0, f"only echoes the prompt ({echoed} line(s))")
        return Cleaned("", "empty", 0, "")
    pattern = re.compile("|".join(re.escape(s.rstrip(":")) + r"\s*:" for s in sections), re.I)
    marks = list(pattern.finditer(text))
    min_words = max(3, words_per_section // 5)
    details, trimmed = [], False
    found = {}
    for i, m in enumerate(marks):
        label = next(s for s in sections if m.group(0).lower().startswith(s.rstrip(":").lower()))
        if label in found:
            continue  # a repeated marker; repetition check sees it in the body
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        found[label] = re.sub(r"\s+", " ", text[m.end() : end]).strip()
    if len(found) == len(sections) and all(found.values()):
        parts = []
        for label in sections:
            body, parroted = drop_instruction_echo(found[label], prompt_text)
            if parroted:
                details.append(f"'{label}': {parroted} sentence(s) repeating the instructions removed")
            if hit_length_limit and label == sections[-1]:
                body, cut = drop_unfinished_sentence(body)
                if cut and not trimmed:
                    details.append("unfinished last sentence dropped (max_new_tokens reached)")
                    trimmed = True
            body, cut = trim_to_words(body, words_per_section)
            if cut:
                details.append(f"'{label}' trimmed to {words_per_section} words")
                trimmed = True
            parts.append(f"{label} {body}".strip())
        joined = "\n".join(parts)
        empty = [label for label, part in zip(sections, parts) if part == label]
        if empty:
            return Cleaned(
                joined,
                "degenerate",
                count_words(joined),
                "; ".join(details + [f"empty section(s): {', '.join(empty)}"]),
            )
        return _classify(joined, prompt_text, min_words, trimmed, details)
    details.append("section markers missing; kept as one text")
    flat, parroted = drop_instruction_echo(re.sub(r"\s+", " ", text).strip(), prompt_text)
    flat, trimmed = _fit_budget(flat, parroted, hit_length_limit, 2 * words_per_section, details)
    return _classify(flat, prompt_text, min_words, trimmed, details)


# ---------------------------------------------------------------------------------------
# Generation with retries
# ---------------------------------------------------------------------------------------
class Generator(Protocol):
    def generate(self, requests: list[GenerationRequest], desc: str = "") -> list[GenerationResult]: ...


@dataclass(frozen=True)
class CheckedOutput:
    """One request's final, post-processed answer."""

    text: str
    status: str
    n_words: int
    detail: str
    attempts: int  # generations tried for this request (1 + retries)
    truncated_prompt: bool  # the backend cut the prompt to fit the context
    raw: str  # the kept attempt's raw model text
    prompt_tokens: int = 0
    completion_tokens: int = 0


def retry_settings(settings: GenerationSettings, attempt: int) -> GenerationSettings:
    """Settings of retry ``attempt`` (1, 2, ...): a new seed, and a temperature high enough for
    that seed to matter (see the module docstring)."""
    return replace(
        settings, seed=settings.seed + attempt, temperature=max(settings.temperature, RETRY_TEMPERATURE_STEP * attempt)
    )


def retry_request(request: GenerationRequest, attempt: int) -> GenerationRequest:
    """``request`` for retry ``attempt``: :func:`retry_settings`, and 1.5 times the token budget when
    a grammar constrains it (see the module docstring)."""
    settings = retry_settings(request.settings, attempt)
    if request.grammar:
        settings = replace(settings, max_new_tokens=settings.max_new_tokens + settings.max_new_tokens // 2)
    return replace(request, settings=settings)


def prompt_text_of(request: GenerationRequest) -> str:
    return "\n".join(m["content"] for m in request.messages if m["role"] != "assistant")


def generate_checked(
    generator: Generator,
    requests: Sequence[GenerationRequest],
    check: Callable[[GenerationRequest, GenerationResult], Cleaned],
    max_retries: int,
    desc: str = "",
) -> list[CheckedOutput]:
    """Generate, check every answer with ``check``, regenerate the unusable ones up to
    ``max_retries`` times and keep each request's best attempt (same order as ``requests``)."""
    requests = list(requests)
    if not requests:
        return []
    if getattr(generator, "streams_followups", False):
        return _generate_checked_streaming(generator, requests, check, max_retries, desc)
    outputs: list[CheckedOutput] = []
    for req, res in zip(requests, generator.generate(requests, desc=desc)):
        outputs.append(_checked(check(req, res), res, 1))
    for attempt in range(1, max_retries + 1):
        bad = [i for i, o in enumerate(outputs) if not is_usable(o.status)]
        if not bad:
            break
        retry = [retry_request(requests[i], attempt) for i in bad]
        results = generator.generate(retry, desc=f"{desc} (retry {attempt}: {len(bad)} unusable)")
        for i, req, res in zip(bad, retry, results):
            outputs[i] = _better(outputs[i], _checked(check(req, res), res, attempt + 1))
    return outputs


def _generate_checked_streaming(generator, requests, check, max_retries: int, desc: str) -> list[CheckedOutput]:
    """:func:`generate_checked` with each retry sent as soon as its unusable attempt is back
    (``generator.generate_followups``): the same requests, seeds and kept attempts as the rounds,
    without a server idling through the tail of each round."""
    best: list[CheckedOutput | None] = [None] * len(requests)
    origin = list(range(len(requests)))  # generated request -> the request it answers
    attempt = [1] * len(requests)

    def follow(j: int, req: GenerationRequest, res: GenerationResult) -> GenerationRequest | None:
        i, a = origin[j], attempt[j]
        new = _checked(check(req, res), res, a)
        kept = best[i]
        best[i] = new if kept is None else _better(kept, new)
        if is_usable(best[i].status) or a > max_retries:  # type: ignore[union-attr]
            return None
        origin.append(i)
        attempt.append(a + 1)
        return retry_request(requests[i], a)

    generator.generate_followups(requests, follow, desc=desc)
    return best  # type: ignore[return-value]


def _better(kept: CheckedOutput, new: CheckedOutput) -> CheckedOutput:
    """The attempt to keep: ``new`` when its status ranks better, else ``kept`` counting ``new``'s attempt."""
    return new if _RANK[new.status] < _RANK[kept.status] else replace(kept, attempts=new.attempts)


def _checked(c: Cleaned, res: GenerationResult, attempt: int) -> CheckedOutput:
    return CheckedOutput(
        text=c.text,
        status=c.status,
        n_words=c.n_words,
        detail=c.detail,
        attempts=attempt,
        truncated_prompt=bool(res.truncated_prompt),
        raw=res.text,
        prompt_tokens=res.prompt_tokens,
        completion_tokens=res.completion_tokens,
    )
