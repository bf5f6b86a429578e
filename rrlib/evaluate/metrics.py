"""Metrics of the like/dislike task with honest uncertainty: binary AUC with a percentile bootstrap
interval, and the paired bootstrap difference of two methods' AUCs on the same examples (the
test that decides whether a method beats the strongest bias baseline)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score


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


def auc_with_ci(
    labels: Iterable[int], scores: Iterable[float], n_boot: int, seed: int, level: float = 0.95
) -> dict[str, Any]:
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
        raise ValueError(
            f"auc_with_ci: AUC is undefined because all {len(y)} labels are "
            f"{next(iter(classes)) if classes else 'missing'}; evaluate on more examples "
            f"(raise N_TEST) so that both liked and disliked targets occur."
        )
    auc = float(roc_auc_score(y, s))
    out = {
        "auc": auc,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "n": int(len(y)),
        "n_pos": int(y.sum()),
        "n_boot": int(n_boot),
        "n_boot_single_class": 0,
        "ci_level": level,
        "seed": int(seed),
    }
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


def _aligned(
    labels: Iterable[int], a: Iterable[float], b: Iterable[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(list(labels), dtype=int)
    sa, sb = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    if not len(y) == len(sa) == len(sb):
        raise ValueError(
            f"paired comparison: {len(y)} labels, {len(sa)} and {len(sb)} scores; both methods must "
            f"score the same examples."
        )
    if np.isnan(sa).any() or np.isnan(sb).any():
        raise ValueError("paired comparison: a score is NaN.")
    if len(set(np.unique(y).tolist())) < 2:
        raise ValueError("paired comparison: the labels hold a single class, so AUC is undefined.")
    return y, sa, sb


def paired_auc_difference(
    labels: Iterable[int],
    scores_a: Iterable[float],
    scores_b: Iterable[float],
    *,
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> dict[str, Any]:
    """AUC(a) - AUC(b) on the same examples, with a paired percentile bootstrap interval and a
    two-sided bootstrap p-value.

    Each resample draws the same examples for both methods, so the interval reflects the
    uncertainty of the *difference* (much narrower than comparing two separate intervals when
    the methods' errors are correlated). The p-value is ``2 * min(P(d <= 0), P(d >= 0))`` over
    the resampled differences ``d``, capped at 1: small when the sign of the difference is stable.
    """
    y, sa, sb = _aligned(labels, scores_a, scores_b)
    diff = float(roc_auc_score(y, sa) - roc_auc_score(y, sb))
    out = {
        "delta_auc": diff,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p_value": math.nan,
        "n": int(len(y)),
        "n_pos": int(y.sum()),
        "n_boot": int(n_boot),
        "ci_level": level,
        "seed": int(seed),
    }
    if n_boot <= 0:
        return out
    rng = np.random.default_rng(seed)
    parts = []
    chunk = max(1, 1_000_000 // max(len(y), 1))
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, len(y), size=(min(chunk, n_boot - start), len(y)))
        parts.append(_auc_rows(y[idx], sa[idx]) - _auc_rows(y[idx], sb[idx]))
    d = np.concatenate(parts)
    d = d[~np.isnan(d)]
    if len(d):
        alpha = (1 - level) / 2
        out["ci_low"], out["ci_high"] = (float(v) for v in np.quantile(d, [alpha, 1 - alpha]))
        out["p_value"] = float(min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0))))
    return out


def delong_auc_difference(
    labels: Iterable[int], scores_a: Iterable[float], scores_b: Iterable[float]
) -> dict[str, float]:
    """DeLong's test of AUC(a) - AUC(b) on the same examples (DeLong, DeLong & Clarke-Pearson 1988):
    the difference, its standard error and the two-sided normal p-value. A closed-form check of
    the paired bootstrap."""
    from scipy.stats import norm

    y, sa, sb = _aligned(labels, scores_a, scores_b)
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())

    def components(s: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        # structural components: v10[i] = P(s_pos_i > s_neg), v01[j] = P(s_pos > s_neg_j), ties half
        sp, sn = s[pos], s[neg]
        cmp = (sp[:, None] > sn[None, :]).astype(float) + 0.5 * (sp[:, None] == sn[None, :])
        return float(cmp.mean()), cmp.mean(axis=1), cmp.mean(axis=0)

    auc_a, v10a, v01a = components(sa)
    auc_b, v10b, v01b = components(sb)
    s10 = np.cov(np.vstack([v10a, v10b])) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack([v01a, v01b])) if n > 1 else np.zeros((2, 2))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    diff = auc_a - auc_b
    se = float(math.sqrt(max(var, 0.0)))
    p = float(2 * norm.sf(abs(diff) / se)) if se > 0 else (1.0 if diff == 0 else 0.0)
    return {"delta_auc": float(diff), "se": se, "p_value": p}


def mean_sd(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (NaN for one value) and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, int(len(v))


__all__ = ["auc_with_ci", "delong_auc_difference", "mean_sd", "paired_auc_difference"]
