"""The results of notebook 07: one row per (method, K, seed) with its metrics, the paired comparison
with the strongest bias baseline, the summary over seeds, and the run's ``metrics.json``.

Honest comparisons. On these datasets the user's and the item's like-rates are strong. Every
like/dislike row therefore carries ``delta_auc``: its AUC minus that of the strongest bias
baseline *on the same test examples*, with a paired bootstrap 95% interval and p-value
(:func:`rrlib.evaluate.metrics.paired_auc_difference`). A method is better than the baseline only
when that interval lies above 0. The strongest baseline is chosen on the validation split
(:mod:`rrlib.evaluate.reference`), so no test figure selects it; without a choice it falls back
to the strongest on the scored examples themselves (a conservative choice, said in the note).

Rating-task blocks (EXP3RT and the rating baselines) also get RMSE and MAE with bootstrap
intervals and ``delta_rmse`` / ``delta_mae``: the paired difference with the strongest rating
baseline (lowest RMSE), see :mod:`rrlib.evaluate.rating`. Lower is better there, so a method
beats that baseline only when the interval lies below 0. Like-task rows leave these columns NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rrlib import predictions as pr
from rrlib.config.params import run_seeds
from rrlib.config.paths import resolve_path
from rrlib.config.provenance import utc_now
from rrlib.evaluate.bertscore import bertscore_backbone, bertscore_f1
from rrlib.evaluate.metrics import auc_with_ci, mean_sd, paired_auc_difference
from rrlib.evaluate.rating import (
    RATING_COLUMNS,
    RATING_DELTA_COLUMNS,
    empty_rating_columns,
    rating_difference_columns,
    rating_metrics,
    strongest_rating_baseline,
)
from rrlib.evaluate.section import Section, section_records
from rrlib.evaluate.tables import save_tables
from rrlib.io import read_json_or_none, write_json_atomic
from rrlib.methods import registry
from rrlib.prompts.postprocess import USABLE_STATUSES

RESULT_COLUMNS = [
    "dataset",
    "method",
    "label",
    "k",
    "seed",
    "task",
    "n",
    "n_pos",
    "n_neg",
    "auc",
    "auc_ci_low",
    "auc_ci_high",
    "reference",
    "delta_auc",
    "delta_ci_low",
    "delta_ci_high",
    "delta_p",
    *RATING_COLUMNS,
    *RATING_DELTA_COLUMNS,
    "bertscore_f1",
    "bertscore_n",
    "bertscore_empty",
    "bertscore_backbone",
    "format_errors",
    "training",
    "note",
]
#: the figures notebook 07 records in metrics.json (fixed keys; tests and tooling read them)
METRICS_KEYS = (
    "results",
    "summary",
    "auc",
    "bertscore_f1",
    "best_method",
    "strongest_bias_baseline",
    "beats_bias_baseline",
    "rmse",
    "mae",
    "strongest_rating_baseline",
    "beats_rating_baseline",
    "n_test",
    "n_test_dislikes",
    "bootstrap_samples",
    "seed",
    "seeds",
    "bertscore_backbone",
)


def strongest_bias_baseline(predictions: pd.DataFrame) -> tuple[str | None, float]:
    """The bias baseline (registry kind ``bias``) with the highest AUC in ``predictions``."""
    best, best_auc = None, -math.inf
    for method in registry.names(kind="bias"):
        block = predictions[(predictions["method"] == method) & (predictions["task"] == "like")]
        if block.empty or block["label"].nunique() < 2:
            continue
        auc = auc_with_ci(block["label"], block["p_yes"], n_boot=0, seed=0)["auc"]
        if auc > best_auc:
            best, best_auc = method, auc
    return best, best_auc


def _like_score(block: pd.DataFrame) -> pd.Series:
    """The score the AUC reads: P(Yes) for like-task rows, the predicted rating for rating rows."""
    return block["p_yes"] if (block["task"] == "like").all() else block["predicted_rating"]


@dataclass(frozen=True)
class _Baselines:
    """The baselines every block is paired with: the bias one (like AUC) and the rating one (RMSE)."""

    name: str | None
    block: pd.DataFrame | None
    rating_name: str | None
    rating_block: pd.DataFrame | None


def _baselines(predictions: pd.DataFrame, reference: str | None, rating_reference: str | None) -> _Baselines:
    """The chosen baselines' predictions, indexed by example (default: the strongest on ``predictions``)."""
    name = reference if reference is not None else strongest_bias_baseline(predictions)[0]
    block = (
        predictions[predictions["method"] == name].drop_duplicates("example_id").set_index("example_id")
        if name and (predictions["method"] == name).any()
        else None
    )
    rating_name = rating_reference if rating_reference is not None else strongest_rating_baseline(predictions)[0]
    rating_block = (
        predictions[(predictions["method"] == rating_name) & (predictions["task"] == "rating")]
        .drop_duplicates("example_id")
        .set_index("example_id")
        if rating_name
        else None
    )
    return _Baselines(name, block, rating_name, rating_block)


def _empty_row(block: pd.DataFrame, method: str, k: int, seed: int, dataset: str, reference: str) -> dict[str, Any]:
    """A block's results row with its counts filled in and every figure still NaN."""
    labels = block["label"].astype(int)
    return {
        "dataset": dataset,
        "method": method,
        "label": registry.label(method),
        "k": int(k),
        "seed": int(seed),
        "task": str(block["task"].iloc[0]),
        "n": len(block),
        "n_pos": int(labels.sum()),
        "n_neg": int((labels == 0).sum()),
        "format_errors": int((~block["format_ok"].astype(bool)).sum()),
        "auc": math.nan,
        "auc_ci_low": math.nan,
        "auc_ci_high": math.nan,
        "reference": reference,
        "delta_auc": math.nan,
        "delta_ci_low": math.nan,
        "delta_ci_high": math.nan,
        "delta_p": math.nan,
        "bertscore_backbone": "",
        "bertscore_f1": math.nan,
        "bertscore_n": 0,
        "bertscore_empty": 0,
        "training": "",
        **empty_rating_columns(),
    }


def _add_rating_figures(row: dict, block: pd.DataFrame, base: _Baselines, n_boot: int, seed: int) -> list[str]:
    """RMSE/MAE with intervals, and the paired difference with the rating baseline; returns notes."""
    notes: list[str] = []
    try:
        figures = rating_metrics(block, n_boot=n_boot, seed=seed)
        figures.pop("auc")  # the AUC with its interval comes from _add_auc_figures, as for like-task rows
        row.update(figures)
    except ValueError as e:
        notes.append(str(e))
    if base.rating_block is not None and base.rating_name is not None:
        row["rating_reference"] = base.rating_name
        if row["method"] != base.rating_name and not math.isnan(row["rmse"]):
            cols, more = rating_difference_columns(block, base.rating_block, base.rating_name, n_boot=n_boot, seed=seed)
            row.update(cols)
            notes += more
    return notes


def _add_auc_figures(row: dict, block: pd.DataFrame, base: _Baselines, n_boot: int, seed: int) -> list[str]:
    """The AUC with its interval, and the paired difference with the bias baseline; returns notes."""
    notes: list[str] = []
    try:
        auc = auc_with_ci(block["label"].astype(int), _like_score(block), n_boot=n_boot, seed=seed)
        row.update(auc=auc["auc"], auc_ci_low=auc["ci_low"], auc_ci_high=auc["ci_high"])
    except ValueError as e:
        notes.append(str(e))
    ref = base.block
    if ref is None:
        return notes
    if len(block) < len(ref):  # e.g. recpie_rl: only the explained users
        notes.append(
            f"scored on {len(block)} of the {len(ref)} examples (coverage "
            f"{len(block) / len(ref):.0%}); its paired difference is on those"
        )
    if row["method"] == base.name or math.isnan(row["auc"]):
        return notes
    common = block[block["example_id"].isin(ref.index)]
    if len(common) < len(block):
        notes.append(f"paired difference on the {len(common)} of {len(block)} examples the baseline scored")
    try:
        d = paired_auc_difference(
            common["label"], _like_score(common), ref.loc[common["example_id"], "p_yes"], n_boot=n_boot, seed=seed
        )
        row.update(delta_auc=d["delta_auc"], delta_ci_low=d["ci_low"], delta_ci_high=d["ci_high"], delta_p=d["p_value"])
    except ValueError as e:
        notes.append(f"no paired difference: {e}")
    return notes


def _reasoning_view(spec: registry.MethodSpec, method_views: Mapping[str, str]) -> tuple[str, list[str]]:
    """The teacher view a method's ground-truth reasoning comes from, and a note when it is not 'full'."""
    # a rating method's ground truth is EXP3RT's rating reasoning, whatever the like views say
    if spec.task == "rating":
        view = own = "exp3rt"
    else:
        view = method_views.get(spec.name, "full")
        own = registry.view_name(spec.teacher_view) if spec.teacher_view is not None else "full"
    if view != own:
        return view, [f"reuses the {view} teacher view's reasoning (ABLATION_REASONING: full), not its own {own} view"]
    return view, [f"ground truth written by a teacher with the {view} view"] if view != "full" else []


@dataclass(frozen=True)
class _BertScoreSetup:
    """What BERTScore needs besides the texts: the references by view and the scoring model."""

    references: Mapping[str, Mapping[str, str]]
    method_views: Mapping[str, str]
    model: str
    layers: int
    cache_dir: str | Path | None
    backbone: str


def _add_bertscore(row: dict, block: pd.DataFrame, bs: _BertScoreSetup) -> tuple[pd.DataFrame | None, list[str]]:
    """Mean BERTScore F1 of a reasoning method's texts against the teacher's ground truth.

    Returns the per-example scores (None for a method without reasoning) and notes."""
    spec = registry.REGISTRY.get(row["method"])
    if spec is None or not spec.reasons:
        return None, []
    view, view_notes = _reasoning_view(spec, bs.method_views)
    refs = bs.references.get(view, {})
    has_ref = block["example_id"].map(lambda e: bool(str(refs.get(e, "") or "").strip()))
    scored = block[has_ref.to_numpy()]
    notes = []
    if len(scored) < len(block):
        notes.append(
            f"{len(block) - len(scored)} of {len(block)} examples have no ground-truth reasoning "
            f"({view} view) and are not in BERTScore"
        )
    per = None
    if len(scored):
        texts = scored["reasoning"].tolist()
        f1 = bertscore_f1(texts, [refs[e] for e in scored["example_id"]], bs.model, bs.layers, bs.cache_dir)
        row.update(
            bertscore_f1=float(f1.mean()),
            bertscore_n=len(f1),
            bertscore_empty=int((scored["reasoning"].fillna("").str.strip() == "").sum()),
            bertscore_backbone=bs.backbone,
        )
        per = pd.DataFrame(
            {
                "method": row["method"],
                "k": row["k"],
                "seed": row["seed"],
                "example_id": scored["example_id"].to_numpy(),
                "bertscore_f1": f1,
                "bertscore_backbone": bs.backbone,
            }
        )
    return per, notes + view_notes


def score_predictions(
    predictions: pd.DataFrame,
    references: Mapping[str, Mapping[str, str]],
    *,
    dataset: str,
    n_boot: int,
    seed: int,
    bertscore_model: str,
    bertscore_layers: int,
    cache_dir: str | Path | None = None,
    method_views: Mapping[str, str] | None = None,
    progress: bool = True,
    reference: str | None = None,
    rating_reference: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every (method, K, seed) block of ``predictions``.

    ``references``: teacher view -> {example_id: ground-truth reasoning}; ``method_views``:
    method -> the view its ground truth was written under (default 'full'). Returns
    ``(results, per_example)``: one results row per block (AUC with CI, the paired difference
    with the strongest bias baseline, mean BERTScore over the examples that have ground-truth
    reasoning, counts, format errors; for rating-task blocks also RMSE/MAE with CIs and the paired
    difference with the strongest rating baseline) and the per-example BERTScore F1.
    ``reference`` / ``rating_reference``: the baselines chosen on validation (default: the
    strongest on ``predictions`` themselves)."""
    pr.check(predictions)
    base = _baselines(predictions, reference, rating_reference)
    bs = _BertScoreSetup(
        references,
        dict(method_views or {}),
        bertscore_model,
        bertscore_layers,
        cache_dir,
        bertscore_backbone(bertscore_model, bertscore_layers),
    )
    rows, per_example = [], []
    blocks = list(predictions.groupby(pr.BLOCK, sort=False))
    for (method, k, s), block in tqdm(blocks, desc="scoring methods", disable=not progress):
        row = _empty_row(block, method, k, s, dataset, base.name or "")
        notes = _add_rating_figures(row, block, base, n_boot, seed) if row["task"] == "rating" else []
        notes += _add_auc_figures(row, block, base, n_boot, seed)
        per, more = _add_bertscore(row, block, bs)
        if per is not None:
            per_example.append(per)
        row["note"] = "; ".join(notes + more)
        rows.append(row)
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    results = (
        results.assign(_o=results["method"].map(registry.order))
        .sort_values(["_o", "k", "seed"], kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)
    )
    per = (
        pd.concat(per_example, ignore_index=True)
        if per_example
        else pd.DataFrame(columns=["method", "k", "seed", "example_id", "bertscore_f1", "bertscore_backbone"])
    )
    return results, per


def seed_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per (method, K): mean and sd over seeds of AUC, of the paired difference and of BERTScore
    (and, for rating methods, of RMSE, MAE and the paired RMSE difference), with the number of
    seeds (sd is NaN for a single seed)."""
    out = []
    for (method, k), g in results.groupby(["method", "k"], sort=False):
        auc_m, auc_sd, n = mean_sd(g["auc"])
        d_m, d_sd, _ = mean_sd(g["delta_auc"])
        b_m, b_sd, _ = mean_sd(g["bertscore_f1"])
        r_m, r_sd, _ = mean_sd(g["rmse"]) if "rmse" in g else (math.nan, math.nan, 0)
        e_m, e_sd, _ = mean_sd(g["mae"]) if "mae" in g else (math.nan, math.nan, 0)
        dr_m, dr_sd, _ = mean_sd(g["delta_rmse"]) if "delta_rmse" in g else (math.nan, math.nan, 0)
        below = int((g["delta_rmse_ci_high"] < 0).sum()) if "delta_rmse_ci_high" in g else 0
        out.append(
            {
                "dataset": g["dataset"].iloc[0],
                "method": method,
                "label": registry.label(method),
                "k": int(k),
                "n_seeds": n,
                "auc_mean": auc_m,
                "auc_sd": auc_sd,
                "delta_auc_mean": d_m,
                "delta_auc_sd": d_sd,
                "bertscore_mean": b_m,
                "bertscore_sd": b_sd,
                "seeds_above_baseline": int((g["delta_ci_low"] > 0).sum()),
                "rmse_mean": r_m,
                "rmse_sd": r_sd,
                "mae_mean": e_m,
                "mae_sd": e_sd,
                "delta_rmse_mean": dr_m,
                "delta_rmse_sd": dr_sd,
                "seeds_below_rating_baseline": below,
            }
        )
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------
# metrics.json: notebook 07 is its only writer
# ---------------------------------------------------------------------------------------
def _clean(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(v) else float(v)
    return v


def metrics_dict(
    results: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    n_boot: int,
    seed: int,
    seeds: Sequence[int],
    bertscore_backbone_name: str,
    test_examples: pd.DataFrame,
) -> dict[str, Any]:
    """The figures of a run (keys :data:`METRICS_KEYS`)."""

    def key(r: Mapping[str, Any]) -> str:
        return f"{r['method']}@K{int(r['k'])}" + (f"@seed{int(r['seed'])}" if len(set(results["seed"])) > 1 else "")

    best = results.dropna(subset=["auc"]).sort_values("auc", ascending=False)
    beats = results[results["delta_ci_low"] > 0]
    ref = next((r for r in results["reference"] if r), None)
    rating = results[results["task"] == "rating"] if "task" in results else results.iloc[:0]
    rating_ref = next((r for r in rating.get("rating_reference", []) if r), None)
    beats_rating = rating[rating["delta_rmse_ci_high"] < 0] if len(rating) else rating
    return {
        "results": [{c: _clean(r[c]) for c in RESULT_COLUMNS} for _, r in results.iterrows()],
        "summary": [{c: _clean(v) for c, v in r.items()} for _, r in summary.iterrows()],
        "auc": {key(r): _clean(r["auc"]) for _, r in results.iterrows()},
        "bertscore_f1": {
            key(r): _clean(r["bertscore_f1"]) for _, r in results.iterrows() if not pd.isna(r["bertscore_f1"])
        },
        "best_method": None if best.empty else key(best.iloc[0]),
        "strongest_bias_baseline": ref,
        "beats_bias_baseline": [key(r) for _, r in beats.iterrows()],
        "rmse": {key(r): _clean(r["rmse"]) for _, r in rating.iterrows()},
        "mae": {key(r): _clean(r["mae"]) for _, r in rating.iterrows()},
        "strongest_rating_baseline": rating_ref,
        "beats_rating_baseline": [key(r) for _, r in beats_rating.iterrows()],
        "n_test": int(len(test_examples)),
        "n_test_dislikes": int((test_examples["label"] == 0).sum()),
        "bootstrap_samples": int(n_boot),
        "seed": int(seed),
        "seeds": list(seeds),
        "bertscore_backbone": bertscore_backbone_name,
    }


def write_run_metrics(paths, metrics: Mapping[str, Any], params: Mapping[str, Any]) -> Path:
    """Write ``evaluate/metrics.json`` (every figure) and the run's ``metrics.json`` (the final
    figures with what produced them). Notebook 07 is the only caller, so a run made through
    JupyterLab gets the same file as one made by the runner."""
    missing = [k for k in METRICS_KEYS if k not in metrics]
    if missing:
        raise ValueError(f"write_run_metrics: the metrics lack key(s) {missing} (see METRICS_KEYS).")
    write_json_atomic(paths.evaluate / "metrics.json", dict(metrics))
    run_id = Path(paths.root).name
    manifest = read_json_or_none(paths.manifest) or {}
    payload = {
        "run_id": manifest.get("run_id", run_id),
        "written_at": utc_now(),
        "dataset": params.get("DATASET"),
        "student_model": params.get("STUDENT_MODEL"),
        "train_kshots": params.get("TRAIN_KSHOTS"),
        "n_test": metrics["n_test"],
        "n_test_dislikes": metrics["n_test_dislikes"],
        "seed": params.get("SEED"),
        "metrics": {k: metrics[k] for k in METRICS_KEYS if k not in ("results", "summary")},
    }
    return write_json_atomic(paths.metrics, payload)


@dataclass
class Evaluation:
    """What notebook 07 shows and records."""

    results: pd.DataFrame
    summary: pd.DataFrame
    per_example: pd.DataFrame
    metrics: dict[str, Any]
    files: dict[str, Path]


def evaluate_run(
    paths, cfg, scored: pd.DataFrame, test: pd.DataFrame, method_views: Mapping[str, str], references=None
) -> Evaluation:
    """Score the plan's predictions on the test examples, write the tables and the metrics
    (``evaluate/metrics.json`` and the run's ``metrics.json``). ``references``: the baselines
    chosen on validation (:class:`rrlib.evaluate.reference.References`)."""
    ev = cfg.evaluate
    references = reference_reasoning(paths, test["example_id"])
    results, per_example = score_predictions(
        scored,
        references,
        dataset=cfg.common.dataset,
        n_boot=ev.bootstrap_samples,
        seed=cfg.common.seed,
        bertscore_model=ev.bertscore_model,
        bertscore_layers=ev.bertscore_num_layers,
        cache_dir=resolve_path(cfg.common.cache_dir),
        method_views=method_views,
        reference=getattr(references, "bias", None),
        rating_reference=getattr(references, "rating", None),
    )
    results["training"] = [training_note(paths, cfg, r) for _, r in results.iterrows()]
    summary = seed_summary(results)
    files = save_tables(results, summary, paths.evaluate)
    per_example.to_csv(paths.evaluate / "bertscore_per_example.csv", index=False)
    metrics = metrics_dict(
        results,
        summary,
        n_boot=ev.bootstrap_samples,
        seed=cfg.common.seed,
        seeds=run_seeds(cfg),
        bertscore_backbone_name=bertscore_backbone(ev.bertscore_model, ev.bertscore_num_layers),
        test_examples=test,
    )
    write_run_metrics(paths, metrics, cfg.params)
    return Evaluation(results, summary, per_example, metrics, files)


def results_record(
    paths,
    evaluation: Evaluation,
    *,
    references,
    all_users: pd.DataFrame,
    baseline_info: Mapping[str, Mapping[str, Any]],
    llm_stats: Mapping[str, Mapping[str, Any]],
    plots: Mapping[str, Path],
    sections: Iterable[Section] = (),
) -> dict[str, Any]:
    """Notebook 07's results record (``results/07_evaluate-*.json``): the metrics, the references
    chosen on validation (:class:`rrlib.evaluate.reference.References`), every test user's rows, what
    the fitted methods and the LLM runs reported (training curves left out), the files written, and
    each family's views under its name (:func:`rrlib.evaluate.section.section_records`)."""
    return {
        **evaluation.metrics,
        "references": references.as_dict(),
        "all_test_users": all_users.to_dict(orient="records"),
        "baselines": {k: {kk: vv for kk, vv in v.items() if kk != "curve"} for k, v in baseline_info.items()},
        "llm": llm_stats,
        "generation": {k: v.get("generation", {}) for k, v in llm_stats.items()},
        "model_identities": {k: v.get("model_identity") for k, v in llm_stats.items()},
        "files": {k: str(v) for k, v in {**evaluation.files, **plots}.items()},
        "predictions": str(paths.predictions),
        **section_records(sections),
    }


def training_note(paths, cfg, row: Mapping[str, Any]) -> str:
    """'<updates> updates, epoch <e> of <n>' for a finetuned row (from its training summary), else ''."""
    if registry.get(str(row["method"])).kind != "finetuned_llm" or int(row["k"]) == 0:
        return ""
    seed = int(row["seed"])
    folder = paths.adapter_dir(str(row["method"]), int(row["k"]), None if seed == cfg.common.seed else seed)
    s = read_json_or_none(Path(folder) / "training_summary.json") or {}
    if s.get("best_epoch") is None:
        return ""
    updates = s.get("best_step")
    return f"{updates if updates is not None else '?'} updates, epoch {s['best_epoch']} of {s.get('epochs_run', '?')}"


def reference_reasoning(paths, example_ids: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
    """Ground-truth reasoning by teacher view and example id, usable rows only: notebook 05's
    training reasoning and its test references (written for BERTScore only)."""

    refs: dict[str, dict[str, str]] = {}
    wanted = set(map(str, example_ids)) if example_ids is not None else None
    for source in (
        paths.reasoning,
        paths.reference_reasoning,
        paths.rating_reasoning,
        paths.rating_reference_reasoning,
    ):
        if not Path(source).exists():
            continue
        table = pd.read_parquet(source)
        missing = [c for c in ("example_id", "view", "reasoning", "status") if c not in table.columns]
        if missing:
            raise ValueError(f"{source} lacks column(s) {missing}; rerun 05_reasoning_generation.")
        table = table[table["status"].isin(USABLE_STATUSES) & (table["reasoning"].fillna("").str.strip() != "")]
        for view, g in table.groupby("view"):
            ids = g["example_id"].astype(str)
            keep = ids.isin(wanted) if wanted is not None else np.ones(len(g), bool)
            refs.setdefault(str(view), {}).update(zip(ids[keep], g["reasoning"].astype(str)[keep]))
    return refs


__all__ = [
    "Evaluation",
    "evaluate_run",
    "METRICS_KEYS",
    "RESULT_COLUMNS",
    "metrics_dict",
    "reference_reasoning",
    "results_record",
    "score_predictions",
    "seed_summary",
    "strongest_bias_baseline",
    "write_run_metrics",
]
