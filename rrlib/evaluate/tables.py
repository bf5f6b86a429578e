"""Results tables: the long table (every number), a readable Markdown table with the paired
difference to the strongest bias baseline, the summary over seeds, and the paper's layout
(rows method x K, columns dataset x metric; several runs' results can be concatenated first).
Rows follow the registry's order (:func:`rrlib.methods.registry.order`). When the results hold
rating-task rows, RMSE / MAE columns and the paired RMSE difference with the strongest rating
baseline are added (like-task-only results keep their columns)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from rrlib.io import write_text_atomic
from rrlib.methods.registry import label, order


def fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(fmt(v).replace("|", "\\|") for v in r.tolist()) + " |")
    return "\n".join(lines) + "\n"


def _interval(value: float, low: float, high: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}" + ("" if math.isnan(low) else f" [{low:.3f}, {high:.3f}]")


def _delta(r: pd.Series) -> str:
    if pd.isna(r["delta_auc"]):
        return "reference" if r["method"] == r["reference"] else "–"
    verdict = " ✓" if r["delta_ci_low"] > 0 else " ✗" if r["delta_ci_high"] < 0 else ""
    return f"{r['delta_auc']:+.3f} [{r['delta_ci_low']:+.3f}, {r['delta_ci_high']:+.3f}] p={r['delta_p']:.3f}{verdict}"


def _has_rating(results: pd.DataFrame) -> bool:
    return "task" in results and bool((results["task"] == "rating").any()) and "rmse" in results


def _delta_rmse(r: pd.Series) -> str:
    if r.get("task") != "rating":
        return ""
    if pd.isna(r["delta_rmse"]):
        return "reference" if r["method"] == r["rating_reference"] else "–"
    # lower is better: below 0 is a gain
    verdict = " ✓" if r["delta_rmse_ci_high"] < 0 else " ✗" if r["delta_rmse_ci_low"] > 0 else ""
    return (
        f"{r['delta_rmse']:+.3f} [{r['delta_rmse_ci_low']:+.3f}, {r['delta_rmse_ci_high']:+.3f}] "
        f"p={r['delta_rmse_p']:.3f}{verdict}"
    )


def _rating_interval(r: pd.Series, metric: str) -> str:
    if r.get("task") != "rating":
        return ""
    return _interval(r[metric], r[f"{metric}_ci_low"], r[f"{metric}_ci_high"])


def results_view(results: pd.DataFrame) -> pd.DataFrame:
    """The readable results: AUC [95% CI], Δ AUC to the strongest bias baseline [paired 95% CI]
    and p, BERTScore, and the counts an AUC rests on (examples, dislikes)."""
    multi_seed = results["seed"].nunique() > 1
    view = pd.DataFrame(
        {"dataset": results["dataset"], "method": [label(m) for m in results["method"]], "K": results["k"]}
    )
    if multi_seed:
        view["seed"] = results["seed"]
    ref = next((r for r in results["reference"] if r), "")
    view["AUC [95% CI]"] = [
        _interval(a, lo, hi) for a, lo, hi in zip(results["auc"], results["auc_ci_low"], results["auc_ci_high"])
    ]
    view[f"Δ AUC vs {label(ref) if ref else 'bias baseline'} [95% CI]"] = [_delta(r) for _, r in results.iterrows()]
    if _has_rating(results):
        rref = next((r for r in results["rating_reference"] if r), "")
        view["RMSE [95% CI]"] = [_rating_interval(r, "rmse") for _, r in results.iterrows()]
        view["MAE [95% CI]"] = [_rating_interval(r, "mae") for _, r in results.iterrows()]
        view[f"Δ RMSE vs {label(rref) if rref else 'rating baseline'} [95% CI]"] = [
            _delta_rmse(r) for _, r in results.iterrows()
        ]
    view["BERTScore F1"] = [fmt(b) for b in results["bertscore_f1"]]
    if "training" in results:
        view["training"] = results["training"].fillna("")
    view["n (dislikes)"] = [f"{n} ({d})" for n, d in zip(results["n"], results["n_neg"])]
    view["format errors"] = results["format_errors"]
    return view


def results_markdown(results: pd.DataFrame, summary: pd.DataFrame | None = None) -> str:
    text = markdown_table(results_view(results))
    text += (
        "\nΔ AUC: paired bootstrap over the same test examples against the bias baseline chosen on the "
        "validation split (highest validation AUC); ✓ the interval lies above 0 (better than the "
        "baseline), ✗ below 0 (worse); without a mark the data cannot tell the two apart. Training: the "
        "optimizer updates behind the adapter used and the epoch validation chose (epoch 0: the base model).\n"
    )
    if _has_rating(results):
        text += (
            "\nRMSE / MAE: rating points, lower is better. Δ RMSE: paired bootstrap against the strongest "
            "rating baseline on the validation split (lowest RMSE), on the same test examples; ✓ the interval lies below 0 (more accurate), "
            "✗ above 0.\n"
        )
    backbones = sorted({b for b in results["bertscore_backbone"] if b})
    if backbones:
        text += "\nBERTScore backbone: " + "; ".join(backbones) + "\n"
    if summary is not None and (summary["n_seeds"] > 1).any():
        text += "\nOver seeds (mean ± sd):\n\n" + markdown_table(summary_view(summary))
    notes = [f"- {label(m)} K={k}: {n}" for m, k, n in zip(results["method"], results["k"], results["note"]) if n]
    if notes:
        text += "\nNotes:\n" + "\n".join(dict.fromkeys(notes)) + "\n"
    return text


def summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    def pm(m: float, sd: float) -> str:
        return "–" if math.isnan(m) else f"{m:.3f}" + ("" if math.isnan(sd) else f" ± {sd:.3f}")

    view = pd.DataFrame(
        {
            "method": [label(m) for m in summary["method"]],
            "K": summary["k"],
            "seeds": summary["n_seeds"],
            "AUC": [pm(m, s) for m, s in zip(summary["auc_mean"], summary["auc_sd"])],
            "Δ AUC": [pm(m, s) for m, s in zip(summary["delta_auc_mean"], summary["delta_auc_sd"])],
            "BERTScore": [pm(m, s) for m, s in zip(summary["bertscore_mean"], summary["bertscore_sd"])],
            "seeds above baseline": summary["seeds_above_baseline"],
        }
    )
    if "rmse_mean" in summary and summary["rmse_mean"].notna().any():
        view["RMSE"] = [pm(m, s) for m, s in zip(summary["rmse_mean"], summary["rmse_sd"])]
        view["Δ RMSE"] = [pm(m, s) for m, s in zip(summary["delta_rmse_mean"], summary["delta_rmse_sd"])]
        view["seeds below rating baseline"] = summary["seeds_below_rating_baseline"]
    return view


def paper_table(results: pd.DataFrame) -> pd.DataFrame:
    """Rows (Model, K); per dataset the columns '<dataset> AUC [95% CI]', '<dataset> Δ vs bias'
    and '<dataset> BERTScore' (and RMSE, MAE, Δ RMSE when there are rating rows). With several seeds the first seed's row is shown (the summary
    table gives mean ± sd). Missing cells are '–'."""
    r = results.sort_values("seed", kind="stable").drop_duplicates(["dataset", "method", "k"]).copy()
    r["AUC"] = [_interval(a, lo, hi) for a, lo, hi in zip(r["auc"], r["auc_ci_low"], r["auc_ci_high"])]
    r["Δ vs bias"] = [_delta(x) for _, x in r.iterrows()]
    r["BERTScore"] = [fmt(b) for b in r["bertscore_f1"]]
    metrics = ["AUC", "Δ vs bias", "BERTScore"]
    if _has_rating(r):
        r["RMSE"] = [_rating_interval(x, "rmse") or "–" for _, x in r.iterrows()]
        r["MAE"] = [_rating_interval(x, "mae") or "–" for _, x in r.iterrows()]
        r["Δ RMSE vs rating baseline"] = [_delta_rmse(x) or "–" for _, x in r.iterrows()]
        metrics += ["RMSE", "MAE", "Δ RMSE vs rating baseline"]
    r["_rank"] = r["method"].map(order)
    datasets = list(dict.fromkeys(r["dataset"]))
    keys = r.sort_values(["_rank", "method", "k"])[["method", "k"]].drop_duplicates()
    out = pd.DataFrame({"Model": [label(m) for m in keys["method"]], "K": keys["k"].to_numpy()})
    for ds in datasets:
        part = r[r["dataset"] == ds].set_index(["method", "k"])
        for metric in metrics:
            out[f"{ds} {metric}"] = [part[metric].get((m, k), "–") for m, k in zip(keys["method"], keys["k"])]
    return out


def save_tables(results: pd.DataFrame, summary: pd.DataFrame, folder: str | Path) -> dict[str, Path]:
    """results.csv (long, every number), results.md (readable), summary.csv (over seeds) and
    paper_table.{csv,md}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "results_csv": folder / "results.csv",
        "results_md": folder / "results.md",
        "summary_csv": folder / "summary.csv",
        "paper_table_csv": folder / "paper_table.csv",
        "paper_table_md": folder / "paper_table.md",
    }
    results.to_csv(files["results_csv"], index=False)
    summary.to_csv(files["summary_csv"], index=False)
    write_text_atomic(files["results_md"], results_markdown(results, summary))
    table = paper_table(results)
    table.to_csv(files["paper_table_csv"], index=False)
    write_text_atomic(files["paper_table_md"], markdown_table(table))
    return files


__all__ = ["fmt", "markdown_table", "paper_table", "results_markdown", "results_view", "save_tables", "summary_view"]
