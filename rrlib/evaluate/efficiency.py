"""Data efficiency (RecPIE's claim that text lets a recommender match the best baseline with a
fraction of the data): train the bias baselines, SASRec and RecPIE variants on nested, seeded
fractions of the training users and score them all on the same evaluation examples."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from rrlib.data.sequences import training_cutoffs, user_sequences
from rrlib.errors import DataError, MethodError, ParamError
from rrlib.evaluate.metrics import auc_with_ci
from rrlib.methods.bias import BIAS_METHODS, bias_baselines
from rrlib.methods.recpie import VARIANTS, TextFeatures, train_hybrid
from rrlib.methods.registry import label
from rrlib.methods.sequential import SeqConfig, train_sequential


def nested_user_fractions(users: Sequence[str], fractions: Sequence[float], seed: int) -> dict[float, list[str]]:
    """One seeded permutation of the training users; fraction f takes its first ceil(f * n), so
    every smaller set lies inside every larger one."""
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise ParamError(f"fractions must lie in (0, 1], got {bad} (RECPIE_FRACTIONS is in percent).")
    pool = sorted({str(u) for u in users})
    order = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))]
    return {float(f): order[: max(1, math.ceil(f * len(pool)))] for f in fractions}


DEFAULT_EFFICIENCY_METHODS = ("user_like_rate", "item_like_rate", "bias_logreg", "sasrec", "recpie_hybrid")


def data_efficiency(
    interactions: pd.DataFrame,
    examples: pd.DataFrame,
    eval_examples: pd.DataFrame,
    *,
    fractions: Sequence[float],
    features: TextFeatures,
    cfg: SeqConfig,
    methods: Sequence[str] = DEFAULT_EFFICIENCY_METHODS,
    n_boot: int = 200,
    progress: bool = False,
) -> pd.DataFrame:
    """AUC (with a bootstrap interval) of each method trained on nested, seeded fractions of the
    training users, all scored on the same ``eval_examples``. Users left out contribute no
    training target (and no item statistics) but their histories still feed their own
    evaluation targets; early stopping uses every valid target. Returns one row per
    (method, fraction): method, label, fraction, n_train_users, n_train_targets, auc, ci_low,
    ci_high, n."""
    unknown = [m for m in methods if m not in BIAS_METHODS and m != "sasrec" and m not in VARIANTS]
    if unknown:
        raise MethodError(
            f"data_efficiency: cannot train {unknown}; choose from bias baselines {list(BIAS_METHODS)}, "
            f"sasrec and {list(VARIANTS)}."
        )
    cut = training_cutoffs(user_sequences(interactions))
    subsets = nested_user_fractions([u for u, c in cut.items() if c > 1], fractions, cfg.seed)
    y = eval_examples["label"].to_numpy(dtype=int)
    rows = []
    for frac, users in subsets.items():
        keep = set(users)
        scores: dict[str, np.ndarray] = {}
        bias = [m for m in methods if m in BIAS_METHODS]
        if bias:
            inter_sub = interactions[interactions["user_id"].astype(str).isin(keep)]
            ex_sub = examples[examples["user_id"].astype(str).isin(keep)]
            out, _ = bias_baselines(inter_sub, ex_sub, eval_examples, seed=cfg.seed, methods=bias)
            for m in bias:
                scores[m] = out[out["method"] == m]["p_yes"].to_numpy()
        if "sasrec" in methods:
            out, _ = train_sequential(
                "sasrec", interactions, examples, eval_examples, cfg, progress=progress, train_users=users
            )
            scores["sasrec"] = out["p_yes"].to_numpy()
        for m in (m for m in methods if m in VARIANTS):
            out, _ = train_hybrid(
                m, interactions, examples, eval_examples, cfg, features, train_users=users, progress=progress
            )
            scores[m] = out["p_yes"].to_numpy()
        n_targets = sum(max(cut[u] - 1, 0) for u in users)
        for m in methods:
            a = auc_with_ci(y, scores[m], n_boot=n_boot, seed=cfg.seed)
            rows.append(
                {
                    "method": m,
                    "label": label(m),
                    "fraction": frac,
                    "n_train_users": len(users),
                    "n_train_targets": n_targets,
                    "auc": a["auc"],
                    "ci_low": a["ci_low"],
                    "ci_high": a["ci_high"],
                    "n": a["n"],
                }
            )
    return pd.DataFrame(rows)


def run_data_efficiency(
    cfg,
    paths,
    tables,
    eval_examples: pd.DataFrame,
    *,
    methods: Sequence[str] = DEFAULT_EFFICIENCY_METHODS,
    encoder=None,
) -> pd.DataFrame:
    """:func:`data_efficiency` of a run: RECPIE_FRACTIONS (percent), the RecPIE recommender's
    settings (RECPIE_*, also for SASRec so the two differ only by the texts), the hybrid's texts
    from RUN_DIR and BOOTSTRAP_SAMPLES resamples."""
    from rrlib.methods.recpie import hybrid_config, run_features

    text_methods = [m for m in methods if m in VARIANTS]
    feats = run_features(text_methods, tables, cfg, paths, encoder=encoder) if text_methods else {}
    distinct = {id(f) for f in feats.values()}
    if len(distinct) > 1:
        raise MethodError(f"data_efficiency: {text_methods} read different user texts; pass methods with one source.")
    features = next(iter(feats.values())) if feats else TextFeatures.empty()
    return data_efficiency(
        tables.interactions,
        tables.examples,
        eval_examples,
        fractions=[f / 100 for f in cfg.recpie.recpie_fractions],
        features=features,
        cfg=hybrid_config(cfg),
        methods=methods,
        n_boot=cfg.evaluate.bootstrap_samples,
    )


def plot_data_efficiency(table: pd.DataFrame, path=None, title: str = "Data efficiency"):
    """AUC against the share of training users, one line per method with its bootstrap interval;
    saved to ``path`` when given. Returns a plain matplotlib Figure."""
    from matplotlib.figure import Figure

    need = {"method", "fraction", "auc", "ci_low", "ci_high"}
    if not need <= set(table.columns):
        raise DataError(
            f"plot_data_efficiency: the table lacks {sorted(need - set(table.columns))} "
            f"(build it with data_efficiency)."
        )
    fig = Figure(figsize=(6.4, 4))
    ax = fig.subplots()
    for m, g in table.groupby("method", sort=False):
        g = g.sort_values("fraction")
        x = 100 * g["fraction"].to_numpy()
        ax.plot(x, g["auc"], marker="o", label=label(str(m)))
        ax.fill_between(x, g["ci_low"], g["ci_high"], alpha=0.12)
    ax.set(xlabel="training users (%)", ylabel="test AUC", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    if path is not None:
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


__all__ = [
    "DEFAULT_EFFICIENCY_METHODS",
    "data_efficiency",
    "nested_user_fractions",
    "plot_data_efficiency",
    "run_data_efficiency",
]
