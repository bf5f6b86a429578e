"""Results tables in the shape of the paper's Tables 2-4 and the evaluation plots.

:func:`paper_table` turns the long results (one row per dataset x method x K, as written by
:func:`rrlib.evaluate.score_predictions`) into the paper's layout: rows method x K, columns
dataset x (AUC, BERTScore). Results of several runs (datasets) can be concatenated first.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from rrlib.evaluate import markdown_table, results_markdown

#: row order of the paper's tables (methods not listed follow in the order seen)
METHOD_ORDER = ("user_like_rate", "item_like_rate", "bias_logreg", "sasrec", "caser", "zeroshot_vanilla",
                "zeroshot_reasoningrec", "tallrec", "reasoningrec_no_description", "reasoningrec_no_profile",
                "reasoningrec")
METHOD_LABELS = {
    "user_like_rate": "User like-rate", "item_like_rate": "Item like-rate (train)",
    "bias_logreg": "LogReg(user, item rate)", "sasrec": "SASRec", "caser": "Caser",
    "zeroshot_vanilla": "Zero-shot Vanilla", "zeroshot_reasoningrec": "Zero-shot ReasoningRec",
    "tallrec": "TALLRec", "reasoningrec_no_description": "ReasoningRec w/o Description",
    "reasoningrec_no_profile": "ReasoningRec w/o Profile", "reasoningrec": "ReasoningRec",
}


def _method_rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def _cell_auc(r: pd.Series) -> str:
    if pd.isna(r["auc"]):
        return "–"
    ci = "" if pd.isna(r["auc_ci_low"]) else f" [{r['auc_ci_low']:.3f}, {r['auc_ci_high']:.3f}]"
    return f"{r['auc']:.3f}{ci}"


def paper_table(results: pd.DataFrame) -> pd.DataFrame:
    """Rows (Model, K); for each dataset the columns '<dataset> AUC [95% CI]' and
    '<dataset> BERTScore'. Missing cells are '–' (e.g. BERTScore of a method without reasoning)."""
    r = results.copy()
    r["AUC"] = r.apply(_cell_auc, axis=1)
    r["BERTScore"] = [("–" if pd.isna(b) else f"{b:.3f}") for b in r["bertscore_f1"]]
    r["_rank"] = r["method"].map(_method_rank)
    datasets = list(dict.fromkeys(r["dataset"]))
    keys = r.sort_values(["_rank", "method", "k"])[["method", "k"]].drop_duplicates()
    out = pd.DataFrame({"Model": [METHOD_LABELS.get(m, m) for m in keys["method"]],
                        "K": keys["k"].to_numpy()})
    for ds in datasets:
        part = r[r["dataset"] == ds].set_index(["method", "k"])
        for metric in ("AUC", "BERTScore"):
            out[f"{ds} {metric}"] = [part[metric].get((m, k), "–") for m, k in zip(keys["method"], keys["k"])]
    return out


def save_tables(results: pd.DataFrame, folder: str | Path) -> dict[str, Path]:
    """results.csv (long, every number), results.md (readable) and paper_table.{csv,md}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"results_csv": folder / "results.csv", "results_md": folder / "results.md",
             "paper_table_csv": folder / "paper_table.csv", "paper_table_md": folder / "paper_table.md"}
    results.to_csv(files["results_csv"], index=False)
    files["results_md"].write_text(results_markdown(results))
    table = paper_table(results)
    table.to_csv(files["paper_table_csv"], index=False)
    files["paper_table_md"].write_text(markdown_table(table))
    return files


# ---------------------------------------------------------------------------------------
# Plots (matplotlib; each returns the figure and saves it when a path is given)
# ---------------------------------------------------------------------------------------
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
    for method, g in sorted(finetuned.groupby("method"), key=lambda t: _method_rank(t[0])):
        g = g.sort_values("k")
        err = np.vstack([g["auc"] - g["auc_ci_low"], g["auc_ci_high"] - g["auc"]])
        ax.errorbar(g["k"], g["auc"], yerr=np.nan_to_num(err), marker="o", capsize=3,
                    label=METHOD_LABELS.get(method, method))
    flat = results[results["k"] == 0].dropna(subset=["auc"])
    for i, (_, r) in enumerate(flat.sort_values("auc", ascending=False).iterrows()):
        ax.axhline(r["auc"], ls="--", lw=1, color=plt.cm.tab10(i % 10),
                   label=f"{METHOD_LABELS.get(r['method'], r['method'])} (K=0)")
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
    blocks = sorted(predictions.groupby(["method", "k"]), key=lambda t: (_method_rank(t[0][0]), t[0][1]))
    for (method, k), g in blocks[:max_curves]:
        if g["label"].nunique() < 2:
            continue
        fpr, tpr, _ = roc_curve(g["label"], g["p_yes"])
        auc = roc_auc_score(g["label"], g["p_yes"])
        ax.plot(fpr, tpr, lw=1.2, label=f"{METHOD_LABELS.get(method, method)} K={k} ({auc:.3f})")
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
        ax.text(0.5, 0.5, "no BERTScore: no method produced reasoning with a ground truth",
                ha="center", va="center", transform=ax.transAxes)
    else:
        lo, hi = per_example["bertscore_f1"].min(), per_example["bertscore_f1"].max()
        bins = np.linspace(min(lo, 0.0) if lo <= 0 else lo, max(hi, lo + 1e-3), 30)
        for (method, k), g in sorted(per_example.groupby(["method", "k"]),
                                     key=lambda t: (_method_rank(t[0][0]), t[0][1])):
            ax.hist(g["bertscore_f1"], bins=bins, alpha=0.45,
                    label=f"{METHOD_LABELS.get(method, method)} K={k} (mean {g['bertscore_f1'].mean():.3f})")
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


def plot_paths(folder: str | Path) -> dict[str, Path]:
    folder = Path(folder) / "plots"
    return {"auc_vs_k": folder / "auc_vs_k.png", "roc": folder / "roc_curves.png",
            "bertscore": folder / "bertscore_distribution.png", "sequential": folder / "sequential_training.png"}


__all__ = ["paper_table", "save_tables", "plot_auc_vs_k", "plot_roc_curves", "plot_bertscore_distribution",
           "plot_training_curves", "plot_paths", "METHOD_LABELS", "METHOD_ORDER"]
