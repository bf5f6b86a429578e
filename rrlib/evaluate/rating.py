"""Metrics of the rating task (EXP3RT's headline task) with honest uncertainty.

* RMSE = sqrt(mean((predicted - true)^2)) and MAE = mean(|predicted - true|), in rating points
  (lower is better). Each comes with a percentile bootstrap 95% interval over examples,
  seeded like :func:`rrlib.evaluate.metrics.auc_with_ci`.
* :func:`paired_rating_difference`: RMSE(a) - RMSE(b) and MAE(a) - MAE(b) on the same
  examples, with a paired bootstrap interval and p-value (the rating counterpart of
  :func:`rrlib.evaluate.metrics.paired_auc_difference`). A method beats the reference only when
  the interval lies *below* 0.
* :func:`rating_metrics`: the figures of one block of rating-task rows of the predictions table
  (``predicted_rating`` = the expected rating; ``rating_argmax`` = the most probable rating,
  when the method has a distribution): RMSE/MAE of both, the arg-max's exact-match accuracy, and
  the AUC of the predicted rating read as a like score (so rating methods sit in the like/dislike
  tables too).

Half-star data (MovieLens). The rating students answer on EXP3RT's 1-5 integer scale: their
training label is the true rating rounded half up (:func:`rrlib.prompts.exp3rt.integer_rating`:
3.5 -> 4, 0.5 -> 1), and their prediction is the expected value of the five rating tokens at the
trained position, a real number. ``rmse`` is always against the raw rating (what a recommender
is asked to predict). Where the test ratings hold half stars (``n_half_star`` > 0), the rows also
carry ``rmse_rounded`` (with its interval): the RMSE against the rounded label the students were
trained on, so the share of the error that the rounding itself causes is visible (at most 0.5 on
a half-star example; sqrt(share of half stars) / 2 over a test set). Why not half-star labels: the
rating is read from ONE token's distribution over 1-5; half stars would need a second token
(``.5``) read at another position, and the paper's scales (Amazon 1-5, IMDB 1-10) are integer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from rrlib.errors import PredictionsError
from rrlib.evaluate.metrics import auc_with_ci
from rrlib.methods import registry
from rrlib.predictions import BLOCK
from rrlib.prompts.exp3rt import integer_rating


def _pair(targets: Iterable[float], predicted: Iterable[float], what: str) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(list(targets), dtype=float)
    p = np.asarray(list(predicted), dtype=float)
    if len(t) != len(p):
        raise PredictionsError(f"{what}: {len(t)} true ratings but {len(p)} predictions.")
    if not len(t):
        raise PredictionsError(f"{what}: no examples to score.")
    bad = ~np.isfinite(t) | ~np.isfinite(p)
    if bad.any():
        raise PredictionsError(
            f"{what}: {int(bad.sum())} of {len(t)} true or predicted rating(s) are NaN or "
            f"infinite (first at position {int(np.flatnonzero(bad)[0])})."
        )
    return t, p


def _boot_index(rng: np.random.Generator, n: int, n_boot: int):
    """Bootstrap index matrices in chunks that bound memory for large n."""
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, n_boot, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_boot - start), n))


def _quantiles(values: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def rmse_mae_with_ci(
    targets: Iterable[float], predicted: Iterable[float], *, n_boot: int, seed: int, level: float = 0.95
) -> dict[str, Any]:
    """RMSE and MAE with percentile bootstrap intervals (examples resampled with replacement,
    ``n_boot`` times, seeded). ``n_boot = 0`` gives the point values with NaN intervals."""
    t, p = _pair(targets, predicted, "rmse_mae_with_ci")
    err = p - t
    out = {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "rmse_ci_low": math.nan,
        "rmse_ci_high": math.nan,
        "mae_ci_low": math.nan,
        "mae_ci_high": math.nan,
        "n": int(len(t)),
        "n_boot": int(n_boot),
        "ci_level": level,
        "seed": int(seed),
    }
    if n_boot <= 0:
        return out
    sq, ab = err**2, np.abs(err)
    rmse, mae = [], []
    for idx in _boot_index(np.random.default_rng(seed), len(t), n_boot):
        rmse.append(np.sqrt(sq[idx].mean(axis=1)))
        mae.append(ab[idx].mean(axis=1))
    out["rmse_ci_low"], out["rmse_ci_high"] = _quantiles(np.concatenate(rmse), level)
    out["mae_ci_low"], out["mae_ci_high"] = _quantiles(np.concatenate(mae), level)
    return out


def _p_value(d: np.ndarray) -> float:
    """Two-sided bootstrap p-value: 2 * min(P(d <= 0), P(d >= 0)), capped at 1."""
    return min(1.0, 2 * min(float(np.mean(d <= 0)), float(np.mean(d >= 0))))


def paired_rating_difference(
    targets: Iterable[float],
    predicted_a: Iterable[float],
    predicted_b: Iterable[float],
    *,
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> dict[str, Any]:
    """RMSE(a) - RMSE(b) and MAE(a) - MAE(b) on the same examples (negative: a is more accurate),
    each with a paired percentile bootstrap interval and two-sided p-value: every resample draws
    the same examples for both methods, so the interval measures the uncertainty of the
    difference itself."""
    targets = np.asarray(list(targets), dtype=float)
    predicted_a, predicted_b = list(predicted_a), list(predicted_b)
    if len(predicted_a) != len(predicted_b):
        raise PredictionsError(
            f"paired_rating_difference: {len(predicted_a)} and {len(predicted_b)} predictions; "
            f"both methods must score the same examples."
        )
    t, a = _pair(targets, predicted_a, "paired_rating_difference")
    _, b = _pair(targets, predicted_b, "paired_rating_difference")
    sa, sb = (a - t) ** 2, (b - t) ** 2
    aa, ab = np.abs(a - t), np.abs(b - t)
    out = {
        "delta_rmse": float(np.sqrt(sa.mean()) - np.sqrt(sb.mean())),
        "delta_mae": float(aa.mean() - ab.mean()),
        "delta_rmse_ci_low": math.nan,
        "delta_rmse_ci_high": math.nan,
        "delta_rmse_p": math.nan,
        "delta_mae_ci_low": math.nan,
        "delta_mae_ci_high": math.nan,
        "delta_mae_p": math.nan,
        "n": int(len(t)),
        "n_boot": int(n_boot),
        "ci_level": level,
        "seed": int(seed),
    }
    if n_boot <= 0:
        return out
    d_rmse, d_mae = [], []
    for idx in _boot_index(np.random.default_rng(seed), len(t), n_boot):
        d_rmse.append(np.sqrt(sa[idx].mean(axis=1)) - np.sqrt(sb[idx].mean(axis=1)))
        d_mae.append(aa[idx].mean(axis=1) - ab[idx].mean(axis=1))
    dr, dm = np.concatenate(d_rmse), np.concatenate(d_mae)
    out["delta_rmse_ci_low"], out["delta_rmse_ci_high"] = _quantiles(dr, level)
    out["delta_mae_ci_low"], out["delta_mae_ci_high"] = _quantiles(dm, level)
    out["delta_rmse_p"], out["delta_mae_p"] = _p_value(dr), _p_value(dm)
    return out


#: the columns :func:`rating_metrics` fills (results rows hold them, NaN for like-task rows)
RATING_COLUMNS = [
    "rmse",
    "rmse_ci_low",
    "rmse_ci_high",
    "mae",
    "mae_ci_low",
    "mae_ci_high",
    "argmax_rmse",
    "argmax_mae",
    "argmax_accuracy",
    "argmax_n",
    "n_half_star",
    "rmse_rounded",
    "rmse_rounded_ci_low",
    "rmse_rounded_ci_high",
]
#: the columns of the paired difference with the strongest rating baseline
RATING_DELTA_COLUMNS = [
    "rating_reference",
    "delta_rmse",
    "delta_rmse_ci_low",
    "delta_rmse_ci_high",
    "delta_rmse_p",
    "delta_mae",
    "delta_mae_ci_low",
    "delta_mae_ci_high",
    "delta_mae_p",
]


def empty_rating_columns() -> dict[str, Any]:
    out: dict[str, Any] = {c: math.nan for c in RATING_COLUMNS + RATING_DELTA_COLUMNS}
    out.update(argmax_n=0, n_half_star=0, rating_reference="")
    return out


def half_star_count(targets: Iterable[float]) -> int:
    """How many ratings are not whole stars (3.5, 0.5, ...)."""
    t = np.asarray(list(targets), dtype=float)
    return int((~np.isclose(t, np.round(t))).sum())


def _rating_block(block: pd.DataFrame, what: str) -> pd.DataFrame:
    tasks = set(block["task"].astype(str))
    if tasks != {"rating"}:
        raise PredictionsError(f"{what}: rating metrics need rating-task rows, found task(s) {sorted(tasks)}.")
    missing = block["target_rating"].isna()
    if missing.any():
        eid = block.loc[missing, "example_id"].iloc[0]
        raise PredictionsError(
            f"{what}: {int(missing.sum())} row(s) lack target_rating (e.g. {eid}); the examples "
            f"table must carry the true rating."
        )
    return block


def rating_metrics(block: pd.DataFrame, *, n_boot: int, seed: int, level: float = 0.95) -> dict[str, Any]:
    """The rating figures of one (method, K, seed) block: RMSE and MAE of ``predicted_rating``
    with bootstrap intervals; RMSE, MAE and accuracy (exact match with the true rating) of
    ``rating_argmax`` over the rows that have one (``argmax_n``); ``auc`` of the predicted rating
    as a like score (NaN when the labels hold one class)."""
    what = f"{block['method'].iloc[0]}" if len(block) else "rating_metrics"
    block = _rating_block(block, what)
    m = rmse_mae_with_ci(block["target_rating"], block["predicted_rating"], n_boot=n_boot, seed=seed, level=level)
    out: dict[str, Any] = {c: math.nan for c in RATING_COLUMNS}
    out.update(
        {k: m[k] for k in ("rmse", "rmse_ci_low", "rmse_ci_high", "mae", "mae_ci_low", "mae_ci_high")}, argmax_n=0
    )
    out["n_half_star"] = half_star_count(block["target_rating"])
    if out["n_half_star"]:  # the label the rating students were trained on: rounded half up to 1-5
        rounded = [integer_rating(x) for x in block["target_rating"]]
        r = rmse_mae_with_ci(rounded, block["predicted_rating"], n_boot=n_boot, seed=seed, level=level)
        out.update(rmse_rounded=r["rmse"], rmse_rounded_ci_low=r["rmse_ci_low"], rmse_rounded_ci_high=r["rmse_ci_high"])
    arg = pd.to_numeric(block["rating_argmax"], errors="coerce").to_numpy(dtype=float)
    has = np.isfinite(arg)
    if has.any():
        t = block["target_rating"].to_numpy(dtype=float)[has]
        err = arg[has] - t
        out.update(
            argmax_rmse=float(np.sqrt(np.mean(err**2))),
            argmax_mae=float(np.mean(np.abs(err))),
            argmax_accuracy=float(np.mean(np.isclose(arg[has], t))),
            argmax_n=int(has.sum()),
        )
    labels = block["label"].astype(int)
    try:
        out["auc"] = auc_with_ci(labels, block["predicted_rating"], n_boot=0, seed=seed)["auc"]
    except ValueError:
        out["auc"] = math.nan
    return out


def strongest_rating_baseline(predictions: pd.DataFrame) -> tuple[str | None, float]:
    """The rating baseline (registry kind ``rating_baseline``) with the lowest RMSE in
    ``predictions`` (the reference every rating method is compared with)."""
    best, best_rmse = None, math.inf
    for method in registry.names(kind="rating_baseline"):
        block = predictions[(predictions["method"] == method) & (predictions["task"] == "rating")]
        if block.empty or block["target_rating"].isna().any():
            continue
        rmse = rmse_mae_with_ci(block["target_rating"], block["predicted_rating"], n_boot=0, seed=0)["rmse"]
        if rmse < best_rmse:
            best, best_rmse = method, rmse
    return best, best_rmse


def rating_difference_columns(
    block: pd.DataFrame, reference: pd.DataFrame, reference_name: str, *, n_boot: int, seed: int
) -> tuple[dict[str, Any], list[str]]:
    """The paired difference of ``block`` with the ``reference`` block (indexed by example_id)
    on the examples both scored; returns the columns and notes."""
    notes = []
    common = block[block["example_id"].isin(reference.index)]
    if len(common) < len(block):
        notes.append(f"paired rating difference on the {len(common)} of {len(block)} examples {reference_name} scored")
    if common.empty:
        return {"rating_reference": reference_name}, notes + ["no paired rating difference: no common examples"]
    d = paired_rating_difference(
        common["target_rating"],
        common["predicted_rating"],
        reference.loc[common["example_id"], "predicted_rating"],
        n_boot=n_boot,
        seed=seed,
    )
    cols = {c: d[c] for c in RATING_DELTA_COLUMNS[1:]}
    cols["rating_reference"] = reference_name
    return cols, notes


def rating_results(predictions: pd.DataFrame, *, n_boot: int, seed: int, dataset: str = "") -> pd.DataFrame:
    """One row per rating-task (method, K, seed) block: :func:`rating_metrics` plus the paired
    difference with the strongest rating baseline (:func:`strongest_rating_baseline`)."""

    rating = predictions[predictions["task"] == "rating"]
    ref_name, _ = strongest_rating_baseline(rating)
    ref = (
        rating[rating["method"] == ref_name].drop_duplicates("example_id").set_index("example_id") if ref_name else None
    )
    rows = []
    for (method, k, s), block in rating.groupby(BLOCK, sort=False):
        row: dict[str, Any] = {
            "dataset": dataset,
            "method": method,
            "label": registry.label(method),
            "k": int(k),
            "seed": int(s),
            "n": len(block),
        }
        row.update(empty_rating_columns())
        row.update(rating_metrics(block, n_boot=n_boot, seed=seed))
        notes: list[str] = []
        if row["n_half_star"]:
            notes.append(
                f"{row['n_half_star']} of {len(block)} targets are half stars; the rating students learn them "
                f"rounded half up (3.5 -> 4): rmse_rounded is against that label, rmse against the raw rating"
            )
        if ref is not None:
            row["rating_reference"] = ref_name
            if method != ref_name and ref_name is not None:
                diff, notes = rating_difference_columns(block, ref, ref_name, n_boot=n_boot, seed=seed)
                row.update(diff)
        row["note"] = "; ".join(notes)
        rows.append(row)
    cols = ["dataset", "method", "label", "k", "seed", "n", "auc"] + RATING_COLUMNS + RATING_DELTA_COLUMNS + ["note"]
    out = pd.DataFrame(rows, columns=cols)
    return (
        out.assign(_o=out["method"].map(registry.order))
        .sort_values(["_o", "k", "seed"], kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)
    )


__all__ = [
    "RATING_COLUMNS",
    "RATING_DELTA_COLUMNS",
    "empty_rating_columns",
    "half_star_count",
    "paired_rating_difference",
    "rating_difference_columns",
    "rating_metrics",
    "rating_results",
    "rmse_mae_with_ci",
    "strongest_rating_baseline",
]
