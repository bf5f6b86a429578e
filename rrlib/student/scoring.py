"""The student's scores: the Yes/No probability at the prediction position, and the rating-token
probabilities after "Rating: " (EXP3RT).

The AUC is read from probabilities, never from parsed text. The scored position is the one the
training sequence puts the answer at: :func:`scoring_prompt` tokenizes the prompt followed by
the completions ``Prediction: Yes`` and ``Prediction: No`` exactly as trl tokenizes training
examples, scores their common prefix, and takes the Yes/No token ids where the two first differ
(" Yes" with a leading space in byte-level BPE, "Yes" in others; whatever the chat template puts
around the assistant turn). Validation during training (06) and prediction (07) both go
through :func:`yes_no_probabilities` on these ids; the probabilities of the two tokens are
normalised over the two. Scores are cached by :mod:`rrlib.student.caches`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from rrlib.errors import RatingTokenError
from rrlib.llm.base import Message
from rrlib.prompts.answers import ANSWERS, prediction_line
from rrlib.prompts.exp3rt import SCALE, rating_answer

log = logging.getLogger(__name__)

#: cached Yes/No scores start from the KV cache of the prompts' shared prefix (part of their key)
PREFIX_REUSE = True

# ---------------------------------------------------------------------------------------
# Yes/No scoring at the prediction position of the training sequence
# ---------------------------------------------------------------------------------------
#: tokens kept free below MAX_SEQ_LENGTH for the assistant turn that follows a prompt
PROMPT_MARGIN = 8
#: most (rows x tokens) in one scoring forward pass: bounds the attention and MLP activations
SCORE_BATCH_TOKENS = 8192


def chat_token_ids(tokenizer, messages: Sequence[Message], *, add_generation_prompt: bool = False) -> list[int]:
    """A conversation's token ids exactly as trl's SFTTrainer tokenizes a conversational
    example for training (``apply_chat_template(tokenize=True, return_dict=True)``, trl 1.16)."""
    out = tokenizer.apply_chat_template(
        [dict(m) for m in messages], tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    return list(out["input_ids"])


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class ScoringPrompt:
    """A prompt's training sequence up to its answer token, and the two answer tokens."""

    ids: tuple[int, ...]  # what the model reads; the next token is the prediction
    yes_id: int
    no_id: int
    #: where the assistant's own tokens start in ``ids`` (they end with "Prediction:"): the tokens
    #: greedy decoding must write before the answer; -1 when the generation prompt is no prefix
    answer_start: int = -1


@dataclass(frozen=True)
class YesNoTokens:
    yes_id: int
    no_id: int
    yes_token: str
    no_token: str


def scoring_prompt(tokenizer, messages: Sequence[Message]) -> ScoringPrompt:
    """The prediction position as training sees it: the prompt followed by the assistant
    completion ``Prediction: Yes`` and, separately, ``Prediction: No`` is tokenized as trl
    tokenizes training examples; the scored ids are the longest common prefix of the two, the
    Yes/No ids the tokens where they first differ. Whatever the chat template puts between the
    prompt and the answer (ChatML's ``assistant\\n``, a space after Llama-2's ``[/INST]``) is
    then exactly what training put there, and string concatenation never decides a token."""
    seqs = {
        label: chat_token_ids(tokenizer, [*messages, {"role": "assistant", "content": prediction_line(label)}])
        for label in ANSWERS
    }
    yes, no = seqs[1], seqs[0]
    n = common_prefix_length(yes, no)
    if n >= min(len(yes), len(no)):
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__}: with its chat template, the conversation ending "
            f"in {prediction_line(1)!r} is a prefix of the one ending in {prediction_line(0)!r} (or the "
            f"reverse); the answer cannot be read at one position."
        )
    generation = chat_token_ids(tokenizer, messages, add_generation_prompt=True)
    start = len(generation) if len(generation) <= n and yes[: len(generation)] == generation else -1
    return ScoringPrompt(tuple(yes[:n]), yes[n], no[n], start)


def answer_tokens(tokenizer, prompts: Sequence[ScoringPrompt]) -> YesNoTokens:
    """The Yes/No token pair of a set of prompts (a chat template gives every prompt the same
    one; were it not so, each prompt is still read at its own pair)."""
    pairs = sorted({(p.yes_id, p.no_id) for p in prompts})
    if not pairs:
        return YesNoTokens(-1, -1, "", "")
    if len(pairs) > 1:
        log.warning("the Yes/No answer tokens differ between prompts (%s); each prompt is read at its own", pairs)
    yes, no = pairs[0]
    return YesNoTokens(yes, no, tokenizer.convert_ids_to_tokens(yes), tokenizer.convert_ids_to_tokens(no))


def fit_scoring_messages(backend, messages: Sequence[Message], max_seq_length: int) -> tuple[list[Message], bool]:
    """Cut a prompt (shared truncation policy) so that it and its answer fit MAX_SEQ_LENGTH and
    the model context: the one limit for validation (06) and test (07) prompts."""
    limit = min(max_seq_length, backend.context_length) - PROMPT_MARGIN
    return backend.fit_prompt(messages, limit)


@dataclass
class YesNoScores:
    p_yes: np.ndarray  # P(Yes) / (P(Yes) + P(No))
    yes_no_mass: np.ndarray  # P(Yes) + P(No) over the whole vocabulary (how much the model wants to answer)
    #: 1.0 when greedy decoding from the generation prompt writes the trained answer prefix and
    #: then Yes or No (the format check read from the scoring pass), 0.0 when not, NaN when unknown
    greedy_format: np.ndarray


def _batches(order: Sequence[int], lengths: Sequence[int], batch_size: int, batch_tokens: int) -> list[list[int]]:
    # longest first, so a batch's width is its first row's length
    out, pos = [], 0
    while pos < len(order):
        rows = max(1, min(batch_size, batch_tokens // max(lengths[order[pos]], 1)))
        out.append(list(order[pos : pos + rows]))
        pos += rows
    return out


def shared_prefix_length(prompts: Sequence[ScoringPrompt]) -> int:
    """Tokens every prompt starts with (the system turn and the fixed start of the user turn),
    leaving each prompt at least one token of its own."""
    return _shared_ids_prefix([p.ids for p in prompts]) if prompts else 0


def candidate_log_probs(
    model,
    ids: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[int]],
    batch_size: int = 32,
    *,
    pad_id: int = 0,
    batch_tokens: int = SCORE_BATCH_TOKENS,
    prefix_reuse: bool = False,
    answer_starts: Sequence[int] | None = None,
    desc: str = "scoring",
) -> tuple[np.ndarray, np.ndarray]:
    """Next-token log-probabilities (over the whole vocabulary) of each prompt's candidate tokens
    after its ids: an (n prompts x n candidates) array; and, from the same forward pass, whether
    greedy decoding would write each prompt's tokens from ``answer_starts[i]`` on (the answer prefix
    the student was trained to write) and then one of its candidates: 1.0 / 0.0, NaN where
    ``answer_starts`` is absent or -1. Left-padded batches of at most ``batch_size`` rows and
    ``batch_tokens`` tokens; only the last few positions' logits are built. ``prefix_reuse``: run
    the prefix all prompts share once and start every batch from its KV cache. The one forward
    pass behind the Yes/No and the rating-token scores."""
    import copy

    import torch

    width_c = len(candidates[0]) if len(candidates) else 0
    greedy = np.full(len(ids), np.nan)
    if not len(ids):
        return np.zeros((0, width_c)), greedy
    starts = list(answer_starts) if answer_starts is not None else [-1] * len(ids)
    # tokens each prompt's greedy check reads: its answer prefix and the answer position
    tails = [len(p) - a + 1 if 0 <= a < len(p) else 1 for p, a in zip(ids, starts)]
    shared = _shared_ids_prefix(ids) if prefix_reuse else 0
    shared = min([shared, *(len(p) - t for p, t in zip(ids, tails))])  # each tail stays in its row's own part
    if shared:
        # a batch's whole KV cache is kept through the pass (prefix + rows): half the tokens per
        # batch for the peak memory of a pass without it (measured: +0.29 GiB at 8192, none at 4096)
        batch_tokens = max(1, batch_tokens // 2)
    lengths = [len(p) - shared for p in ids]
    order = sorted(range(len(ids)), key=lambda i: -lengths[i])
    device = next(model.parameters()).device
    out_lp = np.zeros((len(ids), width_c))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            prefix_cache = None
            if shared:
                prefix_cache = model(
                    input_ids=torch.tensor([list(ids[0][:shared])], device=device), use_cache=True, logits_to_keep=1
                ).past_key_values
            for idx in tqdm(_batches(order, lengths, batch_size, batch_tokens), desc=desc, leave=False):
                width = lengths[idx[0]]
                keep = max(tails[i] for i in idx)
                x = torch.full((len(idx), width), pad_id, dtype=torch.long)
                att = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    x[row, width - lengths[i] :] = torch.tensor(list(ids[i][shared:]))
                    att[row, width - lengths[i] :] = 1
                pos = (att.cumsum(-1) - 1).clamp(min=0) + shared
                kwargs = {}
                if prefix_cache is not None:
                    cache = copy.deepcopy(prefix_cache)
                    cache.batch_repeat_interleave(len(idx))
                    att = torch.cat([torch.ones((len(idx), shared), dtype=torch.long), att], dim=1)
                    kwargs["past_key_values"] = cache
                out = model(
                    input_ids=x.to(device),
                    attention_mask=att.to(device),
                    position_ids=pos.to(device),
                    logits_to_keep=keep,
                    use_cache=prefix_cache is not None,
                    **kwargs,
                )
                logits = out.logits[:, -keep:, :].float()
                logp = torch.log_softmax(logits[:, -1, :], dim=-1).cpu()
                cand = torch.tensor([list(candidates[i]) for i in idx], dtype=torch.long)
                out_lp[idx] = torch.gather(logp, 1, cand).numpy()
                best = logits.argmax(dim=-1).cpu()  # best[:, j]: the greedy token after kept position j
                for row, i in enumerate(idx):
                    if not 0 <= starts[i] < len(ids[i]):
                        continue  # no answer prefix known: greedy format unknown
                    written = list(ids[i][len(ids[i]) - tails[i] + 1 :])  # the answer prefix tokens
                    said = best[row, keep - tails[i] :].tolist()
                    greedy[i] = float(said[:-1] == written and said[-1] in set(candidates[i]))
    finally:
        model.train(was_training)
    return out_lp, greedy


def _shared_ids_prefix(ids: Sequence[Sequence[int]]) -> int:
    first = ids[0]
    n = min(len(p) for p in ids) - 1
    for p in ids[1:]:
        n = min(n, common_prefix_length(first, p))
    return max(n, 0)


def yes_no_probabilities(
    model,
    prompts: Sequence[ScoringPrompt],
    batch_size: int = 32,
    *,
    pad_id: int = 0,
    batch_tokens: int = SCORE_BATCH_TOKENS,
    prefix_reuse: bool = PREFIX_REUSE,
    desc: str = "Yes/No scoring",
) -> YesNoScores:
    """Next-token Yes/No probabilities after each prompt's ids (:func:`candidate_log_probs`).
    The one scoring function of validation (06) and prediction (07). ``prefix_reuse``: the KV
    cache of the prefix the prompts share (system message, task header) is computed once per
    call (14% faster on the default's prompts; P(Yes) moves by at most 0.007 in bf16, so the
    score cache keys on it)."""
    if not prompts:
        return YesNoScores(np.zeros(0), np.zeros(0), np.zeros(0))
    lp, greedy = candidate_log_probs(
        model,
        [p.ids for p in prompts],
        [(p.yes_id, p.no_id) for p in prompts],
        batch_size,
        pad_id=pad_id,
        batch_tokens=batch_tokens,
        prefix_reuse=prefix_reuse,
        answer_starts=[p.answer_start for p in prompts],
        desc=desc,
    )
    ly, ln = lp[:, 0], lp[:, 1]
    return YesNoScores(np.exp(ly - np.logaddexp(ly, ln)), np.exp(ly) + np.exp(ln), greedy)


def pad_token_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


# ---------------------------------------------------------------------------------------
# Rating scoring (EXP3RT): the rating-token probabilities after "Rating: "
# ---------------------------------------------------------------------------------------
#: the ratings the student answers, and so the tokens read at the rating position
RATINGS = tuple(range(SCALE[0], SCALE[1] + 1))


@dataclass(frozen=True)
class RatingPrompt:
    """A rating answer's training sequence up to the rating token, and the token of each rating."""

    ids: tuple[int, ...]  # prompt + assistant turn up to "Rating: "; the next token is the rating
    rating_ids: tuple[int, ...]  # token id of rating r at that position, r in RATINGS


def rating_scoring_prompt(tokenizer, messages: Sequence[Message], reasoning: str = "") -> RatingPrompt:
    """The rating position as training sees it: the prompt followed by the assistant completion
    ``reasoning`` + ``Rating: r`` (``Rating: r`` alone without reasoning), tokenized as trl tokenizes
    training examples for every r of 1..5; the scored ids are the longest common prefix of the
    five, the rating ids the tokens where they differ (the read of :func:`scoring_prompt`, with
    five answers). Every rating must be exactly one token there (what follows it identical for
    all five): else :class:`RatingTokenError`."""
    seqs = [
        chat_token_ids(tokenizer, [*messages, {"role": "assistant", "content": rating_answer(reasoning, r)}])
        for r in RATINGS
    ]
    n = min(common_prefix_length(seqs[0], q) for q in seqs[1:])
    name = type(tokenizer).__name__
    if any(len(q) <= n for q in seqs):
        raise RatingTokenError(
            f"tokenizer {name}: one rating answer is a prefix of another; the rating cannot be read at one position."
        )
    ids = tuple(q[n] for q in seqs)
    tails = {tuple(q[n + 1 :]) for q in seqs}
    if len(set(ids)) != len(ids) or len(tails) != 1:
        raise RatingTokenError(
            f"tokenizer {name}: the ratings {list(RATINGS)} are not one token each after "
            f"'Rating: ' (tokens there: {[tokenizer.convert_ids_to_tokens(i) for i in ids]}); "
            f"the expected rating needs a tokenizer that writes every digit 1-5 as a single "
            f"token (choose another STUDENT_MODEL)."
        )
    for r, i in zip(RATINGS, ids):
        if tokenizer.decode([i]).strip() != str(r):
            raise RatingTokenError(
                f"tokenizer {name}: the token read for rating {r} decodes to {tokenizer.decode([i])!r}, not {str(r)!r}."
            )
    return RatingPrompt(tuple(seqs[0][:n]), ids)


@dataclass
class RatingScores:
    expected: np.ndarray  # sum_r r * P(r), P normalised over the five rating tokens
    argmax: np.ndarray  # the most probable rating (the lowest of equal ones)
    probs: np.ndarray  # (n, 5) normalised P(r)
    mass: np.ndarray  # sum_r P(r) over the whole vocabulary (how much the model wants to rate)


def rating_scores_from_log_probs(log_probs: np.ndarray) -> RatingScores:
    """Expected and arg-max rating from the log-probabilities of the rating tokens 1..5 (columns)."""
    lp = np.asarray(log_probs, dtype=float).reshape(-1, len(RATINGS))
    top = lp.max(axis=1, keepdims=True) if len(lp) else np.zeros((0, 1))
    p = np.exp(lp - top)
    probs = p / p.sum(axis=1, keepdims=True) if len(lp) else p
    values = np.asarray(RATINGS, dtype=float)
    return RatingScores(
        probs @ values, values[np.argmax(probs, axis=1)] if len(lp) else np.zeros(0), probs, np.exp(lp).sum(axis=1)
    )


def rating_probabilities(
    model, prompts: Sequence[RatingPrompt], batch_size: int = 32, *, pad_id: int = 0, desc: str = "rating scoring"
) -> RatingScores:
    """Rating-token probabilities at each prompt's rating position (validation and prediction)."""
    lp, _ = candidate_log_probs(
        model, [p.ids for p in prompts], [p.rating_ids for p in prompts], batch_size, pad_id=pad_id, desc=desc
    )
    return rating_scores_from_log_probs(lp.reshape(-1, len(RATINGS)))
