"""The evaluation plots of notebook 07 (matplotlib; each returns the figure and saves it when a
path is given)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rrlib.methods.registry import label, order


def _save(fig, path):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def plot_auc_vs_k(results: pd.DataFrame, path: str | Path | None = None):
    """AUC (with the 95% interval as error bars) against K for every method; methods that are
    not finetuned (K = 0) are drawn as horizontal reference lines."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    finetuned = results[results["k"] > 0]
    ks = sorted(finetuned["k"].unique()) or [0]
    for method, g in sorted(finetuned.groupby("method"), key=lambda t: order(t[0])):
        g = g.sort_values("k")
        err = np.vstack([g["auc"] - g["auc_ci_low"], g["auc_ci_high"] - g["auc"]])
        ax.errorbar(g["k"], g["auc"], yerr=np.nan_to_num(err), marker="o", capsize=3, label=label(method))
    flat = results[results["k"] == 0].dropna(subset=["auc"])
    for i, (_, r) in enumerate(flat.sort_values("auc", ascending=False).iterrows()):
        ax.axhline(r["auc"], ls="--", lw=1, color=plt.cm.tab10(i % 10), label=f"{label(r['method'])} (K=0)")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks(ks)
    ax.set_xlabel("K (finetuning examples)")
    ax.set_ylabel("test AUC")
    ax.set_title("AUC vs K (bars: bootstrap 95% CI)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def plot_roc_curves(predictions: pd.DataFrame, path: str | Path | None = None, max_curves: int = 12):
    """ROC curve of every (method, K) block."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(5.5, 5))
    like = predictions[predictions["task"] == "like"] if "task" in predictions.columns else predictions
    blocks = sorted(like.groupby(["method", "k"]), key=lambda t: (order(t[0][0]), t[0][1]))
    for (method, k), g in blocks[:max_curves]:
        if g["label"].nunique() < 2:
            continue
        fpr, tpr, _ = roc_curve(g["label"], g["p_yes"])
        auc = roc_auc_score(g["label"], g["p_yes"])
        ax.plot(fpr, tpr, lw=1.2, label=f"{label(method)} K={k} ({auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curves on the test examples")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_bertscore_distribution(per_example: pd.DataFrame, path: str | Path | None = None):
    """Histogram of per-example BERTScore F1 for every method that generates reasoning."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if per_example.empty:
        ax.text(
            0.5,
            0.5,
            "no BERTScore: no method produced reasoning with a ground truth",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    else:
        lo, hi = per_example["bertscore_f1"].min(), per_example["bertscore_f1"].max()
        bins = np.linspace(min(lo, 0.0) if lo <= 0 else lo, max(hi, lo + 1e-3), 30)
        for (method, k), g in sorted(per_example.groupby(["method", "k"]), key=lambda t: (order(t[0][0]), t[0][1])):
            ax.hist(
                g["bertscore_f1"],
                bins=bins.tolist(),
                alpha=0.45,
                label=f"{label(method)} K={k} (mean {g['bertscore_f1'].mean():.3f})",
            )
        ax.legend(fontsize=7)
        ax.set_title(f"BERTScore F1 — {per_example['bertscore_backbone'].iloc[0]}", fontsize=8)
    ax.set_xlabel("BERTScore F1 (generated vs ground-truth reasoning)")
    ax.set_ylabel("examples")
    return _save(fig, path)


def plot_training_curves(infos: Mapping[str, Mapping[str, Any]], path: str | Path | None = None):
    """Validation AUC per epoch of the sequential baselines (the early-stopping signal)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, info in infos.items():
        curve = pd.DataFrame(info["curve"])
        col = [c for c in curve.columns if c.startswith("valid_")][0]
        ax.plot(curve["epoch"], curve[col], marker=".", label=f"{name} ({col})")
        ax.axvline(info["best_epoch"], ls=":", lw=0.8, color=ax.lines[-1].get_color())
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation score")
    ax.set_title("SASRec / Caser early stopping (dotted: best epoch)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_paired_differences(results: pd.DataFrame, path: str | Path | None = None):
    """AUC minus the strongest bias baseline's, with the paired 95% interval, per method/K/seed:
    a method beats the baseline only where its whole bar is right of 0."""
    import matplotlib.pyplot as plt

    rows = results.dropna(subset=["delta_auc"])
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(rows), 3) + 1))
    labels = [
        f"{label(m)} K={k}" + (f" s{s}" if results["seed"].nunique() > 1 else "")
        for m, k, s in zip(rows["method"], rows["k"], rows["seed"])
    ]
    y = np.arange(len(rows))[::-1]
    err = np.vstack([rows["delta_auc"] - rows["delta_ci_low"], rows["delta_ci_high"] - rows["delta_auc"]])
    colors = [
        "tab:green" if lo > 0 else "tab:red" if hi < 0 else "tab:gray"
        for lo, hi in zip(rows["delta_ci_low"], rows["delta_ci_high"])
    ]
    for yi, x, e_lo, e_hi, color in zip(y, rows["delta_auc"], np.nan_to_num(err[0]), np.nan_to_num(err[1]), colors):
        ax.errorbar([x], [yi], xerr=[[e_lo], [e_hi]], fmt="o", color=color, capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ref = next((r for r in results["reference"] if r), "the strongest bias baseline")
    ax.set_xlabel(f"AUC difference to {label(ref)} (paired bootstrap 95% CI)")
    ax.set_title("Who beats the bias baseline? (green: yes, red: worse, gray: cannot tell)", fontsize=9)
    return _save(fig, path)


def plot_paths(folder: str | Path) -> dict[str, Path]:
    folder = Path(folder) / "plots"
    return {
        "auc_vs_k": folder / "auc_vs_k.png",
        "roc": folder / "roc_curves.png",
        "bertscore": folder / "bertscore_distribution.png",
        "sequential": folder / "sequential_training.png",
        "paired": folder / "paired_differences.png",
    }


__all__ = [
    "plot_auc_vs_k",
    "plot_bertscore_distribution",
    "plot_paired_differences",
    "plot_paths",
    "plot_roc_curves",
    "plot_training_curves",
]
