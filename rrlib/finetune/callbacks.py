"""Validation during a finetune (epoch 0 = the base model, then every epoch), early stopping, and
the training curves."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rrlib.prompts.exp3rt import split_rating_answer
from rrlib.student import (
    ScoringPrompt,
    greedy_generate,
    rating_probabilities,
    rating_scoring_prompt,
    yes_no_probabilities,
)

log = logging.getLogger(__name__)


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

    def __init__(
        self,
        *,
        batch_size: int,
        patience: int,
        pad_id: int = 0,
        precision: str = "fp32",
        base_dir: Path | None = None,
    ):
        self.batch_size, self.patience, self.pad_id = batch_size, patience, pad_id
        self.precision, self.base_dir = precision, base_dir
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

    def __init__(self, prompts: Sequence[ScoringPrompt], labels: Sequence[int], **common):
        super().__init__(**common)
        self.prompts, self.labels = list(prompts), np.asarray(labels, dtype=int)

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
        **common,
    ):
        super().__init__(**common)
        self.messages, self.ratings = list(messages), np.asarray(ratings, dtype=float)
        self.tokenizer, self.reasons, self.max_new_tokens = tokenizer, reasons, max_new_tokens

    def measure(self, model, epoch: int) -> dict[str, float]:

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
