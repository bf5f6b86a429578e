"""The student model, shared by finetuning (05) and evaluation (06): loading with the right dtype
and adapter, the Yes/No probability at the prediction position, and its durable score cache.

The AUC is read from probabilities, never from parsed text: the prompt is rendered with the
chat template, the assistant turn is opened with ``Prediction:`` (exactly as in the training
completions), and the next-token probabilities of the "Yes" and "No" tokens are normalised
over the two. Which token ids those are depends on the tokenizer (" Yes" with a leading space
in byte-level BPE and SentencePiece vocabularies, "Yes" in others), so they are discovered by
tokenizing the completion text itself (:func:`yes_no_token_ids`).

Scores are cached durably (:class:`ScoreCache`, a crash-safe :class:`rrlib.io.JsonlLog`), keyed
by the model identity, which includes a hash of the adapter weights, so outputs of different
adapters never mix.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from rrlib.errors import MissingArtifactError
from rrlib.io import JsonlLog, stable_hash
from rrlib.llm.base import Message
from rrlib.llm.local import LocalBackend, load_model_and_tokenizer
from rrlib.prompts.answers import ANSWERS, PREDICTION_PREFIX, prediction_line
from rrlib.prompts.student import TEMPLATE_VERSION
from rrlib.config.params import Config
from rrlib.config.paths import resolve_path

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
# Yes/No scoring
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class YesNoTokens:
    yes_id: int
    no_id: int
    yes_token: str
    no_token: str


def yes_no_token_ids(tokenizer) -> YesNoTokens:
    """The ids of the first token after ``Prediction:`` in the completions
    ``Prediction: Yes`` / ``Prediction: No``, as this tokenizer splits them."""
    prefix = tokenizer(PREDICTION_PREFIX, add_special_tokens=False)["input_ids"]
    ids = {}
    for label, word in ANSWERS.items():
        full = tokenizer(prediction_line(label), add_special_tokens=False)["input_ids"]
        if full[:len(prefix)] != prefix or len(full) == len(prefix):
            raise ValueError(f"tokenizer {type(tokenizer).__name__}: {prediction_line(label)!r} does not tokenize "
                             f"as {PREDICTION_PREFIX!r} followed by the answer ({full} vs prefix {prefix}); "
                             f"Yes/No scoring cannot be read at one position for this tokenizer.")
        ids[word] = full[len(prefix)]
    if ids["Yes"] == ids["No"]:
        raise ValueError(f"tokenizer {type(tokenizer).__name__}: 'Yes' and 'No' start with the same token "
                         f"{ids['Yes']}; their probabilities cannot be told apart.")
    return YesNoTokens(ids["Yes"], ids["No"], tokenizer.convert_ids_to_tokens(ids["Yes"]),
                       tokenizer.convert_ids_to_tokens(ids["No"]))


def scoring_text(tokenizer, messages: Sequence[Message]) -> str:
    """The prompt as the model sees it in training, with the assistant turn opened by
    ``Prediction:``: the next token is the prediction word."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True) + PREDICTION_PREFIX


def _check_position(tokenizer, text: str, tokens: YesNoTokens) -> None:
    # The Yes token must follow the scoring text exactly as in the training sequence.
    base = tokenizer(text, add_special_tokens=False)["input_ids"]
    for word, tid in (("Yes", tokens.yes_id), ("No", tokens.no_id)):
        full = tokenizer(text + " " + word, add_special_tokens=False)["input_ids"]
        if full[:len(base)] != base or full[len(base)] != tid:
            raise ValueError(f"the {word!r} token after the chat template does not match the discovered id {tid} "
                             f"(got {full[len(base):len(base) + 2]}); the scoring position is not where the "
                             f"training completion puts the prediction.")


@dataclass
class YesNoScores:
    p_yes: np.ndarray       # P(Yes) / (P(Yes) + P(No))
    yes_no_mass: np.ndarray  # P(Yes) + P(No) over the whole vocabulary (how much the model wants to answer)


def yes_no_probabilities(model, tokenizer, texts: Sequence[str], batch_size: int = 32,
                         tokens: YesNoTokens | None = None, desc: str = "Yes/No scoring") -> YesNoScores:
    """Next-token Yes/No probabilities after each scoring text, batched with left padding."""
    import torch

    tokens = tokens or yes_no_token_ids(tokenizer)
    if not texts:
        return YesNoScores(np.zeros(0), np.zeros(0))
    _check_position(tokenizer, texts[0], tokens)
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    p_yes, mass = np.zeros(len(texts)), np.zeros(len(texts))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
                idx = order[start:start + batch_size]
                width = max(len(encoded[i]) for i in idx)
                ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                att = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    ids[row, width - len(encoded[i]):] = torch.tensor(encoded[i])
                    att[row, width - len(encoded[i]):] = 1
                pos = (att.cumsum(-1) - 1).clamp(min=0)
                out = model(input_ids=ids.to(device), attention_mask=att.to(device), position_ids=pos.to(device),
                            logits_to_keep=1)
                logp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
                ly, ln = logp[:, tokens.yes_id], logp[:, tokens.no_id]
                p_yes[idx] = torch.exp(ly - torch.logaddexp(ly, ln)).cpu().numpy()
                mass[idx] = (torch.exp(ly) + torch.exp(ln)).cpu().numpy()
    finally:
        model.train(was_training)
    return YesNoScores(p_yes, mass)


class ScoreCache:
    """Append-only, crash-safe JSONL of Yes/No scores keyed by model identity and scoring text."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.log = JsonlLog(self.path, required=("key", "p_yes", "yes_no_mass"))
        self._rows: dict[str, dict] = {r["key"]: r for r in self.log.load().records}

    @staticmethod
    def key(identity: Mapping[str, Any], text: str, tokens: YesNoTokens) -> str:
        return stable_hash({"identity": dict(identity), "template_version": TEMPLATE_VERSION, "text": text,
                            "yes": tokens.yes_id, "no": tokens.no_id})

    def get(self, key: str) -> dict | None:
        return self._rows.get(key)

    def put_many(self, rows: Sequence[dict]) -> None:
        self.log.append(rows)
        for row in rows:
            self._rows[row["key"]] = row


def cached_yes_no(backend, texts: Sequence[str], cache: ScoreCache, batch_size: int, desc: str
                  ) -> tuple[YesNoScores, dict]:
    """Scores for ``texts`` under ``backend.identity``; only uncached ones load and run the
    model (in chunks, each appended to the cache at once so an interruption loses little)."""
    tokenizer = backend.tokenizer
    tokens = yes_no_token_ids(tokenizer)
    keys = [ScoreCache.key(backend.identity, t, tokens) for t in texts]
    todo = [i for i, k in enumerate(keys) if cache.get(k) is None]
    chunk = max(batch_size * 4, 1)
    for start in tqdm(range(0, len(todo), chunk), desc=desc, disable=not todo):
        part = todo[start:start + chunk]
        scores = yes_no_probabilities(backend.model, tokenizer, [texts[i] for i in part], batch_size, tokens)
        cache.put_many([{"key": keys[i], "p_yes": float(p), "yes_no_mass": float(m)}
                        for i, p, m in zip(part, scores.p_yes, scores.yes_no_mass)])
    rows = [cache.get(k) for k in keys]
    return (YesNoScores(np.array([r["p_yes"] for r in rows], dtype=float),
                        np.array([r["yes_no_mass"] for r in rows], dtype=float)),
            {"scores_cached": len(texts) - len(todo), "scores_computed": len(todo),
             "yes_token": tokens.yes_token, "no_token": tokens.no_token})


