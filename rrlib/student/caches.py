"""Durable score caches (crash-safe JSONL logs) keyed by the model identity, which includes a hash
of the adapter weights, and by the scored ids, so outputs of different adapters never mix."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rrlib.io import JsonlLog, stable_hash
from rrlib.llm.progress import Progress
from rrlib.prompts.exp3rt import STUDENT_TEMPLATE_VERSION
from rrlib.student.prompts import TEMPLATE_VERSION
from rrlib.student.scoring import (
    PREFIX_REUSE,
    RATINGS,
    RatingPrompt,
    RatingScores,
    ScoringPrompt,
    YesNoScores,
    answer_tokens,
    candidate_log_probs,
    pad_token_id,
    rating_scores_from_log_probs,
    yes_no_probabilities,
)

log = logging.getLogger(__name__)

RATING_SCORE_CACHE_NAME = "student_rating_scores.jsonl"

SCORE_CACHE_NAME = "student_yes_no_scores.jsonl"


class ScoreCache:
    """Append-only, crash-safe JSONL of Yes/No scores keyed by model identity and the scored ids."""

    REQUIRED: tuple[str, ...] = ("key", "p_yes", "yes_no_mass")

    def __init__(self, path: Path):
        self.path = Path(path)
        self.log = JsonlLog(self.path, required=self.REQUIRED)
        self._rows: dict[str, dict] = {r["key"]: r for r in self.log.load().records}

    @staticmethod
    def key(identity: Mapping[str, Any], prompt: ScoringPrompt) -> str:
        return stable_hash(
            {
                "identity": dict(identity),
                "template_version": TEMPLATE_VERSION,
                "ids": list(prompt.ids),
                "yes": prompt.yes_id,
                "no": prompt.no_id,
                "prefix_reuse": PREFIX_REUSE,
            }
        )

    def get(self, key: str) -> dict | None:
        return self._rows.get(key)

    def put_many(self, rows: Sequence[dict]) -> None:
        self.log.append(rows)
        for row in rows:
            self._rows[row["key"]] = row


def cached_yes_no(
    backend, prompts: Sequence[ScoringPrompt], cache: ScoreCache, batch_size: int, desc: str
) -> tuple[YesNoScores, dict]:
    """Scores of ``prompts`` under ``backend.identity``; only uncached ones load and run the
    model (in chunks, each appended to the cache at once so an interruption loses little)."""
    keys = [ScoreCache.key(backend.identity, p) for p in prompts]
    # entries written before the greedy format check was read from the scoring pass lack it
    todo = [i for i, k in enumerate(keys) if "greedy_format" not in (cache.get(k) or {})]
    chunk = max(batch_size * 4, 1)
    bar = Progress(total=len(prompts), initial=len(prompts) - len(todo), desc=desc, unit="prompt", disable=not todo)
    try:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            scores = yes_no_probabilities(
                backend.model,
                [prompts[i] for i in part],
                batch_size,
                pad_id=pad_token_id(backend.tokenizer),
                prefix_reuse=PREFIX_REUSE,
                desc=f"{desc} (chunk)",
            )
            cache.put_many(
                [
                    {
                        "key": keys[i],
                        "p_yes": float(p),
                        "yes_no_mass": float(m),
                        "greedy_format": None if np.isnan(g) else bool(g),
                    }
                    for i, p, m, g in zip(part, scores.p_yes, scores.yes_no_mass, scores.greedy_format)
                ]
            )
            bar.update(len(part))
    finally:
        bar.close()
    rows = [r for r in (cache.get(k) for k in keys) if r is not None]
    if len(rows) != len(keys):
        raise RuntimeError(
            f"yes_no_probabilities: {len(keys) - len(rows)} score(s) missing from the cache after scoring."
        )
    tokens = answer_tokens(backend.tokenizer, prompts)
    return (
        YesNoScores(
            np.array([r["p_yes"] for r in rows], dtype=float),
            np.array([r["yes_no_mass"] for r in rows], dtype=float),
            np.array([np.nan if r["greedy_format"] is None else float(r["greedy_format"]) for r in rows]),
        ),
        {
            "scores_cached": len(prompts) - len(todo),
            "scores_computed": len(todo),
            "yes_token": tokens.yes_token,
            "no_token": tokens.no_token,
        },
    )


class RatingScoreCache(ScoreCache):
    """Append-only JSONL of rating-token log-probabilities keyed by model identity and scored ids."""

    REQUIRED = ("key", "log_probs")

    @staticmethod
    def key(identity: Mapping[str, Any], prompt: RatingPrompt) -> str:  # type: ignore[override]
        return stable_hash(
            {
                "identity": dict(identity),
                "template_version": STUDENT_TEMPLATE_VERSION,
                "ids": list(prompt.ids),
                "ratings": list(prompt.rating_ids),
            }
        )


def cached_rating_scores(
    backend, prompts: Sequence[RatingPrompt], cache: RatingScoreCache, batch_size: int, desc: str
) -> tuple[RatingScores, dict]:
    """Rating scores of ``prompts`` under ``backend.identity``; only uncached ones run the model."""
    keys = [RatingScoreCache.key(backend.identity, p) for p in prompts]
    todo = [i for i, k in enumerate(keys) if cache.get(k) is None]
    chunk = max(batch_size * 4, 1)
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        lp, _ = candidate_log_probs(
            backend.model,
            [prompts[i].ids for i in part],
            [prompts[i].rating_ids for i in part],
            batch_size,
            pad_id=pad_token_id(backend.tokenizer),
            desc=desc,
        )
        cache.put_many([{"key": keys[i], "log_probs": [float(x) for x in row]} for i, row in zip(part, lp)])
    rows = [r for r in (cache.get(k) for k in keys) if r is not None]
    if len(rows) != len(keys):
        raise RuntimeError(f"rating scores: {len(keys) - len(rows)} missing from the cache after scoring.")
    lp = np.array([r["log_probs"] for r in rows], dtype=np.float64).reshape(-1, len(RATINGS))
    return rating_scores_from_log_probs(lp), {"scores_cached": len(prompts) - len(todo), "scores_computed": len(todo)}
