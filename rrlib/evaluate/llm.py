"""Predictions of the LLM students (notebook 07): the Yes/No probability at the prediction
position (for AUC) and the greedy answer whose reasoning feeds BERTScore, for one method on a set
of examples. Scores and generations are cached durably, keyed by the model identity that includes
the adapter's hash, so a rerun only computes what is missing."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from rrlib import predictions as pr
from rrlib.config.params import Config
from rrlib.config.paths import resolve_path
from rrlib.errors import MethodError
from rrlib.llm.base import GenerationRequest, GenerationSettings
from rrlib.llm.cache import CachedGenerator
from rrlib.prompts.answers import parse_output
from rrlib.prompts.exp3rt import STUDENT_TEMPLATE_VERSION, RatingContext, split_rating_answer
from rrlib.student import (
    RATING_SCORE_CACHE_NAME,
    SCORE_CACHE_NAME,
    RatingScoreCache,
    ScoreCache,
    cached_rating_scores,
    cached_yes_no,
    fit_scoring_messages,
    rating_scoring_prompt,
    scoring_prompt,
    student_backend,
)
from rrlib.student.prompts import TEMPLATE_NAME, TEMPLATE_VERSION, PromptContext, build_messages, method_spec

log = logging.getLogger(__name__)

#: new tokens generated for prediction-only methods (enough for "Prediction: Yes" + a little)
PREDICTION_ONLY_MAX_NEW_TOKENS = 8
_EXAMPLE_COLUMNS = ("example_id", "split", "user_id", "target_item_id", "label", "history_item_ids", "history_liked")


def _check_examples(examples: pd.DataFrame) -> None:
    missing = [c for c in _EXAMPLE_COLUMNS if c not in examples.columns]
    if missing:
        raise ValueError(
            f"predict_llm: the examples table lacks column(s) {missing}; pass rows of "
            f"paths.examples (rrlib.data.schema.EXAMPLES)."
        )
    if examples["example_id"].duplicated().any():
        dup = examples.loc[examples["example_id"].duplicated(), "example_id"].iloc[0]
        raise ValueError(f"predict_llm: example_id {dup!r} appears more than once in the examples passed.")


def predict_llm(
    method: str,
    k: int,
    examples: pd.DataFrame,
    cfg: Config,
    ctx: PromptContext,
    adapter_dir: Path | None,
    *,
    seed: int | None = None,
    reasoning_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Like-task predictions of one LLM method on ``examples`` (rows of :mod:`rrlib.predictions`).

    ``p_yes`` is the normalised Yes probability at the prediction position; ``generated_text`` is
    the greedy answer, whose reasoning part feeds BERTScore; ``format_ok`` says whether it starts
    with ``Prediction: Yes/No`` (for an example without generated text: whether greedy decoding
    would write the trained ``Prediction:`` tokens and then Yes or No, read from the scoring pass).
    Finetuned methods need ``adapter_dir``; zero-shot ones run the base model (``adapter_dir=None``,
    ``k=0``). ``reasoning_ids``: the examples whose full reasoning is generated (default: all); the
    others get no text unless GENERATE_PREDICTION_LINES.
    ``df.attrs['stats']`` holds counts."""
    spec = method_spec(method)
    if spec.task == "rating":
        return predict_rating_llm(method, k, examples, cfg, ctx, adapter_dir, seed=seed)
    _check_examples(examples)
    _check_adapter(method, spec.finetuned, adapter_dir)
    seed = cfg.common.seed if seed is None else seed
    backend = student_backend(cfg, adapter_dir)  # checks the adapter folder; loads nothing yet
    cache_dir = resolve_path(cfg.common.cache_dir)
    rows = [r for _, r in examples.iterrows()]
    messages, n_truncated = _fitted(backend, (build_messages(method, r, ctx) for r in rows), cfg)

    prompts = [scoring_prompt(backend.tokenizer, m) for m in messages]  # the training sequence up to the answer
    scores, score_stats = cached_yes_no(
        backend,
        prompts,
        ScoreCache(cache_dir / "scores" / SCORE_CACHE_NAME),
        cfg.evaluate.predict_batch_size,
        desc=f"{method} K={k}: Yes/No",
    )
    with_reasoning = spec.reasons and cfg.evaluate.generate_reasoning
    # reasoning is generated for the reasoning subset only (N_REASONING_TEST); the other examples'
    # greedy answer format is read from the scoring pass, or (GENERATE_PREDICTION_LINES) generated
    explain = set(map(str, reasoning_ids)) if (with_reasoning and reasoning_ids is not None) else None
    requests = _like_requests(method, messages, rows, cfg, int(seed), with_reasoning, explain)
    generator = CachedGenerator(backend, cache_dir)
    generated = dict(zip(requests, generator.generate(list(requests.values()), desc=f"{method} K={k}: generating")))
    texts = [generated[i].text if i in generated else "" for i in range(len(rows))]
    parsed = [parse_output(t) for t in texts]
    greedy = scores.greedy_format
    # a generated text is checked as written; the others by the scoring pass's greedy tokens
    format_ok = [p.format_ok if i in generated else not (greedy[i] == 0.0) for i, p in enumerate(parsed)]
    keep = [spec.reasons and (explain is None or str(r["example_id"]) in explain) for r in rows]
    df = pr.like_rows(
        method,
        k,
        examples,
        scores.p_yes,
        seed=seed,
        generated_text=texts,
        reasoning=[p.reasoning if kept else "" for p, kept in zip(parsed, keep)],
        format_ok=format_ok,
    )
    n_bad = int((~df["format_ok"]).sum()) if len(df) else 0
    stats = {
        **score_stats,
        "n": len(df),
        "n_format_bad": n_bad,
        "format_bad_rate": n_bad / max(len(df), 1),
        "mean_yes_no_mass": float(scores.yes_no_mass.mean()) if len(df) else float("nan"),
        "n_truncated_prompts": n_truncated,
        "n_generated": len(generated),
        "n_format_from_scoring": len(rows) - len(generated),
        "n_format_unknown": int(sum(i not in generated and np.isnan(greedy[i]) for i in range(len(rows)))),
        "model_identity": dict(backend.identity),
        "generation": dict(getattr(generator, "stats", {})),
    }
    if n_bad:
        log.warning(
            "%s K=%s: %d of %d outputs do not start with 'Prediction: Yes/No' (counted in format_ok)",
            method,
            k,
            n_bad,
            len(df),
        )
    df.attrs["stats"] = stats
    backend.close()  # the next method's model does not stack on this one's
    return df


def predict_rating_llm(
    method: str, k: int, examples: pd.DataFrame, cfg: Config, ctx, adapter_dir: Path | None, *, seed: int | None = None
) -> pd.DataFrame:
    """Rating-task predictions of an EXP3RT student (rows of :func:`rrlib.predictions.rating_rows`).

    A reasoning method first writes its reasoning greedily (REASONING_MAX_NEW_TOKENS, cached);
    the rating is then read at the position after ``Rating: `` in the sequence prompt +
    generated reasoning + ``Rating: `` (:func:`rrlib.student.rating_scoring_prompt`, as in
    training): ``predicted_rating`` is the expectation over the probabilities of the tokens
    1..5 there, ``rating_argmax`` the most probable one. ``tallrec_rating`` is read right after
    the prompt. ``format_ok``: the generation reached its ``Rating:`` line (always True without
    reasoning). ``ctx``: a :class:`rrlib.prompts.exp3rt.RatingContext`."""

    spec = method_spec(method)
    _check_rating_inputs(method, examples, ctx)
    _check_adapter(method, spec.finetuned, adapter_dir)
    seed = cfg.common.seed if seed is None else seed
    backend = student_backend(cfg, adapter_dir)
    cache_dir = resolve_path(cfg.common.cache_dir)
    rows = examples.to_dict("records")
    student_messages = (
        ctx.student_messages(str(r["user_id"]), str(r["target_item_id"]), with_reasoning=spec.reasons) for r in rows
    )
    messages, n_truncated = _fitted(backend, student_messages, cfg)
    texts = [""] * len(rows)
    generator = None
    if spec.reasons:
        requests = _reasoning_requests(method, messages, rows, cfg, int(seed))
        generator = CachedGenerator(backend, cache_dir)
        texts = [g.text for g in generator.generate(requests, desc=f"{method} K={k}: reasoning")]
    answers = [split_rating_answer(t) for t in texts]
    prompts = [rating_scoring_prompt(backend.tokenizer, m, a.reasoning) for m, a in zip(messages, answers)]
    scores, score_stats = cached_rating_scores(
        backend,
        prompts,
        RatingScoreCache(cache_dir / "scores" / RATING_SCORE_CACHE_NAME),
        cfg.evaluate.predict_batch_size,
        desc=f"{method} K={k}: rating tokens",
    )
    format_ok = [a.format_ok if spec.reasons else True for a in answers]
    df = pr.rating_rows(
        method,
        k,
        examples,
        scores.expected,
        like_threshold=cfg.data.like_threshold,
        rating_argmax=scores.argmax,
        seed=seed,
        generated_text=texts,
        reasoning=[a.reasoning for a in answers],
        format_ok=format_ok,
    )
    n_bad = int(len(df) - sum(format_ok))
    df.attrs["stats"] = {
        **score_stats,
        "n": len(df),
        "n_format_bad": n_bad,
        "format_bad_rate": n_bad / max(len(df), 1),
        "mean_rating_mass": float(scores.mass.mean()) if len(df) else float("nan"),
        "n_truncated_prompts": n_truncated,
        "model_identity": dict(backend.identity),
        "generation": dict(getattr(generator, "stats", {})) if generator else {},
    }
    if n_bad:
        log.warning(
            "%s K=%s: %d of %d generations never reached 'Rating:' (the rating is read after the cut "
            "reasoning; counted in format_ok)",
            method,
            k,
            n_bad,
            len(df),
        )
    backend.close()
    return df


def _check_rating_inputs(method: str, examples: pd.DataFrame, ctx) -> None:
    """A rating student reads its prompts from a RatingContext and needs the target ratings."""
    if not isinstance(ctx, RatingContext):
        raise MethodError(
            f"method {method!r} answers ratings: pass its RatingContext "
            f"(PromptContext.from_run(paths, domain, {method!r}) returns it)."
        )
    for col in ("example_id", "user_id", "target_item_id", "target_rating", "label"):
        if col not in examples.columns:
            raise ValueError(f"predict_rating_llm: the examples lack column {col!r}.")


def _reasoning_requests(
    method: str, messages: Sequence[list], rows: Sequence[dict], cfg: Config, seed: int
) -> list[GenerationRequest]:
    """A rating student's greedy reasoning, one request per example: the rating is then read
    after it, as in training."""
    settings = GenerationSettings(
        temperature=0.0, top_p=1.0, seed=seed, max_new_tokens=cfg.evaluate.reasoning_max_new_tokens
    )
    return [
        GenerationRequest(
            messages=tuple(m),
            settings=settings,
            template=f"exp3rt_student:{method}",
            template_version=STUDENT_TEMPLATE_VERSION,
            tag=str(r["example_id"]),
        )
        for m, r in zip(messages, rows)
    ]


def _check_adapter(method: str, finetuned: bool, adapter_dir: Path | None) -> None:
    """A finetuned method is scored with its adapter, a zero-shot one with the base model alone."""
    if finetuned and adapter_dir is None:
        raise MethodError(f"method {method!r} is finetuned: pass its adapter folder (paths.adapter_dir).")
    if not finetuned and adapter_dir is not None:
        raise MethodError(f"method {method!r} is zero-shot (base model): pass adapter_dir=None.")


def _fitted(backend, prompts: Iterable[list], cfg: Config) -> tuple[list, int]:
    """Each prompt's messages cut to MAX_SEQ_LENGTH as the validation prompts were in training
    (generation applies the same cut); returns them and how many had to be cut."""
    messages, n_truncated = [], 0
    for m in prompts:
        fitted, truncated = fit_scoring_messages(backend, m, cfg.student.max_seq_length)
        messages.append(fitted)
        n_truncated += truncated
    return messages, n_truncated


def _like_requests(
    method: str,
    messages: Sequence[list],
    rows: Sequence[pd.Series],
    cfg: Config,
    seed: int,
    with_reasoning: bool,
    explain: set[str] | None,
) -> dict[int, GenerationRequest]:
    """The greedy generations of a like student, by row position: the full answer (reasoning
    included) for the examples in ``explain`` (None: all), the short prediction line for the
    others when GENERATE_PREDICTION_LINES asks for it, nothing otherwise."""
    settings = GenerationSettings(
        temperature=0.0,
        top_p=1.0,
        seed=seed,
        max_new_tokens=(cfg.evaluate.reasoning_max_new_tokens if with_reasoning else PREDICTION_ONLY_MAX_NEW_TOKENS),
    )
    short = replace(settings, max_new_tokens=PREDICTION_ONLY_MAX_NEW_TOKENS)
    requests: dict[int, GenerationRequest] = {}
    for i, (m, r) in enumerate(zip(messages, rows)):
        reasons_here = with_reasoning and (explain is None or str(r["example_id"]) in explain)
        if reasons_here or cfg.evaluate.generate_prediction_lines:
            requests[i] = GenerationRequest(
                messages=tuple(m),
                settings=settings if reasons_here else short,
                template=f"{TEMPLATE_NAME}:{method}",
                template_version=TEMPLATE_VERSION,
                tag=str(r["example_id"]),
            )
    return requests


__all__ = ["PREDICTION_ONLY_MAX_NEW_TOKENS", "predict_llm", "predict_rating_llm"]
