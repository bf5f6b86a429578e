"""Parsing what a student answers: the one parser of ``Prediction: Yes/No`` (and, for rating
methods, ``Rating: r``), used by prediction, evaluation and the report alike.

The answer format is fixed by the training completions: the first line is the prediction, the
rest is reasoning. A text that does not start with it has ``format_ok = False``; the label is
then unknown (the AUC never depends on parsing: it is read from token probabilities).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: the assistant turn starts with this; the Yes/No token is read right after it
PREDICTION_PREFIX = "Prediction:"
ANSWERS = {1: "Yes", 0: "No"}

#: the rating student's answer ends with this line (EXP3RT); the rating token is read right after it
RATING_PREFIX = "Rating:"
_RATING = re.compile(r"^\s*\**\s*rating\s*\**\s*:\s*\**\s*([0-9]+(?:\.[0-9]+)?)", re.I | re.M)
_PRED_RE = re.compile(r"^\s*\**\s*prediction\s*\**\s*:\s*\**\s*(yes|no)\b\W*", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedOutput:
    label: int | None  # the stated prediction, None when the format was not followed
    reasoning: str  # text after the prediction line (whole text when the format was not followed)
    format_ok: bool  # the text starts with "Prediction: Yes/No"


def prediction_line(label: int) -> str:
    if label not in ANSWERS:
        raise ValueError(f"label must be 0 or 1, got {label!r}.")
    return f"{PREDICTION_PREFIX} {ANSWERS[int(label)]}"


def parse_output(text: str) -> ParsedOutput:
    """Split a generated answer into prediction and reasoning; never raises."""
    if not isinstance(text, str):
        return ParsedOutput(None, "", False)
    m = _PRED_RE.match(text)
    if not m:
        return ParsedOutput(None, text.strip(), False)
    return ParsedOutput(1 if m.group(1).lower() == "yes" else 0, text[m.end() :].strip(), True)


def parse_rating(text: str) -> float | None:
    """The last ``Rating: r`` line of a text (None when there is none)."""
    found = _RATING.findall(text or "")
    return float(found[-1]) if found else None


def parse_prediction(text: str) -> int | None:
    """1 for an answer that starts 'Prediction: Yes', 0 for 'Prediction: No', None otherwise."""
    return parse_output(text).label


__all__ = [
    "ANSWERS",
    "PREDICTION_PREFIX",
    "RATING_PREFIX",
    "ParsedOutput",
    "parse_output",
    "parse_prediction",
    "parse_rating",
    "prediction_line",
]
