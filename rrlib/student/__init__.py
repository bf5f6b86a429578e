"""The student model, shared by finetuning (06) and evaluation (07).

* :mod:`~rrlib.student.model` — loading with the right dtype and adapter (and for training);
* :mod:`~rrlib.student.scoring` — the Yes/No probability at the trained prediction position and the
  rating-token probabilities (EXP3RT), with shared-prefix reuse;
* :mod:`~rrlib.student.caches` — durable score caches keyed by the model identity (adapter hash
  included) and the scored ids;
* :mod:`~rrlib.student.generate` — greedy generation in token-bounded batches.
"""

from rrlib.student.caches import (
    RATING_SCORE_CACHE_NAME,
    SCORE_CACHE_NAME,
    RatingScoreCache,
    ScoreCache,
    cached_rating_scores,
    cached_yes_no,
)
from rrlib.student.generate import greedy_generate
from rrlib.student.model import (
    ADAPTER_FILES,
    ADAPTER_SUBDIR,
    GENERATION_BATCH_TOKENS,
    load_student_for_training,
    resolve_adapter,
    student_backend,
    student_dtype,
)
from rrlib.student.scoring import (
    PREFIX_REUSE,
    PROMPT_MARGIN,
    RATINGS,
    RatingPrompt,
    RatingScores,
    ScoringPrompt,
    YesNoScores,
    answer_tokens,
    candidate_log_probs,
    chat_token_ids,
    fit_scoring_messages,
    pad_token_id,
    rating_probabilities,
    rating_scores_from_log_probs,
    rating_scoring_prompt,
    scoring_prompt,
    shared_prefix_length,
    yes_no_probabilities,
)

__all__ = [
    "ADAPTER_FILES",
    "ADAPTER_SUBDIR",
    "GENERATION_BATCH_TOKENS",
    "PREFIX_REUSE",
    "PROMPT_MARGIN",
    "RATINGS",
    "RATING_SCORE_CACHE_NAME",
    "SCORE_CACHE_NAME",
    "RatingPrompt",
    "RatingScoreCache",
    "RatingScores",
    "ScoreCache",
    "ScoringPrompt",
    "YesNoScores",
    "answer_tokens",
    "cached_rating_scores",
    "cached_yes_no",
    "candidate_log_probs",
    "chat_token_ids",
    "fit_scoring_messages",
    "greedy_generate",
    "load_student_for_training",
    "pad_token_id",
    "rating_probabilities",
    "rating_scores_from_log_probs",
    "rating_scoring_prompt",
    "resolve_adapter",
    "scoring_prompt",
    "shared_prefix_length",
    "student_backend",
    "student_dtype",
    "yes_no_probabilities",
]
