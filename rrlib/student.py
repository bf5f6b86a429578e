"""The student model, shared by finetuning (05) and evaluation (06): loading with the right dtype
and adapter, the Yes/No probability at the prediction position, and its durable score cache.

The AUC is read from probabilities, never from parsed text. The scored position is the one the
training sequence puts the answer at: :func:`scoring_prompt` tokenizes the prompt followed by
the completions ``Prediction: Yes`` and ``Prediction: No`` exactly as trl tokenizes training
examples, scores their common prefix, and takes the Yes/No token ids where the two first differ
(" Yes" with a leading space in byte-level BPE, "Yes" in others; whatever the chat template puts
around the assistant turn). Validation during training (05) and prediction (06) both go
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
from rrlib.errors import MissingArtifactError
from rrlib.io import JsonlLog, stable_hash
from rrlib.llm.base import Message
from rrlib.llm.local import LocalBackend, load_model_and_tokenizer
from rrlib.prompts.answers import ANSWERS, prediction_line
from rrlib.prompts.student import TEMPLATE_VERSION

log = logging.getLogger(__name__)

SCORE_CACHE_NAME = "student_yes_no_scores.jsonl"
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
    raise MissingArtifactError(f"{adapter_dir} holds no finished LoRA adapter (expected {list(ADAPTER_FILES)} in "
                            f"{adapter_dir / ADAPTER_SUBDIR}); run notebook 06_finetune (or scripts/train.py) "
                            f"for this method and K first.")


def student_backend(cfg: Config, adapter_dir: Path | None = None) -> LocalBackend:
    """A lazy :class:`rrlib.llm.local.LocalBackend` for STUDENT_MODEL (+ adapter): its
    ``identity`` (with the adapter's hash), tokenizer and prompt-fitting cost no model load.
    Reads STUDENT_MODEL/REVISION/DTYPE/QUANTIZATION, PREDICT_BATCH_SIZE, MAX_SEQ_LENGTH,
    TRUST_REMOTE_CODE and CACHE_DIR."""
    from rrlib.llm import check_model_path, checked_quantization

    s = cfg.student
    check_model_path(s.student_model, "STUDENT_MODEL")
    return LocalBackend(s.student_model, cache_dir=resolve_path(cfg.common.cache_dir), revision=s.student_revision,
                        dtype=student_dtype(cfg),
                        quantization=checked_quantization(s.student_quantization, "STUDENT_QUANTIZATION"),
                        batch_size=cfg.evaluate.predict_batch_size, max_prompt_tokens=s.max_seq_length,
                        trust_remote_code=cfg.teacher.trust_remote_code, adapter=resolve_adapter(adapter_dir),
                        role="student")


def load_student_for_training(cfg: Config):
    """(model, tokenizer) of the base student ready for LoRA training."""
    s = cfg.student
    return load_model_and_tokenizer(s.student_model, revision=s.student_revision, quantization=s.student_quantization,
                                    dtype=student_dtype(cfg), cache_dir=resolve_path(cfg.common.cache_dir),
                                    trust_remote_code=cfg.teacher.trust_remote_code, for_training=True)


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
    out = tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=True, return_dict=True,
                                        add_generation_prompt=add_generation_prompt)
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
    seqs = {label: chat_token_ids(tokenizer, [*messages, {"role": "assistant", "content": prediction_line(label)}])
            for label in ANSWERS}
    yes, no = seqs[1], seqs[0]
    n = common_prefix_length(yes, no)
    if n >= min(len(yes), len(no)):
        raise ValueError(f"tokenizer {type(tokenizer).__name__}: with its chat template, the conversation ending "
                         f"in {prediction_line(1)!r} is a prefix of the one ending in {prediction_line(0)!r} (or the "
                         f"reverse); the answer cannot be read at one position.")
    return ScoringPrompt(tuple(yes[:n]), yes[n], no[n])


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
    the model context: the one limit for validation (05) and test (06) prompts."""
    limit = min(max_seq_length, backend.context_length) - PROMPT_MARGIN
    return backend.fit_prompt(messages, limit)


@dataclass
class YesNoScores:
    p_yes: np.ndarray       # P(Yes) / (P(Yes) + P(No))
    yes_no_mass: np.ndarray  # P(Yes) + P(No) over the whole vocabulary (how much the model wants to answer)


def _batches(order: Sequence[int], lengths: Sequence[int], batch_size: int, batch_tokens: int) -> list[list[int]]:
    # longest first, so a batch's width is its first row's length
    out, pos = [], 0
    while pos < len(order):
        rows = max(1, min(batch_size, batch_tokens // max(lengths[order[pos]], 1)))
        out.append(list(order[pos:pos + rows]))
        pos += rows
    return out


def shared_prefix_length(prompts: Sequence[ScoringPrompt]) -> int:
    """Tokens every prompt starts with (the system turn and the fixed start of the user turn),
    leaving each prompt at least one token of its own."""
    if not prompts:
        return 0
    first = prompts[0].ids
    n = min(len(p.ids) for p in prompts) - 1
    for p in prompts[1:]:
        n = min(n, common_prefix_length(first, p.ids))
    return max(n, 0)


def yes_no_probabilities(model, prompts: Sequence[ScoringPrompt], batch_size: int = 32, *,
                         pad_id: int = 0, batch_tokens: int = SCORE_BATCH_TOKENS, prefix_reuse: bool = False,
                         desc: str = "Yes/No scoring") -> YesNoScores:
    """Next-token Yes/No probabilities after each prompt's ids (left-padded batches of at most
    ``batch_size`` rows and ``batch_tokens`` tokens; only the last position's logits are built).
    The one scoring function of validation (05) and prediction (06). ``prefix_reuse``: run the
    prefix all prompts share once and start every batch from its KV cache."""
    import copy

    import torch

    if not prompts:
        return YesNoScores(np.zeros(0), np.zeros(0))
    shared = shared_prefix_length(prompts) if prefix_reuse else 0
    lengths = [len(p.ids) - shared for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    device = next(model.parameters()).device
    p_yes, mass = np.zeros(len(prompts)), np.zeros(len(prompts))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            prefix_cache = None
            if shared:
                prefix_cache = model(input_ids=torch.tensor([list(prompts[0].ids[:shared])], device=device),
                                     use_cache=True, logits_to_keep=1).past_key_values
            for idx in tqdm(_batches(order, lengths, batch_size, batch_tokens), desc=desc, leave=False):
                width = lengths[idx[0]]
                ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                att = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    ids[row, width - lengths[i]:] = torch.tensor(prompts[i].ids[shared:])
                    att[row, width - lengths[i]:] = 1
                pos = (att.cumsum(-1) - 1).clamp(min=0) + shared
                kwargs = {}
                if prefix_cache is not None:
                    cache = copy.deepcopy(prefix_cache)
                    cache.batch_repeat_interleave(len(idx))
                    att = torch.cat([torch.ones((len(idx), shared), dtype=torch.long), att], dim=1)
                    kwargs["past_key_values"] = cache
                out = model(input_ids=ids.to(device), attention_mask=att.to(device), position_ids=pos.to(device),
                            logits_to_keep=1, use_cache=prefix_cache is not None, **kwargs)
                logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1).cpu()
                rows = torch.arange(len(idx))
                ly = logp[rows, torch.tensor([prompts[i].yes_id for i in idx])]
                ln = logp[rows, torch.tensor([prompts[i].no_id for i in idx])]
                p_yes[idx] = torch.exp(ly - torch.logaddexp(ly, ln)).numpy()
                mass[idx] = (torch.exp(ly) + torch.exp(ln)).numpy()
    finally:
        model.train(was_training)
    return YesNoScores(p_yes, mass)


def pad_token_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


class ScoreCache:
    """Append-only, crash-safe JSONL of Yes/No scores keyed by model identity and the scored ids."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.log = JsonlLog(self.path, required=("key", "p_yes", "yes_no_mass"))
        self._rows: dict[str, dict] = {r["key"]: r for r in self.log.load().records}

    @staticmethod
    def key(identity: Mapping[str, Any], prompt: ScoringPrompt) -> str:
        return stable_hash({"identity": dict(identity), "template_version": TEMPLATE_VERSION,
                            "ids": list(prompt.ids), "yes": prompt.yes_id, "no": prompt.no_id})

    def get(self, key: str) -> dict | None:
        return self._rows.get(key)

    def put_many(self, rows: Sequence[dict]) -> None:
        self.log.append(rows)
        for row in rows:
            self._rows[row["key"]] = row


def cached_yes_no(backend, prompts: Sequence[ScoringPrompt], cache: ScoreCache, batch_size: int, desc: str
                  ) -> tuple[YesNoScores, dict]:
    """Scores of ``prompts`` under ``backend.identity``; only uncached ones load and run the
    model (in chunks, each appended to the cache at once so an interruption loses little)."""
    keys = [ScoreCache.key(backend.identity, p) for p in prompts]
    todo = [i for i, k in enumerate(keys) if cache.get(k) is None]
    chunk = max(batch_size * 4, 1)
    bar = tqdm(total=len(prompts), initial=len(prompts) - len(todo), desc=desc, unit="prompt", disable=not todo)
    try:
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            scores = yes_no_probabilities(backend.model, [prompts[i] for i in part], batch_size,
                                          pad_id=pad_token_id(backend.tokenizer), desc=f"{desc} (chunk)")
            cache.put_many([{"key": keys[i], "p_yes": float(p), "yes_no_mass": float(m)}
                            for i, p, m in zip(part, scores.p_yes, scores.yes_no_mass)])
            bar.update(len(part))
    finally:
        bar.close()
    rows = [r for r in (cache.get(k) for k in keys) if r is not None]
    if len(rows) != len(keys):
        raise RuntimeError(f"yes_no_probabilities: {len(keys) - len(rows)} score(s) missing from the cache "
                           f"after scoring.")
    tokens = answer_tokens(backend.tokenizer, prompts)
    return (YesNoScores(np.array([r["p_yes"] for r in rows], dtype=float),
                        np.array([r["yes_no_mass"] for r in rows], dtype=float)),
            {"scores_cached": len(prompts) - len(todo), "scores_computed": len(todo),
             "yes_token": tokens.yes_token, "no_token": tokens.no_token})
