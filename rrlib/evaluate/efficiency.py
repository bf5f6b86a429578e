"""Data efficiency (RecPIE's claim that text lets a recommender match the best baseline with a
fraction of the data): train the bias baselines, SASRec and RecPIE variants on nested, seeded
fractions of the training users and score them all on the same evaluation examples.

Paired over seeds (issue 20): each seed draws its own nested fractions and trains every method
with that seed; every method is scored on the same examples (all test users where the
recommenders are cheap, RECPIE_EFFICIENCY_TEST), so two methods' curves differ by the method
alone. Per (method, fraction): the AUC averaged over the seeds, its sd over seeds, a bootstrap
interval over examples of that seed-mean, and the paired difference with a reference method at
the same fraction (default SASRec: the hybrid without its texts), each resample drawing the same
examples for both methods and every seed. Early stopping reads only the validation targets of the
fraction's own users (a smaller fraction has fewer of them, as it would in practice)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rrlib.data.schema import eval_subset
from rrlib.data.sequences import training_cutoffs, user_sequences
from rrlib.errors import DataError, MethodError, ParamError
from rrlib.evaluate.metrics import _auc_rows
from rrlib.methods.bias import BIAS_METHODS, bias_baselines
from rrlib.methods.recpie import VARIANTS, TextFeatures, TextSequenceData, hybrid_config, run_features, train_hybrid
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

EFFICIENCY_COLUMNS = [
    "method",
    "label",
    "fraction",
    "n_seeds",
    "n_train_users",
    "n_train_targets",
    "n_valid",
    "auc",
    "auc_sd",
    "ci_low",
    "ci_high",
    "n",
    "reference",
    "delta_auc",
    "delta_ci_low",
    "delta_ci_high",
    "delta_p",
]


def _boot_seed_mean(
    y: np.ndarray, runs: Sequence[np.ndarray], idx_chunks: Sequence[np.ndarray], base: Sequence[np.ndarray] = ()
) -> np.ndarray:
    """Per bootstrap resample: the mean over seeds of AUC(runs[s]) (minus AUC(base[s]) when given)."""
    out = []
    for idx in idx_chunks:
        v = np.mean([_auc_rows(y[idx], r[idx]) for r in runs], axis=0)
        if len(base):
            v = v - np.mean([_auc_rows(y[idx], b[idx]) for b in base], axis=0)
        out.append(v)
    return np.concatenate(out) if out else np.zeros(0)


def _fit_fraction(
    interactions: pd.DataFrame,
    examples: pd.DataFrame,
    eval_examples: pd.DataFrame,
    users: Sequence[str],
    methods: Sequence[str],
    features: TextFeatures,
    cfg: SeqConfig,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Each method's scores of ``eval_examples``, trained on ``users`` only and early-stopped on
    those users' validation targets."""
    keep = set(users)
    ex_sub = examples[examples["user_id"].astype(str).isin(keep)]
    if ex_sub[ex_sub["split"] == "valid"].empty:
        raise DataError("data_efficiency: a fraction's users hold no validation target for early stopping.")
    scores: dict[str, np.ndarray] = {}
    bias = [m for m in methods if m in BIAS_METHODS]
    if bias:
        inter_sub = interactions[interactions["user_id"].astype(str).isin(keep)]
        out, _ = bias_baselines(inter_sub, ex_sub, eval_examples, seed=cfg.seed, methods=bias)
        for m in bias:
            scores[m] = out[out["method"] == m]["p_yes"].to_numpy()
    if "sasrec" in methods:
        out, _ = train_sequential(
            "sasrec", interactions, ex_sub, eval_examples, cfg, progress=progress, train_users=users
        )
        scores["sasrec"] = out["p_yes"].to_numpy()
    for m in (m for m in methods if m in VARIANTS):
        out, _ = train_hybrid(
            m, interactions, ex_sub, eval_examples, cfg, features, train_users=users, progress=progress
        )
        scores[m] = out["p_yes"].to_numpy()
    return scores


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
    seeds: Sequence[int] | None = None,
    reference: str | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """AUC of each method trained on nested, seeded fractions of the training users, over
    ``seeds`` (default: ``cfg.seed`` alone), all scored on the same ``eval_examples``. Users left
    out contribute no training target (and no item statistics) but their histories still feed
    their own evaluation targets; early stopping reads the validation targets of the fraction's
    users only. ``reference`` (default: sasrec when trained, else the first method): the method
    every other is paired with at the same fraction. Returns one row per (method, fraction)
    (:data:`EFFICIENCY_COLUMNS`); ``attrs["per_seed"]`` holds one row per (method, fraction, seed)."""
    unknown = [m for m in methods if m not in BIAS_METHODS and m != "sasrec" and m not in VARIANTS]
    if unknown:
        raise MethodError(
            f"data_efficiency: cannot train {unknown}; choose from bias baselines {list(BIAS_METHODS)}, "
            f"sasrec and {list(VARIANTS)}."
        )
    seeds = [int(cfg.seed)] if not seeds else [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ParamError(f"data_efficiency: seeds {seeds} repeat.")
    reference = reference or ("sasrec" if "sasrec" in methods else methods[0])
    if reference not in methods:
        raise MethodError(f"data_efficiency: reference {reference!r} is not among the methods {list(methods)}.")
    cut = training_cutoffs(user_sequences(interactions))
    pool = [u for u, c in cut.items() if c > 1]
    y = eval_examples["label"].to_numpy(dtype=int)
    if len(set(y.tolist())) < 2:
        raise DataError("data_efficiency: the evaluation examples hold a single class; AUC is undefined.")
    valid_users = set(examples.loc[examples["split"] == "valid", "user_id"].astype(str))
    runs: dict[tuple[str, float], list[np.ndarray]] = {}
    per_seed: list[dict[str, Any]] = []
    sizes: dict[float, list[tuple[int, int, int]]] = {}
    for s in seeds:
        subsets = nested_user_fractions(pool, fractions, s)
        for frac, users in subsets.items():
            scores = _fit_fraction(
                interactions, examples, eval_examples, users, methods, features, replace(cfg, seed=s), progress
            )
            n_targets = sum(max(cut[u] - 1, 0) for u in users)
            n_valid = len(valid_users & set(users))
            sizes.setdefault(frac, []).append((len(users), n_targets, n_valid))
            for m in methods:
                runs.setdefault((m, frac), []).append(scores[m])
                auc = float(_auc_rows(y[None, :], scores[m][None, :])[0])
                per_seed.append(
                    {
                        "method": m,
                        "fraction": frac,
                        "seed": s,
                        "n_train_users": len(users),
                        "n_valid": n_valid,
                        "auc": auc,
                    }
                )
    rng = np.random.default_rng(int(cfg.seed))
    chunk = max(1, 2_000_000 // max(len(y), 1))
    idx_chunks = [
        rng.integers(0, len(y), size=(min(chunk, n_boot - start), len(y))) for start in range(0, max(n_boot, 0), chunk)
    ]
    rows = []
    for (m, frac), scored in runs.items():
        aucs = [float(_auc_rows(y[None, :], r[None, :])[0]) for r in scored]
        mean_users, mean_targets, mean_valid = (float(np.mean(v)) for v in zip(*sizes[frac]))
        mean_auc = float(np.mean(aucs))
        row: dict[str, Any] = {
            "method": m,
            "label": label(m),
            "fraction": frac,
            "n_seeds": len(scored),
            "n_train_users": mean_users,
            "n_train_targets": mean_targets,
            "n_valid": mean_valid,
            "auc": mean_auc,
            "auc_sd": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
            "n": len(y),
            "reference": reference,
            "delta_auc": math.nan,
            "delta_ci_low": math.nan,
            "delta_ci_high": math.nan,
            "delta_p": math.nan,
        }
        if idx_chunks:
            boot = _boot_seed_mean(y, scored, idx_chunks)
            boot = boot[~np.isnan(boot)]
            if len(boot):
                row["ci_low"], row["ci_high"] = (float(v) for v in np.quantile(boot, [0.025, 0.975]))
        if m != reference:
            base = runs[(reference, frac)]
            row["delta_auc"] = mean_auc - float(np.mean([_auc_rows(y[None, :], b[None, :])[0] for b in base]))
            if idx_chunks:
                d = _boot_seed_mean(y, scored, idx_chunks, base)
                d = d[~np.isnan(d)]
                if len(d):
                    row["delta_ci_low"], row["delta_ci_high"] = (float(v) for v in np.quantile(d, [0.025, 0.975]))
                    row["delta_p"] = min(1.0, 2 * min(float(np.mean(d <= 0)), float(np.mean(d >= 0))))
        rows.append(row)
    out = pd.DataFrame(rows, columns=EFFICIENCY_COLUMNS)
    out.attrs["per_seed"] = pd.DataFrame(per_seed)
    return out


def efficiency_examples(tables, cfg) -> pd.DataFrame:
    """The examples the curves are scored on: every test example (RECPIE_EFFICIENCY_TEST 'all',
    the recommenders being cheap) or the N_TEST subsample ('subsample')."""

    n = 0 if cfg.recpie.recpie_efficiency_test == "all" else cfg.data.n_test
    return eval_subset(tables.examples, "test", n)


def run_data_efficiency(
    cfg,
    paths,
    tables,
    eval_examples: pd.DataFrame | None = None,
    *,
    methods: Sequence[str] = DEFAULT_EFFICIENCY_METHODS,
    encoder=None,
) -> pd.DataFrame:
    """:func:`data_efficiency` of a run: RECPIE_FRACTIONS (percent), RECPIE_EFFICIENCY_SEEDS seeds
    (SEED, SEED + 1, ...), the RecPIE recommender's settings (RECPIE_*, also for SASRec so the two
    differ only by the texts), the hybrid's texts from RUN_DIR, BOOTSTRAP_SAMPLES resamples, on
    ``eval_examples`` (default: :func:`efficiency_examples`). The table's attrs hold the per-seed
    rows and the text coverage of the examples (the hybrid's texts may cover fewer of them than
    the N_TEST subsample's)."""

    rc = cfg.recpie
    if eval_examples is None:
        eval_examples = efficiency_examples(tables, cfg)
    text_methods = [m for m in methods if m in VARIANTS]
    feats = run_features(text_methods, tables, cfg, paths, encoder=encoder) if text_methods else {}
    distinct = {id(f) for f in feats.values()}
    if len(distinct) > 1:
        raise MethodError(f"data_efficiency: {text_methods} read different user texts; pass methods with one source.")
    features = next(iter(feats.values())) if feats else TextFeatures.empty()
    seq_cfg = hybrid_config(cfg)
    table = data_efficiency(
        tables.interactions,
        tables.examples,
        eval_examples,
        fractions=[f / 100 for f in rc.recpie_fractions],
        features=features,
        cfg=seq_cfg,
        methods=methods,
        n_boot=cfg.evaluate.bootstrap_samples,
        seeds=[cfg.common.seed + i for i in range(rc.recpie_efficiency_seeds)],
    )
    if text_methods:
        data = TextSequenceData(tables.interactions, seq_cfg.max_len, features, use_user=True, use_item=True)
        table.attrs["text_coverage"] = data.text_coverage(*data.example_positions(eval_examples))
    return table


def plot_data_efficiency(table: pd.DataFrame, path=None, title: str = "Data efficiency"):
    """AUC against the share of training users, one line per method with its bootstrap interval
    (mean over seeds); with the paired columns of :func:`data_efficiency`, a second panel gives
    each method's paired difference with the reference at the same fraction. Saved to ``path``
    when given. Returns a plain matplotlib Figure."""
    need = {"method", "fraction", "auc", "ci_low", "ci_high"}
    if not need <= set(table.columns):
        raise DataError(
            f"plot_data_efficiency: the table lacks {sorted(need - set(table.columns))} "
            f"(build it with data_efficiency)."
        )
    paired = "delta_auc" in table.columns and table["delta_auc"].notna().any()
    fig = Figure(figsize=(11.5 if paired else 6.4, 4))
    made: Any = fig.subplots(1, 2 if paired else 1)
    axes = list(made) if paired else [made]
    ax = axes[0]
    seeds = int(table["n_seeds"].max()) if "n_seeds" in table.columns else 1
    for m, g in table.groupby("method", sort=False):
        g = g.sort_values("fraction")
        x = 100 * g["fraction"].to_numpy()
        ax.plot(x, g["auc"], marker="o", label=label(str(m)))
        ax.fill_between(x, g["ci_low"], g["ci_high"], alpha=0.12)
    ax.set(xlabel="training users (%)", ylabel=f"test AUC (mean of {seeds} seed(s))", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if paired:
        ref = str(table["reference"].dropna().iloc[0])
        dx = axes[1]
        for m, g in table[table["method"] != ref].groupby("method", sort=False):
            g = g.sort_values("fraction")
            x = 100 * g["fraction"].to_numpy()
            dx.plot(x, g["delta_auc"], marker="o", label=label(str(m)))
            dx.fill_between(x, g["delta_ci_low"], g["delta_ci_high"], alpha=0.12)
        dx.axhline(0, color="#777", lw=1, ls="--")
        dx.set(xlabel="training users (%)", ylabel=f"paired Δ AUC vs {label(ref)}", title="Paired difference (95% CI)")
        dx.grid(alpha=0.3)
        dx.legend(loc="best", fontsize=8)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def efficiency_view(table: pd.DataFrame) -> pd.DataFrame:
    """One row per method, one column per fraction: 'AUC [CI] (Δ vs reference [CI])'."""

    def cell(r) -> str:
        txt = f"{r['auc']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        if pd.notna(r.get("delta_auc")):
            txt += f"; Δ {r['delta_auc']:+.3f} [{r['delta_ci_low']:+.3f}, {r['delta_ci_high']:+.3f}]"
        return txt

    t = table.assign(cell=[cell(r) for r in table.to_dict("records")])
    out = t.pivot_table(index="label", columns="fraction", values="cell", aggfunc="first", sort=False)
    out.columns = [f"{100 * f:g}% users" for f in out.columns]
    return out


__all__ = [
    "DEFAULT_EFFICIENCY_METHODS",
    "EFFICIENCY_COLUMNS",
    "data_efficiency",
    "efficiency_examples",
    "efficiency_view",
    "nested_user_fractions",
    "plot_data_efficiency",
    "run_data_efficiency",
]
