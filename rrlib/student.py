"""The student model, shared by finetuning (06) and evaluation (07): loading with the right dtype
and adapter, the Yes/No probability at the prediction position, and its durable score cache.

The AUC is read from probabilities, never from parsed text. The scored position is the one the
training sequence puts the answer at: :func:`scoring_prompt` tokenizes the prompt followed by
the completions ``Prediction: Yes`` and ``Prediction: No`` exactly as trl tokenizes training
examples, scores their common prefix, and takes the Yes/No token ids where the two first differ
(" Yes" with a leading space in byte-level BPE, "Yes" in others; whatever the chat template puts
around the assistant turn). Validation during training (06) and prediction (07) both go
through :func:`yes_no_probabilities` on these ids; the probabilities of the two tokens are
normalised over the two.

Scores are cached durably (:class:`ScoreCache`, a crash-safe :class:`rrlib.io.JsonlLog`), keyed
by the model identity, which includes a hash of the adapter weights, and by the scored ids, so
outputs of different adapters never mix.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from rrlib.config.params import Config
from rrlib.config.paths import resolve_path
from rrlib.errors import MethodError, MissingArtifactError
from rrlib.io import JsonlLog, stable_hash
from rrlib.llm.base import Message
from rrlib.llm.local import LocalBackend, load_model_and_tokenizer
from rrlib.prompts.answers import ANSWERS, prediction_line
from rrlib.prompts.exp3rt import SCALE, STUDENT_TEMPLATE_VERSION, rating_answer
from rrlib.prompts.student import TEMPLATE_VERSION

log = logging.getLogger(__name__)

SCORE_CACHE_NAME = "student_yes_no_scores.jsonl"
#: cached Yes/No scores start from the KV cache of the prompts' shared prefix (part of their key)
PREFIX_REUSE = True
#: most (prompt + new tokens) x rows in one student generation batch: the default's 32 reasoning
#: prompts in one batch rose 2.6 GB above the loaded model and took 40 s; at 12288 (3 batches)
#: 1.3 GB and 33 s (less padding, a smaller KV cache to extend at every step)
GENERATION_BATCH_TOKENS = 12288
RATING_SCORE_CACHE_NAME = "student_rating_scores.jsonl"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
ADAPTER_SUBDIR = "adapter"


# ---------------------------------------------------------------------------------------
# The student model (through the shared local backend, which loads lazily)
# ---------------------------------------------------------------------------------------
def student_dtype(cfg: Config) -> str:
    """STUDENT_DTYPE, except that 'auto' with 8-bit weights computes in fp16 as in the paper."""
    chosen = cfg.student.student_dtype
    if chosen == "auto" and cfg.student.student_quantization == "8bit":
        return "float16"
    return chosen


def resolve_adapter(adapter_dir: Path | None) -> Path | None:
    """The folder that holds exactly the adapter files: ``<adapter_dir>/adapter`` as written by
    :func:`rrlib.finetune.train`, or ``adapter_dir`` itself when it holds them."""
    if adapter_dir is None:
        return None
    adapter_dir = Path(adapter_dir)
    for folder in (adapter_dir / ADAPTER_SUBDIR, adapter_dir):
        if all((folder / f).is_file() for f in ADAPTER_FILES):
            return folder
    raise MissingArtifactError(
        f"{adapter_dir} holds no finished LoRA adapter (expected {list(ADAPTER_FILES)} in "
        f"{adapter_dir / ADAPTER_SUBDIR}); run notebook 06_finetune (or scripts/train.py) "
        f"for this method and K first."
    )


def student_backend(cfg: Config, adapter_dir: Path | None = None) -> LocalBackend:
    """A lazy :class:`rrlib.llm.local.LocalBackend` for STUDENT_MODEL (+ adapter): its
    ``identity`` (with the adapter's hash), tokenizer and prompt-fitting cost no model load.
    Reads STUDENT_MODEL/REVISION/DTYPE/QUANTIZATION, PREDICT_BATCH_SIZE, MAX_SEQ_LENGTH,
    TRUST_REMOTE_CODE and CACHE_DIR."""
    from rrlib.llm import check_model_path, checked_quantization

    s = cfg.student
    check_model_path(s.student_model, "STUDENT_MODEL")
    return LocalBackend(
        s.student_model,
        cache_dir=resolve_path(cfg.common.cache_dir),
        revision=s.student_revision,
        dtype=student_dtype(cfg),
        quantization=checked_quantization(s.student_quantization, "STUDENT_QUANTIZATION"),
        batch_size=cfg.evaluate.predict_batch_size,
        batch_tokens=GENERATION_BATCH_TOKENS,
        max_prompt_tokens=s.max_seq_length,
        trust_remote_code=cfg.teacher.trust_remote_code,
        adapter=resolve_adapter(adapter_dir),
        role="student",
    )


def load_student_for_training(cfg: Config):
    """(model, tokenizer) of the base student ready for LoRA training."""
    s = cfg.student
    return load_model_and_tokenizer(
        s.student_model,
        revision=s.student_revision,
        quantization=s.student_quantization,
        dtype=student_dtype(cfg),
        cache_dir=resolve_path(cfg.common.cache_dir),
        trust_remote_code=cfg.teacher.trust_remote_code,
        for_training=True,
    )


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
    bar = tqdm(total=len(prompts), initial=len(prompts) - len(todo), desc=desc, unit="prompt", disable=not todo)
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


# ---------------------------------------------------------------------------------------
# Rating scoring (EXP3RT): the rating-token probabilities after "Rating: "
# ---------------------------------------------------------------------------------------
#: the ratings the student answers, and so the tokens read at the rating position
RATINGS = tuple(range(SCALE[0], SCALE[1] + 1))


class RatingTokenError(MethodError):
    """The rating cannot be read at one position as one token per rating with this tokenizer."""


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


def greedy_generate(
    model, tokenizer, messages: Sequence[Sequence[Message]], max_new_tokens: int, batch_size: int = 8
) -> list[str]:
    """Greedy answers of the model being trained (validation of reasoning-first students):
    the chat template's generation prompt, left-padded batches, special tokens dropped."""
    import torch

    was_training = model.training
    model.eval()
    pad = pad_token_id(tokenizer)
    device = next(model.parameters()).device
    out: list[str] = []
    try:
        with torch.inference_mode():
            for start in range(0, len(messages), batch_size):
                seqs = [
                    chat_token_ids(tokenizer, m, add_generation_prompt=True)
                    for m in messages[start : start + batch_size]
                ]
                width = max(len(q) for q in seqs)
                x = torch.full((len(seqs), width), pad, dtype=torch.long)
                att = torch.zeros((len(seqs), width), dtype=torch.long)
                for row, q in enumerate(seqs):
                    x[row, width - len(q) :] = torch.tensor(q)
                    att[row, width - len(q) :] = 1
                gen = model.generate(
                    input_ids=x.to(device),
                    attention_mask=att.to(device),
                    do_sample=False,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad,
                )
                out += tokenizer.batch_decode(gen[:, width:].cpu(), skip_special_tokens=True)
    finally:
        model.train(was_training)
    return out
