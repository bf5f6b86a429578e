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
from pathlib import Path
from typing import Any

from rrlib.config.params import Config
from rrlib.config.paths import RunPaths
from rrlib.config.provenance import environment_info, utc_now
from rrlib.errors import MethodError, TrainingConfigMismatch
from rrlib.finetune.callbacks import (
    ValidationAUCCallback,
    ValidationRatingCallback,
    _best_step,
    epoch_curves,
    patience_exhausted,
    plot_curves,
    valid_metric,
)
from rrlib.finetune.checkpoints import newest_complete_checkpoint
from rrlib.finetune.data import TrainingData, to_dataset, training_data
from rrlib.finetune.store import _complete, publish_adapter, reuse_adapter, store_dir
from rrlib.io import read_json_or_none, stable_hash, write_json_atomic
from rrlib.llm.local import cpu_has_fast_bf16
from rrlib.llm.memory import release_memory
from rrlib.methods import registry
from rrlib.prompts.exp3rt import STUDENT_TEMPLATE_VERSION
from rrlib.student import (
    ADAPTER_FILES,
    ADAPTER_SUBDIR,
    PROMPT_MARGIN,
    ScoringPrompt,
    load_student_for_training,
    pad_token_id,
)
from rrlib.student.prompts import TEMPLATE_VERSION, PromptContext, method_spec

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
# The lean trainer: logits only where the loss is
# ---------------------------------------------------------------------------------------
def training_precision(cfg: Config) -> str:
    """How training computes: 'bf16-autocast' (fp32 master weights, bf16 matmuls) on CUDA with
    bf16 and on CPUs with AVX-512 BF16/AMX, where it measured faster with the same loss curve;
    'fp16-autocast' with 8-bit weights on CUDA (as the paper); 'fp32' otherwise. An explicit
    STUDENT_DTYPE float32 keeps fp32."""
    import torch

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


def lora_config(settings):
    """The LoRA configuration of every student adapter (SFT and RecPIE's RL alike): the LORA_*
    parameters of ``settings`` (:class:`~rrlib.config.params.StudentConfig` or the RL settings)."""
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=list(settings.lora_target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def _finished_or_stored(method: str, k: int, config: dict, out_dir: Path, stored: Path) -> dict | None:
    """The summary of a run that needs no training: finished here with this configuration, or
    copied in from the adapter store. A different configuration in ``out_dir`` is refused."""
    old = read_json_or_none(out_dir / "train_config.json")
    if old is not None and old.get("config_hash") != config["config_hash"]:
        raise TrainingConfigMismatch(
            f"{out_dir} holds a {method} K={k} run trained with a different configuration (differs in: "
            f"{', '.join(_config_diff(old, config)) or 'unknown'}). Use a new RUN_DIR for the new configuration, "
            f"or delete {out_dir} to retrain here."
        )
    summary = read_json_or_none(out_dir / "training_summary.json")
    if (
        summary is not None
        and summary.get("config_hash") == config["config_hash"]
        and all((out_dir / ADAPTER_SUBDIR / f).is_file() for f in ADAPTER_FILES)
    ):
        log.info("%s K=%d: already trained with this configuration (%s); not retraining", method, k, out_dir)
        if is_main_process():
            publish_adapter(out_dir, stored)  # a run finished before the store existed
        return {**summary, "status": "already_trained"}
    if _complete(stored, config["config_hash"]):
        log.info("%s K=%d: trained before with this configuration; reusing %s", method, k, stored)
        if not is_main_process():  # the main process copies it in; the others only read
            return {**(read_json_or_none(stored / "training_summary.json") or {}), "status": "reused"}
        return reuse_adapter(stored, out_dir, config)
    return None


def is_main_process() -> bool:
    """False in every process but the first of a multi-process launch (``accelerate launch
    --multi_gpu``, ``torchrun``: RANK > 0). Only the main process writes the run's files; the
    Trainer itself writes each process's RNG state (``rng_state_<rank>.pth``) into the checkpoints."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def _peft_student(cfg: Config):
    """The student with a fresh LoRA adapter (8-bit base prepared for training where quantized)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    model, tokenizer = load_student_for_training(cfg)
    st = cfg.student
    if st.student_quantization != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    try:
        model = get_peft_model(model, lora_config(st))
    except ValueError as e:
        raise ValueError(
            f"LORA_TARGET_MODULES={st.lora_target_modules} do not match modules of {st.student_model}: {e}"
        ) from e
    return model, tokenizer


def _sft_args(cfg: Config, ckpt_dir: Path, precision: str, seed: int):
    """trl's SFTConfig: one optimizer step per TRAIN_BATCH_SIZE x GRAD_ACCUM_STEPS examples, a
    checkpoint every epoch, the completion-only loss."""
    import torch
    from trl import SFTConfig

    st = cfg.student
    quantized = st.student_quantization != "none"
    return SFTConfig(
        output_dir=str(ckpt_dir),
        num_train_epochs=st.max_epochs,
        learning_rate=st.learning_rate,
        lr_scheduler_type=st.lr_scheduler,
        warmup_steps=st.warmup_ratio,  # a float below 1 is a share of the updates
        per_device_train_batch_size=st.train_batch_size,
        gradient_accumulation_steps=st.grad_accum_steps,
        max_length=cfg.student.max_seq_length,
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
        # without CUDA always: CPU autocast, and several processes (accelerate launch --multi_gpu, torchrun)
        # are data parallel over gloo only when the Trainer is told it runs on the CPU; otherwise each
        # process trains the whole set alone (world_size 1) and all write the same folder (issue 22)
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=quantized,
        dataloader_num_workers=0,
        disable_tqdm=False,
        save_only_model=False,
    )


def _validation_callback(data: TrainingData, cfg: Config, tokenizer, precision: str, base_dir: Path):
    """Validation AUC (like students) or RMSE (rating students), from epoch 0 on."""
    common = dict(
        batch_size=cfg.evaluate.predict_batch_size,
        patience=cfg.student.early_stopping_patience,
        pad_id=pad_token_id(tokenizer),
        precision=precision,
        base_dir=base_dir,
    )
    if data.task == "rating":
        return ValidationRatingCallback(
            data.valid_messages,
            data.valid_ratings,
            tokenizer,
            reasons=data.reasons,
            max_new_tokens=cfg.evaluate.reasoning_max_new_tokens,
            **common,
        )
    return ValidationAUCCallback(data.valid_prompts, data.valid_labels, **common)


def _weigh_answer(trainer, data: TrainingData, cfg: Config, where: str) -> None:
    """ANSWER_LOSS_WEIGHT: a reasoning like student's answer token counts that many times in the
    loss (a label-only completion such as TALLRec's is all answer, so it is left as it is)."""
    weight = cfg.student.answer_loss_weight
    if data.task != "like" or not data.reasons or weight == 1.0:
        return
    if data.answer_offset is None:
        raise ValueError(
            f"{where}: ANSWER_LOSS_WEIGHT={weight} needs the answer token at the same place in every "
            f"completion, and with this tokenizer it is not; set ANSWER_LOSS_WEIGHT: 1."
        )
    trainer.answer_offset, trainer.answer_weight = data.answer_offset, weight


def _run_trainer(trainer, valid_cb, last: str | None, cfg: Config, where: str) -> tuple[float, float]:
    """Train (resuming from ``last``); returns (final training loss, seconds)."""
    st = cfg.student
    start = time.perf_counter()
    if last and _finished_checkpoint(Path(last), st.max_epochs, st.early_stopping_patience):
        # interrupted after the last epoch was saved but before the outputs were written
        from transformers import TrainerState

        log.info("%s: %s already holds the end of training; writing the outputs", where, last)
        trainer.state = TrainerState.load_from_json(str(Path(last) / "trainer_state.json"))
        valid_cb.tokens_at_start = trainer.state.num_input_tokens_seen or 0
        return float("nan"), time.perf_counter() - start
    if last:
        log.info("%s: resuming from %s", where, last)
    loss = float(trainer.train(resume_from_checkpoint=last).training_loss)
    return loss, time.perf_counter() - start


def _summary(method, k, seed, cfg, data, config, out_dir, state, valid_cb, model, final_loss, seconds, resumed):
    """The training summary: what was trained, the validation curve (epoch 0 first), the kept
    epoch and its updates, time and throughput."""
    st = cfg.student
    curves = epoch_curves(state.log_history)
    metric = valid_metric(state.log_history)
    best = None
    if not curves.empty:
        best = curves.loc[curves[metric].idxmax() if metric == "valid_auc" else curves[metric].idxmin()]
    tokens = int((state.num_input_tokens_seen or 0) - valid_cb.tokens_at_start)
    train_seconds = max(seconds - valid_cb.valid_seconds, 1e-9)
    trainable, total = model.get_nb_trainable_parameters()
    return {
        "method": method,
        "k": int(k),
        "seed": seed,
        "status": "resumed" if resumed else "trained",
        "config_hash": config["config_hash"],
        "adapter_dir": str(out_dir),
        "adapter_path": str(out_dir / ADAPTER_SUBDIR),
        "n_train": len(data.pairs),
        "n_excluded_reasoning": len(data.excluded),
        "excluded_example_ids": data.excluded,
        "n_truncated_prompts": data.n_truncated,
        "n_valid_eval": len(data.valid_prompts),
        "epochs_run": int(curves["epoch"].max()) if not curves.empty else 0,
        "max_epochs": st.max_epochs,
        "stopped_early": bool(not curves.empty and int(curves["epoch"].max()) < st.max_epochs),
        "best_epoch": int(best["epoch"]) if best is not None else None,
        "best_step": _best_step(state.log_history, metric),
        "updates_per_epoch": math.ceil(len(data.pairs) / (st.train_batch_size * st.grad_accum_steps)),
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
        "device": str(next(model.parameters()).device.type),
        "dtype": str(model.get_base_model().dtype).replace("torch.", ""),
        "precision": config["precision"],
        "train_batch_size": st.train_batch_size,
        "grad_accum_steps": st.grad_accum_steps,
        "model_identity": dict(data.backend.identity),
        "finished_at": utc_now(),
        "environment": environment_info(),
    }


def _write_outputs(summary: dict, state, out_dir: Path, base_dir: Path, stored: Path) -> None:
    """Main process only: the kept epoch's adapter (epoch 0: the base model's), the trainer state,
    curves and the summary (written last: it marks the run finished), then the store."""
    ckpt_dir = out_dir / "checkpoints"
    best_ckpt = base_dir if summary["best_epoch"] == 0 else state.best_model_checkpoint
    if not best_ckpt or not all((Path(best_ckpt) / f).is_file() for f in ADAPTER_FILES):
        raise RuntimeError(
            f"{summary['method']} K={summary['k']}: the best epoch's checkpoint ({best_ckpt}) is missing or "
            f"holds no adapter; delete {ckpt_dir} and retrain."
        )
    target = out_dir / ADAPTER_SUBDIR
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for f in ADAPTER_FILES:
        shutil.copy2(Path(best_ckpt) / f, target / f)
    summary["best_checkpoint"] = str(best_ckpt)
    state.save_to_json(str(out_dir / "trainer_state.json"))
    epoch_curves(state.log_history).to_csv(out_dir / "curves.csv", index=False)
    title = f"{summary['method']}, K={summary['k']}, seed {summary['seed']}: {summary['n_train']} examples"
    plot_curves(state.log_history, out_dir / "curves.png", title)
    summary["curves_png"] = str(out_dir / "curves.png")
    write_json_atomic(out_dir / "training_summary.json", summary)
    publish_adapter(out_dir, stored)


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
    from transformers import set_seed

    check_run(method, k, cfg)
    seed = cfg.common.seed if seed is None else int(seed)
    set_seed(seed)
    where = f"{method} K={k}"
    out_dir = paths.adapter_dir(method, k, seed, cfg.common.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = training_data(method, k, cfg, paths, ctx, seed=seed)
    config = training_config(
        method, k, cfg, data.backend.identity, data.pairs, data.valid_prompts, seed, valid_key=data.valid_key
    )
    stored = store_dir(cfg, config["config_hash"])
    done = _finished_or_stored(method, k, config, out_dir, stored)
    if done is not None:
        return done
    if is_main_process():
        write_json_atomic(out_dir / "train_config.json", config)
    log.info("%s training configuration:\n%s", where, json.dumps(config, indent=2, default=str))
    ckpt_dir = out_dir / "checkpoints"
    base_dir = ckpt_dir / BASE_CHECKPOINT  # not a checkpoint-N: the Trainer's rotation never deletes it
    last = str(found) if (found := newest_complete_checkpoint(ckpt_dir)) else None

    model, tokenizer = _peft_student(cfg)
    valid_cb = _validation_callback(data, cfg, tokenizer, config["precision"], base_dir)
    trainer = _sft_trainer_class()(
        model=model,
        args=_sft_args(cfg, ckpt_dir, config["precision"], seed),
        train_dataset=to_dataset(data.pairs),
        processing_class=tokenizer,
        callbacks=[valid_cb, *callbacks],
    )
    if len(trainer.train_dataset) != len(data.pairs):  # trl drops examples whose completion was cut away entirely
        raise ValueError(
            f"{where}: {len(data.pairs) - len(trainer.train_dataset)} training example(s) lost their "
            f"completion to truncation at MAX_SEQ_LENGTH={cfg.student.max_seq_length}; raise MAX_SEQ_LENGTH."
        )
    _weigh_answer(trainer, data, cfg, where)
    final_loss, seconds = _run_trainer(trainer, valid_cb, last, cfg, where)
    state = trainer.state
    summary = _summary(method, k, seed, cfg, data, config, out_dir, state, valid_cb, model, final_loss, seconds, last)
    summary["world_size"] = int(trainer.args.world_size)
    if trainer.is_world_process_zero():
        _write_outputs(summary, state, out_dir, base_dir, stored)
    del trainer, model  # the next finetune of this process starts from a released heap
    release_memory()
    metric = summary["valid_metric"]
    log.info(
        "%s: best %s %s at epoch %s (%s updates); %.0f training tokens/s",
        where,
        metric,
        summary["best_valid_auc"] if metric == "valid_auc" else summary["best_valid_rmse"],
        summary["best_epoch"],
        summary["best_step"],
        summary["tokens_per_s"],
    )
    return summary
