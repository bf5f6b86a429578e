"""Student predictions: the Yes/No probability (for AUC) and the generated reasoning (for
BERTScore), for one method on a set of examples.

The AUC is read from probabilities, never from parsed text: the prompt is rendered with the
chat template, the assistant turn is opened with ``Prediction:`` (exactly as in the training
completions), and the next-token probabilities of the "Yes" and "No" tokens are normalised
over the two. Which token ids those are depends on the tokenizer (" Yes" with a leading space
in byte-level BPE and SentencePiece vocabularies, "Yes" in others), so they are discovered by
tokenizing the completion text itself (:func:`yes_no_token_ids`).

Both the scores and the generations are cached durably, keyed by the model identity that
includes a hash of the adapter weights, so outputs of different adapters never mix.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rrlib.artifacts import RunPaths, resolve_path
from rrlib.llm.base import GenerationRequest, GenerationSettings, Message
from rrlib.prompts.student import (ANSWERS, PREDICTION_PREFIX, TEMPLATE_NAME, TEMPLATE_VERSION,
                                   PromptContext, build_messages, method_spec, parse_output,
                                   prediction_line)

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["method", "k", "example_id", "split", "user_id", "target_item_id", "label", "p_yes",
                      "predicted_label", "generated_text", "reasoning", "format_ok"]
#: new tokens generated for prediction-only methods (enough for "Prediction: Yes" + a little)
PREDICTION_ONLY_MAX_NEW_TOKENS = 8
SCORE_CACHE_NAME = "student_yes_no_scores.jsonl"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
ADAPTER_SUBDIR = "adapter"
_EXAMPLE_COLUMNS = ("example_id", "split", "user_id", "target_item_id", "label", "history_item_ids",
                    "history_liked")


# ---------------------------------------------------------------------------------------
# The student model (through the shared local backend, which loads lazily)
# ---------------------------------------------------------------------------------------
def student_dtype(params: Mapping[str, Any]) -> str:
    """STUDENT_DTYPE, except that 'auto' with 8-bit weights computes in fp16 as in the paper."""
    chosen = params.get("STUDENT_DTYPE", "auto")
    if chosen == "auto" and params.get("STUDENT_QUANTIZATION", "none") == "8bit":
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
    raise FileNotFoundError(f"{adapter_dir} holds no finished LoRA adapter (expected {list(ADAPTER_FILES)} in "
                            f"{adapter_dir / ADAPTER_SUBDIR}); run notebook 05_finetune (or scripts/train.py) "
                            f"for this method and K first.")


def student_backend(params: Mapping[str, Any], adapter_dir: Path | None = None):
    """A lazy :class:`rrlib.llm.local.LocalBackend` for STUDENT_MODEL (+ adapter): its
    ``identity`` (with the adapter's hash), tokenizer and prompt-fitting cost no model load."""
    from rrlib.llm.local import LocalBackend

    return LocalBackend(params["STUDENT_MODEL"], cache_dir=resolve_path(params.get("CACHE_DIR", "outputs/cache")),
                        revision=params.get("STUDENT_REVISION", ""), dtype=student_dtype(params),
                        quantization=params.get("STUDENT_QUANTIZATION", "none"),
                        batch_size=int(params.get("PREDICT_BATCH_SIZE", 32)),
                        max_prompt_tokens=int(params.get("MAX_SEQ_LENGTH", 2048)),
                        trust_remote_code=params.get("TRUST_REMOTE_CODE", False),
                        adapter=resolve_adapter(adapter_dir), role="student")


def load_student_for_training(params: Mapping[str, Any]):
    """(model, tokenizer) of the base student ready for LoRA training."""
    from rrlib.llm.local import load_model_and_tokenizer

    return load_model_and_tokenizer(
        params["STUDENT_MODEL"], revision=params.get("STUDENT_REVISION", ""),
        quantization=params.get("STUDENT_QUANTIZATION", "none"), dtype=student_dtype(params),
        cache_dir=resolve_path(params.get("CACHE_DIR", "outputs/cache")),
        trust_remote_code=params.get("TRUST_REMOTE_CODE", False), for_training=True)


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
    """Append-only JSONL of Yes/No scores keyed by model identity and scoring text."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, dict] = {}
        if self.path.exists():
            for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
                try:
                    row = json.loads(line)
                    self._rows[row["key"]] = row
                except (json.JSONDecodeError, KeyError):
                    log.warning("%s:%d: unreadable score-cache line skipped (interrupted write?)", self.path, n)

    @staticmethod
    def key(identity: Mapping[str, Any], text: str, tokens: YesNoTokens) -> str:
        blob = json.dumps({"identity": dict(identity), "template_version": TEMPLATE_VERSION, "text": text,
                           "yes": tokens.yes_id, "no": tokens.no_id}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> dict | None:
        return self._rows.get(key)

    def put_many(self, rows: Sequence[dict]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
                self._rows[row["key"]] = row
            f.flush()
            os.fsync(f.fileno())


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


# ---------------------------------------------------------------------------------------
# Generation (reasoning text) through the shared cached generator
# ---------------------------------------------------------------------------------------
def _cached_generator(backend, cache_dir: Path):
    from rrlib.llm.cache import CachedGenerator

    return CachedGenerator(backend, cache_dir)


# ---------------------------------------------------------------------------------------
# The predictions table
# ---------------------------------------------------------------------------------------
#: parameters predict_llm reads (a notebook calling it must declare them)
PREDICT_PARAMS = ("STUDENT_MODEL", "STUDENT_REVISION", "STUDENT_QUANTIZATION", "STUDENT_DTYPE", "CACHE_DIR", "SEED",
                  "MAX_SEQ_LENGTH", "PREDICT_BATCH_SIZE", "GENERATE_REASONING", "REASONING_MAX_NEW_TOKENS")


def require_params(params: Mapping[str, Any], names: Sequence[str], who: str) -> None:
    """Fail early and clearly when a caller's parameter set lacks what ``who`` reads."""
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"{who} needs parameter(s) {missing}, which the caller did not pass; declare them in the "
                         f"notebook's parameters cell (defaults in rrlib/params.py).")


def _check_examples(examples: pd.DataFrame) -> None:
    missing = [c for c in _EXAMPLE_COLUMNS if c not in examples.columns]
    if missing:
        raise ValueError(f"predict_llm: the examples table lacks column(s) {missing}; pass rows of "
                         f"paths.examples (rrlib.data.schema.EXAMPLES).")
    if examples["example_id"].duplicated().any():
        dup = examples.loc[examples["example_id"].duplicated(), "example_id"].iloc[0]
        raise ValueError(f"predict_llm: example_id {dup!r} appears more than once in the examples passed.")


def predict_llm(method: str, k: int, examples: pd.DataFrame, params: Mapping[str, Any], paths: RunPaths,
                adapter_dir: Path | None, ctx: PromptContext | None = None) -> pd.DataFrame:
    """Predictions of one LLM method on ``examples`` (one row each, columns PREDICTION_COLUMNS).

    ``p_yes`` is the normalised Yes probability at the prediction position and
    ``predicted_label`` is ``p_yes >= 0.5``; ``generated_text`` is the greedy answer, whose
    reasoning part feeds BERTScore; ``format_ok`` says whether it starts with
    ``Prediction: Yes/No``. Finetuned methods need ``adapter_dir``; zero-shot ones run the
    base model (``adapter_dir=None``, ``k=0``). ``df.attrs['stats']`` holds counts."""
    spec = method_spec(method)
    require_params(params, PREDICT_PARAMS, "predict_llm")
    _check_examples(examples)
    if spec.finetuned and adapter_dir is None:
        raise ValueError(f"method {method!r} is finetuned: pass adapter_dir=paths.adapter_dir({method!r}, {k}).")
    if not spec.finetuned and adapter_dir is not None:
        raise ValueError(f"method {method!r} is zero-shot (base model): pass adapter_dir=None.")
    backend = student_backend(params, adapter_dir)  # checks the adapter folder; loads nothing yet
    ctx = ctx or PromptContext.from_run(paths, params, method)
    cache_dir = resolve_path(params.get("CACHE_DIR", "outputs/cache"))
    batch = int(params.get("PREDICT_BATCH_SIZE", 32))
    rows = [r for _, r in examples.iterrows()]
    limit = min(int(params.get("MAX_SEQ_LENGTH", 2048)), backend.context_length)
    messages, n_truncated = [], 0
    for r in rows:  # the same truncation policy as in training (and as generation applies)
        fitted, truncated = backend.fit_prompt(build_messages(method, r, ctx), limit - 4)
        messages.append(fitted)
        n_truncated += truncated

    texts = [scoring_text(backend.tokenizer, m) for m in messages]
    scores, score_stats = cached_yes_no(backend, texts, ScoreCache(cache_dir / "scores" / SCORE_CACHE_NAME),
                                        batch, desc=f"{method} K={k}: Yes/No")
    with_reasoning = spec.with_reasoning and params.get("GENERATE_REASONING", True)
    settings = GenerationSettings(temperature=0.0, top_p=1.0, seed=int(params.get("SEED", 0)),
                                  max_new_tokens=(int(params.get("REASONING_MAX_NEW_TOKENS", 256)) if with_reasoning
                                                  else PREDICTION_ONLY_MAX_NEW_TOKENS))
    requests = [GenerationRequest(messages=tuple(m), settings=settings, template=f"{TEMPLATE_NAME}:{method}",
                                  template_version=TEMPLATE_VERSION, tag=str(r["example_id"]))
                for m, r in zip(messages, rows)]
    generator = _cached_generator(backend, cache_dir)
    generations = generator.generate(requests, desc=f"{method} K={k}: generating")

    out = []
    for r, p, g in zip(rows, scores.p_yes, generations):
        parsed = parse_output(g.text)
        out.append({"method": method, "k": int(k), "example_id": str(r["example_id"]), "split": str(r["split"]),
                    "user_id": str(r["user_id"]), "target_item_id": str(r["target_item_id"]),
                    "label": int(r["label"]), "p_yes": float(p), "predicted_label": int(p >= 0.5),
                    "generated_text": g.text, "reasoning": parsed.reasoning if spec.with_reasoning else "",
                    "format_ok": bool(parsed.format_ok)})
    df = pd.DataFrame(out, columns=PREDICTION_COLUMNS)
    n_bad = int((~df["format_ok"]).sum()) if len(df) else 0
    stats = {**score_stats, "n": len(df), "n_format_bad": n_bad, "format_bad_rate": n_bad / max(len(df), 1),
             "mean_yes_no_mass": float(scores.yes_no_mass.mean()) if len(df) else float("nan"),
             "n_truncated_prompts": n_truncated, "model_identity": dict(backend.identity),
             "generation": dict(getattr(generator, "stats", {}))}
    if n_bad:
        log.warning("%s K=%s: %d of %d outputs do not start with 'Prediction: Yes/No' (counted in format_ok)",
                    method, k, n_bad, len(df))
    df.attrs["stats"] = stats
    return df
