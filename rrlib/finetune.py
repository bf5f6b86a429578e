"""LoRA instruction finetuning of the student (notebook 06, ``scripts/train.py``).

* Data: the K-shot training examples (``schema.kshot``), each a prompt/completion pair in
  trl's conversational form: the prompt is the method's chat prompt, the completion the
  assistant turn ``Prediction: Yes|No`` followed (reasoning methods) by the ground-truth
  reasoning of notebook 05. trl renders both with the chat template and sets the labels of
  the prompt tokens to -100, so the loss covers the completion only (this replaces the
  ``DataCollatorForCompletionOnlyLM`` the paper used, which trl 1.x removed; built against
  trl 1.16). Every training sequence is checked to hold its answer token exactly where Yes/No
  scoring reads it (:func:`check_prediction_position`).
* Lean training: the loss projects through the LM head only the positions that predict a
  completion token (:func:`_sft_trainer_class`), never vocabulary-wide logits for the prompt
  tokens; one example per micro-batch with gradient accumulation (TRAIN_BATCH_SIZE x
  GRAD_ACCUM_STEPS per optimizer step); bf16 autocast with fp32 master weights where the
  hardware has fast bf16 (:func:`training_precision`; measured 1.8x faster on an AVX-512-BF16
  CPU with the same loss curve), LM head in fp32.
* Model: STUDENT_MODEL through the shared loader; 8-bit weights via bitsandbytes on CUDA
  (``prepare_model_for_kbit_training``), full precision on CPU; a peft ``LoraConfig`` from
  the LORA_* parameters.
* Early stopping on validation AUC: after every epoch :class:`ValidationAUCCallback` scores
  N_VALID_EVAL validation examples with the Yes/No probability (the scoring of notebook 07),
  records the AUC in the trainer's log history, marks the best epoch's checkpoint (kept by the
  checkpoint rotation) and stops after EARLY_STOPPING_PATIENCE epochs without a gain. The best
  epoch's adapter is what ends up in ``<adapter_dir>/adapter``.
* Resumable: a checkpoint is written every epoch under ``<adapter_dir>/checkpoints``; a rerun
  resumes from the last one. A finished run whose configuration hash (parameters, model,
  data, prompt template, precision, loss, library versions; nothing of the run folder) matches
  is not retrained.
* Adapter store: a finished adapter is also published, atomically, to
  ``CACHE_DIR/adapters/<config_hash>``; a new run (another RUN_DIR, same configuration and
  CACHE_DIR) copies it from there without loading the model.

Everything lands in ``paths.adapter_dir(method, k)``: ``adapter/`` (the best LoRA adapter),
``train_config.json``, ``trainer_state.json``, ``curves.png`` and ``training_summary.json``.
Runs unchanged on several GPUs with ``accelerate launch scripts/train.py ...`` (the Trainer
handles data parallelism; only the main process writes files).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rrlib.checkpoints import newest_complete_checkpoint
from rrlib.config.params import Config
from rrlib.config.paths import RunPaths, resolve_path
from rrlib.config.provenance import environment_info, utc_now
from rrlib.data.schema import check_columns, eval_subset, kshot
from rrlib.errors import MethodError, PromptTooLongError, TrainingConfigMismatch
from rrlib.io import read_json_or_none, stable_hash, write_json_atomic
from rrlib.llm.memory import release_memory
from rrlib.methods import registry
from rrlib.prompts.answers import parse_prediction
from rrlib.prompts.postprocess import USABLE_STATUSES
from rrlib.prompts.student import TEMPLATE_VERSION, PromptContext, build_messages, completion, method_spec
from rrlib.reasoning import read_reasoning
from rrlib.student import (
    ADAPTER_FILES,
    ADAPTER_SUBDIR,
    PROMPT_MARGIN,
    RATINGS,
    ScoringPrompt,
    chat_token_ids,
    fit_scoring_messages,
    greedy_generate,
    load_student_for_training,
    pad_token_id,
    rating_probabilities,
    rating_scoring_prompt,
    scoring_prompt,
    student_backend,
    yes_no_probabilities,
)

log = logging.getLogger(__name__)

#: parameters that change the trained adapter (part of the configuration hash)
TRAINING_PARAMS = (
    "STUDENT_MODEL",
    "STUDENT_REVISION",
    "STUDENT_QUANTIZATION",
    "STUDENT_DTYPE",
    "LEARNING_RATE",
    "LR_SCHEDULER",
    "WARMUP_RATIO",
    "ANSWER_LOSS_WEIGHT",
    "MAX_EPOCHS",
    "EARLY_STOPPING_PATIENCE",
    "LORA_R",
    "LORA_ALPHA",
    "LORA_DROPOUT",
    "LORA_TARGET_MODULES",
    "MAX_SEQ_LENGTH",
    "TRAIN_BATCH_SIZE",
    "GRAD_ACCUM_STEPS",
    "N_VALID_EVAL",
)
#: rating students also depend on these (validation generates reasoning; multi-task adds pairs)
RATING_TRAINING_PARAMS = ("REASONING_MAX_NEW_TOKENS", "EXP3RT_MULTITASK")
#: tokens kept free for the chat template's end-of-turn markers
_TEMPLATE_MARGIN = PROMPT_MARGIN
#: how the loss is computed (part of the configuration hash: a change retrains)
LOSS_IMPLEMENTATION = "completion-positions-logits-v1"
#: the base model's adapter (LoRA B = 0), validated as epoch 0 and kept in case it stays the best
BASE_CHECKPOINT = "base-epoch-0"


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------
def load_reasoning(paths: RunPaths, examples: pd.DataFrame, method: str) -> tuple[dict[str, str], list[str]]:
    """Ground-truth reasoning for ``examples`` from notebook 05: (usable texts by example id,
    ids excluded because their reasoning is unusable). Missing or mislabelled rows are errors."""
    path = paths.require(paths.reasoning, "05_reasoning_generation")
    labels = dict(zip(examples["example_id"].astype(str), examples["label"].astype(int)))
    return _usable_reasoning(path, read_reasoning(path, method), examples, "label", labels, "reasoning")


def _usable_reasoning(
    path, table: pd.DataFrame, examples: pd.DataFrame, given: str, wanted: Mapping[str, int], what: str
) -> tuple[dict[str, str], list[str]]:
    """The rows of a reasoning table for ``examples``: each must exist and be written for the
    ``given`` value (label or rating) the example really has; unusable texts are left out."""
    table = table.drop_duplicates("example_id", keep="last").set_index("example_id")
    ids = examples["example_id"].astype(str).tolist()
    absent = [i for i in ids if i not in table.index]
    if absent:
        raise ValueError(
            f"{path}: no {what} for {len(absent)} of the {len(ids)} training examples (first: "
            f"{absent[:3]}); rerun 05_reasoning_generation with KSHOT_SIZES and METHODS covering them."
        )
    wrong = [i for i in ids if int(table.at[i, given]) != wanted[i]]
    if wrong:
        raise ValueError(
            f"{path}: {what} was generated for another {given} than the example's for {len(wrong)} "
            f"example(s) (first: {wrong[:3]}); the data changed since notebook 05 — rerun 05_reasoning_generation."
        )
    usable, excluded = {}, []
    for i in ids:
        text, status = table.at[i, "reasoning"], str(table.at[i, "status"])
        if status not in USABLE_STATUSES or not isinstance(text, str) or not text.strip():
            excluded.append(i)
        else:
            usable[i] = text.strip()
    if not usable:
        raise ValueError(
            f"{path}: none of the {len(ids)} training examples has usable {what} (statuses: "
            f"{sorted(set(table.loc[ids, 'status'].astype(str)))}); inspect notebook 05's outputs."
        )
    return usable, excluded


def fit_messages(backend, messages: list, budget: int, where: str) -> tuple[list, bool]:
    """Cut a prompt to ``budget`` tokens with the shared truncation policy."""
    try:
        return backend.fit_prompt(messages, budget)
    except PromptTooLongError as e:
        raise ValueError(f"{where}: {e} Raise MAX_SEQ_LENGTH or lower HISTORY_LEN / PROFILE_WORDS.") from e


def build_conversations(
    method: str, examples: pd.DataFrame, ctx: PromptContext, reasoning: Mapping[str, str], backend, max_seq_length: int
) -> tuple[list[dict], int]:
    """Prompt/completion pairs (trl conversational form) whose prompt fits with its completion
    in ``max_seq_length`` tokens; returns (pairs, number of prompts that had to be cut)."""
    tok = backend.tokenizer
    pairs, n_cut = [], 0
    for _, row in examples.iterrows():
        eid = str(row["example_id"])
        answer = completion(int(row["label"]), reasoning.get(eid, ""), method)
        answer_tokens = len(tok(answer, add_special_tokens=False)["input_ids"])
        budget = max_seq_length - answer_tokens - _TEMPLATE_MARGIN
        if budget < 32:
            raise ValueError(
                f"example {eid}: the completion alone takes {answer_tokens} tokens, leaving no room for "
                f"the prompt within MAX_SEQ_LENGTH={max_seq_length}; raise MAX_SEQ_LENGTH."
            )
        prompt, cut = fit_messages(backend, build_messages(method, row, ctx), budget, f"example {eid}")
        n_cut += cut
        pairs.append({"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]})
    return pairs, n_cut


@dataclass
class TrainingData:
    """What one training run learns from and is validated on."""

    pairs: list[dict]  # prompt/completion conversations of the K-shot examples
    example_ids: list[str]
    excluded: list[str]  # K-shot examples left out for unusable reasoning
    n_truncated: int  # training prompts cut to fit MAX_SEQ_LENGTH
    valid_prompts: list[ScoringPrompt]  # validation prompts as scored (training ids up to the answer)
    valid_labels: list[int]
    backend: Any  # the student's lazy backend (tokenizer, identity, truncation)
    task: str = "like"  # rating (EXP3RT): validated by the RMSE of the expected rating
    valid_messages: list = field(default_factory=list)  # rating: validation prompts (generation first)
    valid_ratings: list[float] = field(default_factory=list)
    reasons: bool = False  # rating: the student writes reasoning before the rating
    n_multitask: int = 0  # rating: extra step 1-2 pairs (EXP3RT_MULTITASK)
    answer_offset: int | None = None  # like: the answer token's index within every completion

    @property
    def valid_texts(self) -> list[str]:
        """The validation prompts as the model reads them (decoded, for display)."""
        if self.task == "rating":
            return [m[-1]["content"] for m in self.valid_messages]
        return [self.backend.tokenizer.decode(list(p.ids)) for p in self.valid_prompts]

    @property
    def valid_key(self) -> Any:
        """What the validation reads (part of the configuration hash)."""
        if self.task == "rating":
            return {"messages": [list(m) for m in self.valid_messages], "ratings": list(self.valid_ratings)}
        return [[list(p.ids), p.yes_id, p.no_id] for p in self.valid_prompts]


def training_data(
    method: str, k: int, cfg: Config, paths: RunPaths, ctx: PromptContext, *, seed: int | None = None
) -> TrainingData:
    """The K-shot prompt/completion pairs and the validation texts of ``method`` (no model load).
    ``seed``: the K-shot sample's seed (default SEED, the one notebook 01 stored)."""
    spec = method_spec(method)
    if spec.task == "rating":
        return rating_training_data(method, k, cfg, paths, ctx, seed=seed)
    examples = check_columns(pd.read_parquet(paths.require(paths.examples, "01_data_prep")), "examples", paths.examples)
    train_rows = kshot(examples, k, seed=seed, base_seed=cfg.common.seed, sampling=cfg.data.kshot_sampling)
    excluded: list[str] = []
    reasoning: dict[str, str] = {}
    if spec.reasons:
        reasoning, excluded = load_reasoning(paths, train_rows, method)
        if excluded:
            log.warning(
                "%s K=%d: %d training example(s) left out because their reasoning is unusable: %s",
                method,
                k,
                len(excluded),
                excluded[:5],
            )
            train_rows = train_rows[~train_rows["example_id"].astype(str).isin(excluded)]
    backend = student_backend(cfg)  # tokenizer + truncation policy (no weights loaded here)
    max_len = cfg.student.max_seq_length
    pairs, n_cut = build_conversations(method, train_rows, ctx, reasoning, backend, max_len)
    valid_rows = eval_subset(examples, "valid", cfg.data.n_valid)
    if cfg.student.n_valid_eval:
        valid_rows = valid_rows.head(cfg.student.n_valid_eval)
    if valid_rows["label"].nunique() < 2:
        raise ValueError(
            f"the {len(valid_rows)} validation examples scored for early stopping hold only one label, "
            f"so AUC is undefined; raise N_VALID_EVAL (or N_VALID)."
        )
    valid_msgs = []
    for _, r in valid_rows.iterrows():
        try:
            valid_msgs.append(fit_scoring_messages(backend, build_messages(method, r, ctx), max_len)[0])
        except PromptTooLongError as e:
            raise ValueError(
                f"validation example {r['example_id']}: {e} Raise MAX_SEQ_LENGTH or lower HISTORY_LEN / PROFILE_WORDS."
            ) from e
    answer_offset = check_prediction_position(backend.tokenizer, pairs)
    return TrainingData(
        answer_offset=answer_offset,
        pairs=pairs,
        example_ids=train_rows["example_id"].astype(str).tolist(),
        excluded=excluded,
        n_truncated=n_cut,
        valid_prompts=[scoring_prompt(backend.tokenizer, m) for m in valid_msgs],
        valid_labels=valid_rows["label"].astype(int).tolist(),
        backend=backend,
    )


def check_prediction_position(tokenizer, pairs: Sequence[Mapping[str, list]]) -> int | None:
    """Every training sequence must hold its answer token exactly where scoring reads it: the
    scored ids of its prompt, then the Yes (or No) id of :func:`rrlib.student.scoring_prompt`.
    Returns the answer token's index within the completion when it is the same for every pair
    (what ANSWER_LOSS_WEIGHT weighs), else None."""
    offsets = set()
    for n, pair in enumerate(pairs):
        label = parse_prediction(pair["completion"][0]["content"])
        if label is None:
            raise ValueError(f"training example {n}: its completion does not start with 'Prediction: Yes/No'.")
        full = chat_token_ids(tokenizer, list(pair["prompt"]) + list(pair["completion"]))
        sp = scoring_prompt(tokenizer, pair["prompt"])
        answer = sp.yes_id if label else sp.no_id
        at = len(sp.ids)
        if tuple(full[:at]) != sp.ids or len(full) <= at or full[at] != answer:
            raise ValueError(
                f"training example {n}: with this tokenizer and chat template the answer token of the "
                f"training sequence ({full[at : at + 1]}) is not where Yes/No scoring reads it "
                f"(after {at} tokens, id {answer}); the reasoning that follows the prediction changes "
                f"how the answer tokenizes."
            )
        offsets.add(at - len(chat_token_ids(tokenizer, list(pair["prompt"]), add_generation_prompt=True)))
    return offsets.pop() if len(offsets) == 1 else None


# ---------------------------------------------------------------------------------------
# EXP3RT's rating students: completion = reasoning + "Rating: r" (tallrec_rating: "Rating: r")
# ---------------------------------------------------------------------------------------
def load_rating_reasoning(paths: RunPaths, examples: pd.DataFrame) -> tuple[dict[str, str], list[str]]:
    """EXP3RT's rating reasoning of notebook 05 for ``examples``: (usable texts by example id,
    ids left out for unusable reasoning). A row written for another rating is an error."""
    from rrlib.enrich.generation import read_table
    from rrlib.prompts.exp3rt import integer_rating

    path = paths.require(paths.rating_reasoning, "05_reasoning_generation")
    table = read_table(path, ["example_id", "rating", "reasoning", "status"], "05_reasoning_generation")
    wanted = dict(zip(examples["example_id"].astype(str), examples["target_rating"].map(integer_rating)))
    return _usable_reasoning(path, table, examples, "rating", wanted, "rating reasoning")


def build_rating_conversations(
    examples: pd.DataFrame, ctx, reasoning: Mapping[str, str] | None, backend, max_seq_length: int
) -> tuple[list[dict], int]:
    """Prompt/completion pairs of a rating student: EXP3RT's prompt, completion ``reasoning`` +
    ``Rating: r`` (``reasoning=None``: ``Rating: r`` alone, tallrec_rating), r the true rating on 1-5."""
    from rrlib.prompts.exp3rt import integer_rating, rating_answer

    tok = backend.tokenizer
    pairs, n_cut = [], 0
    for _, row in examples.iterrows():
        eid = str(row["example_id"])
        answer = rating_answer(
            reasoning.get(eid, "") if reasoning is not None else "", integer_rating(row["target_rating"])
        )
        budget = max_seq_length - len(tok(answer, add_special_tokens=False)["input_ids"]) - _TEMPLATE_MARGIN
        if budget < 32:
            raise ValueError(
                f"example {eid}: the completion alone leaves no room for the prompt within "
                f"MAX_SEQ_LENGTH={max_seq_length}; raise MAX_SEQ_LENGTH."
            )
        messages = ctx.student_messages(
            str(row["user_id"]), str(row["target_item_id"]), with_reasoning=reasoning is not None
        )
        prompt, cut = fit_messages(backend, messages, budget, f"example {eid}")
        n_cut += cut
        pairs.append({"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]})
    return pairs, n_cut


def multitask_pairs(paths: RunPaths, cfg: Config, ctx) -> list[dict]:
    """EXP3RT_MULTITASK: steps 1 and 2 as extra SFT pairs, from notebook 04's tables: each usable
    extraction (the review's prompt -> the canonical preferences) and each usable user and item
    profile (the aggregation prompt -> the profile). Only reviews the split allows reach these
    tables (:mod:`rrlib.enrich.preferences`), so no held-out review is learned."""
    from rrlib.data import load_tables
    from rrlib.enrich import preferences as pf

    tables = load_tables(paths)
    extracted = pd.read_parquet(paths.require(paths.preferences, "04_review_preferences"))
    usable = extracted[extracted["status"].isin(USABLE_STATUSES)]
    ex = cfg.exp3rt
    reviews = pd.concat(
        [
            pf.user_reviews(
                tables.interactions,
                sorted(set(usable["user_id"].astype(str))),
                ex.exp3rt_reviews_per_user,
                ex.exp3rt_review_words,
            ),
            pf.item_reviews(
                tables.items,
                sorted(set(usable["item_id"].astype(str))),
                ex.exp3rt_reviews_per_item,
                ex.exp3rt_review_words,
            ),
        ],
        ignore_index=True,
    )
    requests = pf.extraction_requests(reviews, ctx.catalog, domain=ctx.domain, cfg=cfg)
    pairs = []
    for row in usable.itertuples():
        req = requests.get(str(row.review_id))
        if req is not None:
            pairs.append(
                {
                    "prompt": [dict(m) for m in req.messages],
                    "completion": [{"role": "assistant", "content": str(row.preferences)}],
                }
            )
    for kind, path in (("user", paths.exp3rt_user_profiles), ("item", paths.exp3rt_item_profiles)):
        table = pd.read_parquet(paths.require(path, "04_review_preferences"))
        table = table[table["status"].isin(USABLE_STATUSES)]
        prof_requests = pf.profile_requests(
            extracted, kind, table["id"].astype(str).tolist(), ctx.catalog, domain=ctx.domain, cfg=cfg
        )
        for row in table.itertuples():
            req = prof_requests.get(str(row.id))
            if req is not None:
                pairs.append(
                    {
                        "prompt": [dict(m) for m in req.messages],
                        "completion": [{"role": "assistant", "content": str(row.profile)}],
                    }
                )
    return pairs


def rating_training_data(
    method: str, k: int, cfg: Config, paths: RunPaths, ctx, *, seed: int | None = None
) -> TrainingData:
    """The K-shot pairs of a rating student (EXP3RT, tallrec_rating) and its validation prompts
    (the first N_VALID_EVAL valid examples; RMSE of the expected rating). ``ctx``: a
    :class:`rrlib.prompts.exp3rt.RatingContext`."""
    from rrlib.prompts.exp3rt import RatingContext

    spec = method_spec(method)
    if not isinstance(ctx, RatingContext):
        raise MethodError(
            f"method {method!r} answers ratings: pass its RatingContext "
            f"(PromptContext.from_run(paths, domain, {method!r}) returns it)."
        )
    examples = check_columns(pd.read_parquet(paths.require(paths.examples, "01_data_prep")), "examples", paths.examples)
    train_rows = kshot(examples, k, seed=seed, base_seed=cfg.common.seed, sampling=cfg.data.kshot_sampling)
    excluded: list[str] = []
    reasoning: dict[str, str] | None = None
    if spec.reasons:
        reasoning, excluded = load_rating_reasoning(paths, train_rows)
        if excluded:
            log.warning(
                "%s K=%d: %d training example(s) left out because their rating reasoning is unusable",
                method,
                k,
                len(excluded),
            )
            train_rows = train_rows[~train_rows["example_id"].astype(str).isin(excluded)]
    backend = student_backend(cfg)
    max_len = cfg.student.max_seq_length
    pairs, n_cut = build_rating_conversations(train_rows, ctx, reasoning, backend, max_len)
    check_rating_position(backend.tokenizer, pairs)
    extra = multitask_pairs(paths, cfg, ctx) if cfg.exp3rt.exp3rt_multitask else []
    valid_rows = eval_subset(examples, "valid", cfg.data.n_valid)
    if cfg.student.n_valid_eval:
        valid_rows = valid_rows.head(cfg.student.n_valid_eval)
    if valid_rows.empty:
        raise ValueError("no validation examples to compute the validation RMSE on; raise N_VALID / N_VALID_EVAL.")
    valid_msgs = []
    for _, r in valid_rows.iterrows():
        msgs = ctx.student_messages(str(r["user_id"]), str(r["target_item_id"]), with_reasoning=spec.reasons)
        try:
            valid_msgs.append(fit_scoring_messages(backend, msgs, max_len)[0])
        except PromptTooLongError as e:
            raise ValueError(
                f"validation example {r['example_id']}: {e} Raise MAX_SEQ_LENGTH or lower EXP3RT_PROFILE_WORDS."
            ) from e
    return TrainingData(
        pairs=pairs + extra,
        example_ids=train_rows["example_id"].astype(str).tolist(),
        excluded=excluded,
        n_truncated=n_cut,
        valid_prompts=[],
        valid_labels=[],
        backend=backend,
        task="rating",
        valid_messages=valid_msgs,
        valid_ratings=valid_rows["target_rating"].astype(float).tolist(),
        reasons=spec.reasons,
        n_multitask=len(extra),
    )


def check_rating_position(tokenizer, pairs: Sequence[Mapping[str, list]]) -> None:
    """Every rating training sequence holds its rating token exactly where rating scoring reads it."""
    from rrlib.prompts.exp3rt import split_rating_answer

    for n, pair in enumerate(pairs):
        answer = split_rating_answer(pair["completion"][0]["content"])
        if not answer.format_ok:
            raise ValueError(f"rating training example {n}: its completion does not end with 'Rating: r'.")
        full = chat_token_ids(tokenizer, list(pair["prompt"]) + list(pair["completion"]))
        rp = rating_scoring_prompt(tokenizer, pair["prompt"], answer.reasoning)
        at = len(rp.ids)
        assert answer.stated is not None  # format_ok above
        want = rp.rating_ids[RATINGS.index(int(answer.stated))]
        if tuple(full[:at]) != rp.ids or len(full) <= at or full[at] != want:
            raise ValueError(
                f"rating training example {n}: the rating token of the training sequence is not where "
                f"rating scoring reads it (after {at} tokens)."
            )


def token_split(pair: Mapping[str, list], tokenizer) -> dict[str, int]:
    """Tokens of the prompt (masked out of the loss) and of the completion (trained on)."""
    prompt = tokenizer.apply_chat_template(pair["prompt"], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(pair["prompt"] + pair["completion"], tokenize=False)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    n_full = len(tokenizer(full, add_special_tokens=False)["input_ids"])
    return {"prompt_tokens": n_prompt, "completion_tokens": n_full - n_prompt}


def to_dataset(pairs: Sequence[dict]):
    from datasets import Dataset

    return Dataset.from_list(list(pairs))


def training_config(
    method: str,
    k: int,
    cfg: Config,
    identity: Mapping[str, Any],
    pairs: Sequence[dict],
    valid_prompts: Sequence[ScoringPrompt],
    seed: int,
    *,
    valid_key: Any = None,
) -> dict[str, Any]:
    """Everything that changes the trained adapter, and nothing of the run folder: its hash
    decides retrain vs skip here and keys the adapter store shared by runs (CACHE_DIR/adapters).
    ``valid_key``: what a rating student's validation reads (its prompts are generated first)."""
    rating = method_spec(method).task == "rating"
    params = {p: cfg.params.get(p) for p in TRAINING_PARAMS + (RATING_TRAINING_PARAMS if rating else ())}
    from rrlib.prompts.exp3rt import STUDENT_TEMPLATE_VERSION

    config = {
        "method": method,
        "k": int(k),
        "seed": int(seed),
        "template_version": STUDENT_TEMPLATE_VERSION if rating else TEMPLATE_VERSION,
        "params": params,
        "model_identity": dict(identity),
        "train_data_sha256": stable_hash(list(pairs)),
        "valid_data_sha256": stable_hash(
            valid_key if valid_key is not None else [[list(p.ids), p.yes_id, p.no_id] for p in valid_prompts]
        ),
        "n_train": len(pairs),
        "n_valid_eval": len(valid_prompts),
        "precision": training_precision(cfg),
        "loss": LOSS_IMPLEMENTATION,
        "libraries": _library_versions(),
    }
    config["config_hash"] = stable_hash(config)
    return config


def _library_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "trl", "peft")}


# ---------------------------------------------------------------------------------------
# Early stopping on validation AUC
# ---------------------------------------------------------------------------------------
def _trainer_callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class _ValidationCallback(_trainer_callback_base()):  # type: ignore[misc]  # base imported lazily
    """Validation before training (epoch 0: the base model, which LoRA's zero-initialised B
    matrices leave unchanged) and after every epoch; best-epoch bookkeeping in the trainer state
    (so it survives a resume) and early stopping with ``patience``. The base model's adapter is
    saved as ``base_dir`` so that "do not train" can win."""

    metric = ""  # log-history key of the validation metric
    higher_is_better = True

    def __init__(self, patience: int, precision: str = "fp32", base_dir: Path | None = None):
        self.patience, self.precision, self.base_dir = patience, precision, base_dir
        self.valid_seconds = 0.0
        self.tokens_at_start = 0

    def measure(self, model, epoch: int) -> dict[str, float]:
        """The validation metric (and diagnostics) of ``model``, keyed as in the log history."""
        raise NotImplementedError

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.tokens_at_start = state.num_input_tokens_seen or 0
        if state.global_step == 0 and not any(self.metric in h for h in state.log_history):
            self._validate(state, control, model, epoch=0)
            if self.base_dir is not None and state.is_world_process_zero:
                model.save_pretrained(str(self.base_dir))

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self._validate(state, control, model, epoch=int(round(state.epoch)))
        control.should_save = True
        return control

    def _validate(self, state, control, model, epoch: int) -> None:
        start = time.perf_counter()
        with _autocast(self.precision, next(model.parameters()).device.type):
            values = self.measure(model, epoch)
        self.valid_seconds += time.perf_counter() - start
        history = [h for h in state.log_history if self.metric in h]
        value = values[self.metric]
        better = (lambda a, b: a > b) if self.higher_is_better else (lambda a, b: a < b)
        if not history or better(value, _best_entry(history, self.metric)[self.metric]):
            # the Trainer turns best_global_step into best_model_checkpoint when it saves this epoch,
            # and its checkpoint rotation then never deletes that checkpoint (step 0: the base model)
            state.best_metric, state.best_global_step = value, state.global_step
        state.log_history.append({"epoch": epoch, "step": state.global_step, **values})
        best = _best_entry(history + [state.log_history[-1]], self.metric)
        log.info(
            "epoch %d: %s %.4f (best %.4f at epoch %d)", epoch, self.metric, value, best[self.metric], best["epoch"]
        )
        if patience_exhausted(state.log_history, self.patience):
            log.info("early stopping: no %s gain for %d epochs", self.metric, self.patience)
            control.should_training_stop = True


class ValidationAUCCallback(_ValidationCallback):
    """Validation AUC from the Yes/No probability (the scoring of notebook 07,
    :func:`rrlib.student.yes_no_probabilities`)."""

    metric = "valid_auc"

    def __init__(
        self,
        prompts: Sequence[ScoringPrompt],
        labels: Sequence[int],
        batch_size: int,
        patience: int,
        pad_id: int = 0,
        precision: str = "fp32",
        base_dir: Path | None = None,
    ):
        super().__init__(patience, precision, base_dir)
        self.prompts, self.labels = list(prompts), np.asarray(labels, dtype=int)
        self.batch_size, self.pad_id = batch_size, pad_id

    def measure(self, model, epoch: int) -> dict[str, float]:
        from sklearn.metrics import roc_auc_score

        scores = yes_no_probabilities(
            model, self.prompts, self.batch_size, pad_id=self.pad_id, desc=f"validation AUC, epoch {epoch}"
        )
        return {
            "valid_auc": float(roc_auc_score(self.labels, scores.p_yes)),
            "valid_yes_no_mass": float(scores.yes_no_mass.mean()),
        }


class ValidationRatingCallback(_ValidationCallback):
    """Validation RMSE of the expected rating (lower is better). A reasoning student first writes
    its reasoning greedily (REASONING_MAX_NEW_TOKENS), then the rating is read after it, as in
    prediction; a rating-only student is read right after the prompt."""

    metric = "valid_rmse"
    higher_is_better = False

    def __init__(
        self,
        messages: Sequence,
        ratings: Sequence[float],
        tokenizer,
        *,
        reasons: bool,
        max_new_tokens: int,
        batch_size: int,
        patience: int,
        pad_id: int = 0,
        precision: str = "fp32",
        base_dir: Path | None = None,
    ):
        super().__init__(patience, precision, base_dir)
        self.messages, self.ratings = list(messages), np.asarray(ratings, dtype=float)
        self.tokenizer, self.reasons, self.max_new_tokens = tokenizer, reasons, max_new_tokens
        self.batch_size, self.pad_id = batch_size, pad_id

    def measure(self, model, epoch: int) -> dict[str, float]:
        from rrlib.prompts.exp3rt import split_rating_answer

        reasoning = [""] * len(self.messages)
        if self.reasons:
            texts = greedy_generate(model, self.tokenizer, self.messages, self.max_new_tokens, self.batch_size)
            reasoning = [split_rating_answer(t).reasoning for t in texts]
        prompts = [rating_scoring_prompt(self.tokenizer, m, r) for m, r in zip(self.messages, reasoning)]
        scores = rating_probabilities(
            model, prompts, self.batch_size, pad_id=self.pad_id, desc=f"validation RMSE, epoch {epoch}"
        )
        return {
            "valid_rmse": float(np.sqrt(np.mean((scores.expected - self.ratings) ** 2))),
            "valid_rating_mass": float(scores.mass.mean()),
        }


def _autocast(precision: str, device_type: str):
    import torch

    if precision == "bf16-autocast":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision == "fp16-autocast":
        return torch.autocast(device_type, dtype=torch.float16)
    return contextlib.nullcontext()


#: the validation metric of each task, and whether higher is better
VALID_METRICS = {"like": ("valid_auc", True), "rating": ("valid_rmse", False)}


def valid_metric(log_history: Sequence[dict]) -> str:
    """The validation metric a log history records (RMSE for rating students, else AUC)."""
    return "valid_rmse" if any("valid_rmse" in h for h in log_history) else "valid_auc"


def _best_entry(entries: Sequence[dict], metric: str) -> dict:
    # max/min keep the earliest of equal values
    higher = dict(VALID_METRICS.values())[metric]
    return (max if higher else min)(entries, key=lambda h: h[metric])


def _best_step(log_history: Sequence[dict], metric: str) -> int | None:
    """Optimizer updates behind the best validated state (0: the base model)."""
    entries = [h for h in log_history if metric in h]
    return int(_best_entry(entries, metric)["step"]) if entries else None


def patience_exhausted(log_history: Sequence[dict], patience: int) -> bool:
    """True once ``patience`` epochs have passed since the best validation AUC (RMSE for rating
    students; first best wins)."""
    metric = valid_metric(log_history)
    aucs = [h for h in log_history if metric in h]
    if not aucs:
        return False
    best = _best_entry(aucs, metric)
    return aucs[-1]["epoch"] - best["epoch"] >= patience


# ---------------------------------------------------------------------------------------
# Curves
# ---------------------------------------------------------------------------------------
def epoch_curves(log_history: Sequence[dict]) -> pd.DataFrame:
    """Per epoch: mean training loss of its steps and the validation AUC (``valid_rmse`` for
    rating students)."""
    metric = valid_metric(log_history)
    steps = pd.DataFrame([h for h in log_history if "loss" in h and "epoch" in h])
    aucs = pd.DataFrame([h for h in log_history if metric in h])
    if aucs.empty:
        return pd.DataFrame(columns=["epoch", "train_loss", metric])
    aucs = aucs.drop_duplicates("epoch", keep="last")[["epoch", metric]]
    if not steps.empty:
        steps["epoch_n"] = np.ceil(steps["epoch"].astype(float) - 1e-9).astype(int).clip(lower=1)
        loss = steps.groupby("epoch_n")["loss"].mean().rename("train_loss").reset_index()
        aucs = aucs.merge(loss, left_on="epoch", right_on="epoch_n", how="left").drop(columns="epoch_n")
    else:
        aucs["train_loss"] = np.nan
    return aucs[["epoch", "train_loss", metric]].reset_index(drop=True)


def plot_curves(log_history: Sequence[dict], path: Path | None, title: str):
    """Training loss (per step and per epoch) and validation AUC per epoch, saved to ``path``;
    returns the figure (a plain :class:`matplotlib.figure.Figure`: no pyplot state, no backend
    switch, so a notebook can display it)."""
    from matplotlib.figure import Figure

    steps = [h for h in log_history if "loss" in h and "epoch" in h]
    per_epoch = epoch_curves(log_history)
    metric = valid_metric(log_history)
    name = "validation RMSE" if metric == "valid_rmse" else "validation AUC"
    fig = Figure(figsize=(10, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    if steps:
        ax1.plot([h["epoch"] for h in steps], [h["loss"] for h in steps], alpha=0.35, label="per step")
    if not per_epoch.empty:
        ax1.plot(per_epoch["epoch"], per_epoch["train_loss"], marker="o", label="epoch mean")
        ax2.plot(per_epoch["epoch"], per_epoch[metric], marker="o", color="tab:green")
        best = per_epoch.loc[per_epoch[metric].idxmax() if metric == "valid_auc" else per_epoch[metric].idxmin()]
        ax2.axvline(best["epoch"], color="grey", ls="--", lw=1, label=f"best epoch {int(best['epoch'])}")
        ax2.legend(loc="best")
    ax1.set(xlabel="epoch", ylabel="training loss (completion tokens)", title="training loss")
    ax1.legend(loc="best")
    ax2.set(
        xlabel="epoch",
        ylabel=name,
        title=f"{name} ({'expected rating' if metric == 'valid_rmse' else 'Yes/No probability'})",
    )
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


# ---------------------------------------------------------------------------------------
# The lean trainer: logits only where the loss is
# ---------------------------------------------------------------------------------------
def training_precision(cfg: Config) -> str:
    """How training computes: 'bf16-autocast' (fp32 master weights, bf16 matmuls) on CUDA with
    bf16 and on CPUs with AVX-512 BF16/AMX, where it measured faster with the same loss curve;
    'fp16-autocast' with 8-bit weights on CUDA (as the paper); 'fp32' otherwise. An explicit
    STUDENT_DTYPE float32 keeps fp32."""
    import torch

    from rrlib.llm.local import cpu_has_fast_bf16

    st = cfg.student
    if st.student_quantization != "none":
        return "fp16-autocast"
    if st.student_dtype == "float32":
        return "fp32"
    if torch.cuda.is_available():
        return "bf16-autocast" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16-autocast" if cpu_has_fast_bf16() else "fp32"


@contextlib.contextmanager
def lm_head_in_fp32(model):
    """Project through the LM head in fp32 even under autocast: logits rounded to bf16 (8
    mantissa bits) move each token's log-probability by ~0.05; with logits for the completion
    positions only, fp32 costs little."""
    import torch

    head = model.get_output_embeddings()
    original = head.forward

    def forward(hidden):
        with torch.autocast(hidden.device.type, enabled=False):
            return original(hidden.float())

    head.forward = forward
    try:
        yield
    finally:
        head.forward = original


def _sft_trainer_class():
    import torch
    from trl import SFTTrainer

    class CompletionLossSFTTrainer(SFTTrainer):
        """trl's SFTTrainer whose loss projects through the LM head only the positions that
        predict a completion token. trl 1.16's fused head scores every position of the batch
        off Triton devices (so on CPU it builds vocabulary-wide logits for every prompt token, in
        4096-token tiles); here the model's own ``logits_to_keep`` (a boolean mask per row)
        builds logits for the completion positions only, a few hundred rows instead of the
        whole sequence. Same loss (token-summed NLL over the completion divided by the tokens
        in the optimizer step), same logged metrics (entropy, mean_token_accuracy, num_tokens).
        With ``answer_weight`` != 1 the answer token (the ``answer_offset``-th completion token of
        each row) counts that many times (ANSWER_LOSS_WEIGHT)."""

        answer_offset: int | None = None
        answer_weight: float = 1.0

        def token_weights(self, keep, targets):
            """Per completion token: 1, and ``answer_weight`` for each row's answer token."""
            weights = torch.ones(targets.shape, dtype=torch.float32, device=targets.device)
            if self.answer_offset is None or self.answer_weight == 1.0:
                return weights
            rank = keep.long().cumsum(dim=1) - 1  # index of each kept position within its row's completion
            answer = keep & (rank == self.answer_offset)
            weights[answer[keep]] = float(self.answer_weight)
            return weights

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mode = "train" if self.model.training else "eval"
            labels = inputs["labels"]
            keep = torch.zeros_like(labels, dtype=torch.bool)
            keep[:, :-1] = labels[:, 1:] != -100  # position t predicts token t + 1
            targets = labels[:, 1:][keep[:, :-1]]
            forward = {k: v for k, v in inputs.items() if k != "labels"}
            with lm_head_in_fp32(self.model):
                outputs = model(**forward, use_cache=False, logits_to_keep=keep)
            logits = outputs.logits
            if logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
                raise RuntimeError(
                    f"{type(self.model).__name__}: the model ignored the boolean logits_to_keep mask "
                    f"(logits {tuple(logits.shape)} for {targets.shape[0]} completion tokens); this "
                    f"trainer needs transformers >= 5.23 with a model that slices its hidden states."
                )
            token_nll = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
            nll = (token_nll * self.token_weights(keep, targets)).sum()
            n_tokens = targets.numel() if num_items_in_batch is None else num_items_in_batch
            loss = nll / torch.as_tensor(n_tokens, device=nll.device).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            with torch.no_grad():
                logp = torch.log_softmax(logits.detach().float(), dim=-1)
                entropy = -(logp.exp() * logp).sum(-1)
                correct = logits.detach().argmax(-1) == targets
                n_valid = self.accelerator.gather_for_metrics(torch.tensor(targets.numel(), device=nll.device)).sum()
                ent_sum = self.accelerator.gather_for_metrics(entropy.sum()).sum()
                n_correct = self.accelerator.gather_for_metrics(correct.sum()).sum()
            self._metrics[mode]["entropy"].append((ent_sum / n_valid).item() if n_valid > 0 else 0.0)
            self._metrics[mode]["mean_token_accuracy"].append((n_correct / n_valid).item() if n_valid > 0 else 0.0)
            if mode == "train" and "attention_mask" in inputs:
                seen = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
                self._total_train_tokens += seen // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return (loss, outputs) if return_outputs else loss

    return CompletionLossSFTTrainer


# ---------------------------------------------------------------------------------------
# The adapter store: trained adapters shared by runs, keyed by their configuration hash
# ---------------------------------------------------------------------------------------
#: what a finished run leaves in its adapter folder and what the store keeps of it
_RUN_OUTPUTS = ("train_config.json", "trainer_state.json", "curves.csv", "curves.png", "training_summary.json")


def store_dir(cfg: Config, config_hash: str) -> Path:
    """``CACHE_DIR/adapters/<config_hash>``: the trained adapter of one configuration."""
    return resolve_path(cfg.common.cache_dir) / "adapters" / config_hash


def _complete(folder: Path, config_hash: str) -> bool:
    summary = read_json_or_none(folder / "training_summary.json") or {}
    return summary.get("config_hash") == config_hash and all(
        (folder / ADAPTER_SUBDIR / f).is_file() for f in ADAPTER_FILES
    )


def publish_adapter(out_dir: Path, target: Path) -> Path:
    """Copy a finished run's adapter and records into the store, atomically: a folder built
    beside ``target`` and renamed onto it, so the store never holds half an adapter. A target
    that already exists (another run published the same configuration) is kept."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / ADAPTER_SUBDIR).mkdir(parents=True)
    for f in ADAPTER_FILES:
        shutil.copy2(out_dir / ADAPTER_SUBDIR / f, tmp / ADAPTER_SUBDIR / f)
    for f in _RUN_OUTPUTS:
        if (out_dir / f).is_file():
            shutil.copy2(out_dir / f, tmp / f)
    try:
        os.rename(tmp, target)
    except OSError:  # published meanwhile by another process
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def reuse_adapter(source: Path, out_dir: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """Copy a stored adapter into this run's folder (the summary last: it marks the run
    finished) and return its summary, pointing at this run's folder."""
    summary = read_json_or_none(source / "training_summary.json") or {}
    target = out_dir / ADAPTER_SUBDIR
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for f in ADAPTER_FILES:
        shutil.copy2(source / ADAPTER_SUBDIR / f, target / f)  # copy2 keeps mtimes: the hash memo still applies
    for f in _RUN_OUTPUTS[:-1]:
        if (source / f).is_file():
            shutil.copy2(source / f, out_dir / f)
    write_json_atomic(out_dir / "train_config.json", config)
    summary = {
        **summary,
        "status": "reused",
        "reused_from": str(source),
        "adapter_dir": str(out_dir),
        "adapter_path": str(target),
        "curves_png": str(out_dir / "curves.png"),
    }
    write_json_atomic(out_dir / "training_summary.json", summary)
    return summary


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------
def _config_diff(old: Mapping, new: Mapping) -> list[str]:
    keys = sorted(set(old) | set(new))
    diff = []
    for key in keys:
        if key == "config_hash":
            continue
        if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            diff += [f"{key}.{d}" for d in _config_diff(old[key], new[key])]
        elif old.get(key) != new.get(key):
            diff.append(key)
    return diff


def _finished_checkpoint(checkpoint: Path, max_epochs: int, patience: int) -> bool:
    state = read_json_or_none(checkpoint / "trainer_state.json") or {}
    history = state.get("log_history", [])
    epochs = [h["epoch"] for h in history if valid_metric(history) in h]
    return bool(epochs) and (max(epochs) >= max_epochs or patience_exhausted(history, patience))


def check_methods(methods: Sequence[str]) -> None:
    """Every name must be a finetuned LLM method of the registry (MethodError otherwise)."""
    finetuned = registry.names(kind="finetuned_llm")
    bad = [m for m in methods if m not in finetuned]
    if bad:
        raise MethodError(
            f"METHODS holds {bad}, which are not finetuned methods; choose from {finetuned} "
            f"(zero-shot methods and baselines go in EVAL_METHODS)."
        )


def check_run(method: str, k: int, cfg: Config) -> None:
    """A (method, K) that can be trained: a finetuned method and a K of KSHOT_SIZES."""
    spec = method_spec(method)
    if not spec.finetuned:
        raise MethodError(
            f"method {method!r} is zero-shot and is not finetuned; finetuned methods: "
            f"{registry.names(kind='finetuned_llm')} (check METHODS)."
        )
    if k not in cfg.data.kshot_sizes:
        raise ValueError(
            f"K={k} is not in KSHOT_SIZES {cfg.data.kshot_sizes}; the K-shot sets and the "
            f"reasoning of notebook 05 exist only for those."
        )


def adapter_dir(paths: RunPaths, method: str, k: int, seed: int, cfg: Config) -> Path:
    """Where the adapter of (method, K, seed) lives: ``<method>_K<k>`` for SEED, ``..._seed<s>`` for
    the other seeds of SEEDS."""
    return paths.adapter_dir(method, k, None if seed == cfg.common.seed else seed)


def train(
    method: str,
    k: int,
    cfg: Config,
    paths: RunPaths,
    ctx: PromptContext,
    *,
    seed: int | None = None,
    callbacks: Sequence = (),
) -> dict[str, Any]:
    """Finetune ``method`` on the K-shot training set; returns the training summary (also in
    ``<adapter_dir>/training_summary.json``). Resumes an interrupted run; returns the saved
    summary of a finished run with the same configuration without retraining, and copies in
    the adapter of an earlier run with the same configuration from the adapter store
    (``CACHE_DIR/adapters/<config_hash>``) without loading the model."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed
    from trl import SFTConfig

    check_run(method, k, cfg)
    seed = cfg.common.seed if seed is None else int(seed)
    set_seed(seed)
    out_dir = adapter_dir(paths, method, k, seed, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)

    # data --------------------------------------------------------------------------------
    data = training_data(method, k, cfg, paths, ctx, seed=seed)
    backend, pairs, valid_prompts, excluded = data.backend, data.pairs, data.valid_prompts, data.excluded
    max_len = cfg.student.max_seq_length

    # configuration: skip, reuse, resume or start --------------------------------------------
    config = training_config(method, k, cfg, backend.identity, pairs, valid_prompts, seed, valid_key=data.valid_key)
    stored = store_dir(cfg, config["config_hash"])
    config_path, summary_path = out_dir / "train_config.json", out_dir / "training_summary.json"
    old = read_json_or_none(config_path)
    if old is not None and old.get("config_hash") != config["config_hash"]:
        raise TrainingConfigMismatch(
            f"{out_dir} holds a {method} K={k} run trained with a different configuration (differs in: "
            f"{', '.join(_config_diff(old, config)) or 'unknown'}). Use a new RUN_DIR for the new configuration, "
            f"or delete {out_dir} to retrain here."
        )
    summary = read_json_or_none(summary_path)
    if (
        summary is not None
        and summary.get("config_hash") == config["config_hash"]
        and all((out_dir / ADAPTER_SUBDIR / f).is_file() for f in ADAPTER_FILES)
    ):
        log.info("%s K=%d: already trained with this configuration (%s); not retraining", method, k, out_dir)
        publish_adapter(out_dir, stored)  # a run finished before the store existed
        return {**summary, "status": "already_trained"}
    if _complete(stored, config["config_hash"]):
        log.info("%s K=%d: trained before with this configuration; reusing %s", method, k, stored)
        return reuse_adapter(stored, out_dir, config)
    write_json_atomic(config_path, config)
    log.info("%s K=%d training configuration:\n%s", method, k, json.dumps(config, indent=2, default=str))
    ckpt_dir = out_dir / "checkpoints"
    base_dir = ckpt_dir / BASE_CHECKPOINT  # not a checkpoint-N: the Trainer's rotation never deletes it
    last = str(found) if (found := newest_complete_checkpoint(ckpt_dir)) else None

    # model -------------------------------------------------------------------------------
    model, tokenizer = load_student_for_training(cfg)
    st = cfg.student
    quantized = st.student_quantization != "none"
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    lora = LoraConfig(
        r=st.lora_r,
        lora_alpha=st.lora_alpha,
        lora_dropout=st.lora_dropout,
        target_modules=list(st.lora_target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, lora)
    except ValueError as e:
        raise ValueError(
            f"LORA_TARGET_MODULES={st.lora_target_modules} do not match modules of {st.student_model}: {e}"
        ) from e
    trainable, total = model.get_nb_trainable_parameters()
    cuda = torch.cuda.is_available()
    dtype = model.get_base_model().dtype
    precision = config["precision"]
    sft = SFTConfig(
        output_dir=str(ckpt_dir),
        num_train_epochs=st.max_epochs,
        learning_rate=st.learning_rate,
        lr_scheduler_type=st.lr_scheduler,
        warmup_steps=st.warmup_ratio,  # a float below 1 is a share of the updates
        per_device_train_batch_size=st.train_batch_size,
        gradient_accumulation_steps=st.grad_accum_steps,
        max_length=max_len,
        completion_only_loss=True,
        packing=False,
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="epoch",
        save_total_limit=2,
        eval_strategy="no",
        seed=seed,
        data_seed=seed,
        report_to="none",
        include_num_input_tokens_seen="non_padding",
        fp16=precision == "fp16-autocast",
        bf16=precision == "bf16-autocast",
        use_cpu=not cuda and precision == "bf16-autocast",  # CPU autocast
        gradient_checkpointing=quantized,
        dataloader_num_workers=0,
        disable_tqdm=False,
        save_only_model=False,
    )
    if data.task == "rating":
        valid_cb = ValidationRatingCallback(
            data.valid_messages,
            data.valid_ratings,
            tokenizer,
            reasons=data.reasons,
            max_new_tokens=cfg.evaluate.reasoning_max_new_tokens,
            batch_size=cfg.evaluate.predict_batch_size,
            patience=st.early_stopping_patience,
            pad_id=pad_token_id(tokenizer),
            precision=precision,
            base_dir=base_dir,
        )
    else:
        valid_cb = ValidationAUCCallback(
            valid_prompts,
            data.valid_labels,
            cfg.evaluate.predict_batch_size,
            st.early_stopping_patience,
            pad_id=pad_token_id(tokenizer),
            precision=precision,
            base_dir=base_dir,
        )
    trainer = _sft_trainer_class()(
        model=model,
        args=sft,
        train_dataset=to_dataset(pairs),
        processing_class=tokenizer,
        callbacks=[valid_cb, *callbacks],
    )
    if data.task == "like" and st.answer_loss_weight != 1.0:
        if data.answer_offset is None:
            raise ValueError(
                f"{method} K={k}: ANSWER_LOSS_WEIGHT={st.answer_loss_weight} needs the answer token at the same "
                f"place in every completion, and with this tokenizer it is not; set ANSWER_LOSS_WEIGHT: 1."
            )
        trainer.answer_offset, trainer.answer_weight = data.answer_offset, st.answer_loss_weight
    if len(trainer.train_dataset) != len(pairs):  # trl drops examples whose completion was cut away entirely
        raise ValueError(
            f"{method} K={k}: {len(pairs) - len(trainer.train_dataset)} training example(s) lost their "
            f"completion to truncation at MAX_SEQ_LENGTH={max_len}; raise MAX_SEQ_LENGTH."
        )
    start = time.perf_counter()
    if last and _finished_checkpoint(Path(last), st.max_epochs, st.early_stopping_patience):
        # interrupted after the last epoch was saved but before the outputs were written
        from transformers import TrainerState

        log.info("%s K=%d: %s already holds the end of training; writing the outputs", method, k, last)
        trainer.state = TrainerState.load_from_json(str(Path(last) / "trainer_state.json"))
        valid_cb.tokens_at_start = trainer.state.num_input_tokens_seen or 0
        final_loss = float("nan")
    else:
        if last:
            log.info("%s K=%d: resuming from %s", method, k, last)
        final_loss = float(trainer.train(resume_from_checkpoint=last).training_loss)
    seconds = time.perf_counter() - start
    state = trainer.state

    # outputs (main process only) -----------------------------------------------------------
    curves = epoch_curves(state.log_history)
    metric = valid_metric(state.log_history)
    best = None
    if not curves.empty:
        best = curves.loc[curves[metric].idxmax() if metric == "valid_auc" else curves[metric].idxmin()]
    tokens = int((state.num_input_tokens_seen or 0) - valid_cb.tokens_at_start)
    train_seconds = max(seconds - valid_cb.valid_seconds, 1e-9)
    summary = {
        "method": method,
        "k": int(k),
        "seed": seed,
        "status": "resumed" if last else "trained",
        "config_hash": config["config_hash"],
        "adapter_dir": str(out_dir),
        "adapter_path": str(out_dir / ADAPTER_SUBDIR),
        "n_train": len(pairs),
        "n_excluded_reasoning": len(excluded),
        "excluded_example_ids": excluded,
        "n_truncated_prompts": data.n_truncated,
        "n_valid_eval": len(valid_prompts),
        "epochs_run": int(curves["epoch"].max()) if not curves.empty else 0,
        "max_epochs": st.max_epochs,
        "stopped_early": bool(not curves.empty and int(curves["epoch"].max()) < st.max_epochs),
        "best_epoch": int(best["epoch"]) if best is not None else None,
        "best_step": _best_step(state.log_history, metric),
        "updates_per_epoch": math.ceil(len(pairs) / (st.train_batch_size * st.grad_accum_steps)),
        "lr_scheduler": st.lr_scheduler,
        "answer_loss_weight": st.answer_loss_weight,
        "task": data.task,
        "valid_metric": metric,
        "n_multitask_pairs": data.n_multitask,
        "best_valid_auc": float(best["valid_auc"]) if best is not None and metric == "valid_auc" else None,
        "best_valid_rmse": float(best["valid_rmse"]) if best is not None and metric == "valid_rmse" else None,
        metric: curves[metric].tolist(),
        "train_loss": curves["train_loss"].tolist(),
        "final_train_loss": final_loss,
        "global_step": int(state.global_step),
        "session_seconds": seconds,
        "valid_seconds": valid_cb.valid_seconds,
        "train_seconds": train_seconds,
        "train_tokens": tokens,
        "tokens_per_s": tokens / train_seconds,
        "trainable_params": int(trainable),
        "total_params": int(total),
        "device": "cuda" if cuda else "cpu",
        "dtype": str(dtype).replace("torch.", ""),
        "precision": precision,
        "train_batch_size": st.train_batch_size,
        "grad_accum_steps": st.grad_accum_steps,
        "world_size": int(trainer.args.world_size),
        "model_identity": dict(backend.identity),
        "finished_at": utc_now(),
        "environment": environment_info(),
    }
    if trainer.is_world_process_zero():
        best_ckpt = base_dir if summary["best_epoch"] == 0 else state.best_model_checkpoint
        if not best_ckpt or not all((Path(best_ckpt) / f).is_file() for f in ADAPTER_FILES):
            raise RuntimeError(
                f"{method} K={k}: the best epoch's checkpoint ({best_ckpt}) is missing or holds no "
                f"adapter; delete {ckpt_dir} and retrain."
            )
        target = out_dir / ADAPTER_SUBDIR
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for f in ADAPTER_FILES:
            shutil.copy2(Path(best_ckpt) / f, target / f)
        summary["best_checkpoint"] = str(best_ckpt)
        state.save_to_json(str(out_dir / "trainer_state.json"))
        curves.to_csv(out_dir / "curves.csv", index=False)
        plot_curves(state.log_history, out_dir / "curves.png", f"{method}, K={k}, seed {seed}: {len(pairs)} examples")
        summary["curves_png"] = str(out_dir / "curves.png")
        write_json_atomic(summary_path, summary)  # written last: marks the run finished
        publish_adapter(out_dir, stored)
    del trainer, model  # the next finetune of this process starts from a released heap
    release_memory()
    log.info(
        "%s K=%d: best %s %s at epoch %s; %.0f training tokens/s",
        method,
        k,
        metric,
        summary["best_valid_auc"] if metric == "valid_auc" else summary["best_valid_rmse"],
        summary["best_epoch"],
        summary["tokens_per_s"],
    )
    return summary
