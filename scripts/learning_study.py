#!/usr/bin/env python
"""The learning study: how validation AUC moves with optimizer updates, per training setting.

Each row of a grid (YAML: a list of {name, method, params}) finetunes one student on a run
whose notebooks 01 (and 05 for reasoning methods) have run, with the row's parameters layered
over the preset. Every row trains in its own run folder (the base run's data, enrichment and
reasoning linked in), so rows never share a checkpoint; the adapter store in CACHE_DIR makes a
rerun of a finished row free. Validation AUC is read before the first update (epoch 0, the base
model) and after every epoch, so the curve starts at update 0.

    python scripts/learning_study.py -f params/default.yaml --base-run outputs/study \\
        --grid docs/learning_study/grid.yaml --out docs/learning_study

Writes ``<out>/curves.csv`` (one row per row x validation point), ``<out>/summary.csv`` (one row
per grid row: best validation AUC, its epoch and updates, seconds per update) and
``<out>/curves.png``. Rows already in summary.csv are skipped (``--rerun`` to train again).

``--score-test`` then scores the kept adapter of every finished row, and the zero-shot form of its
method (the same prompt on the base model), on every test user (``--test-users N``: the stratified
subsample of N, for rows whose long prompts make 2 x 610 forward passes too dear), with the paired
AUC difference: ``<out>/test.csv``. The grid is chosen on validation; this is the one look at test.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd
import yaml
from matplotlib.figure import Figure

from rrlib.config.params import Config, add_parameter_arguments, load_params, parse_override
from rrlib.config.paths import RunPaths
from rrlib.data import domain_of, eval_subset, load_tables
from rrlib.evaluate.llm import predict_llm
from rrlib.evaluate.metrics import auc_with_ci, paired_auc_difference
from rrlib.evaluate.results import strongest_bias_baseline
from rrlib.finetune import train
from rrlib.methods.bias import bias_baselines
from rrlib.methods.registry import zero_shot_form
from rrlib.student.prompts import PromptContext

#: what a grid row links in from the base run (read only by training)
SHARED_FOLDERS = ("data", "enrich", "reasoning")


def row_run_dir(base: Path, out: Path, name: str) -> Path:
    """A run folder of its own for one grid row, with the base run's inputs linked in."""
    run = out / "runs" / name
    run.mkdir(parents=True, exist_ok=True)
    for folder in SHARED_FOLDERS:
        link = run / folder
        if not link.exists() and (base / folder).exists():
            link.symlink_to((base / folder).resolve(), target_is_directory=True)
    return run


def train_row(row: dict, files: list[str], overrides: dict, base: Path, out: Path) -> dict:
    """Finetune one grid row; returns its training summary."""
    run = row_run_dir(base, out, row["name"])
    layer = run / "row.yaml"  # the row's parameters as one more layer (checked together with the files)
    params = row.get("params", {})
    sizes = {"KSHOT_SIZES": params["TRAIN_KSHOTS"]} if "TRAIN_KSHOTS" in params else {}  # each layer is checked alone
    layer.write_text(yaml.safe_dump({**sizes, **params, "RUN_DIR": str(run)}))
    params = load_params([*files, str(layer)], overrides)
    cfg = Config(params)
    k = int(row["params"].get("TRAIN_KSHOTS", cfg.student.train_kshots)[0])
    paths = RunPaths.of(cfg.common.run_dir)
    ctx = PromptContext.from_run(paths, domain_of(params), row["method"])
    return train(row["method"], k, cfg, paths, ctx)


def curve_rows(row: dict, summary: dict) -> list[dict]:
    """One row per validation point: updates so far and validation AUC."""
    per_epoch = summary["updates_per_epoch"]
    return [
        {
            "name": row["name"],
            "method": row["method"],
            "epoch": e,
            "updates": min(e * per_epoch, summary["global_step"]),
            "valid_auc": auc,
        }
        for e, auc in enumerate(summary["valid_auc"])
    ]


def bias_reference(tables, test: pd.DataFrame, seed: int) -> tuple[str, pd.Series]:
    """The strongest bias baseline on every validation user, and its P(Yes) on ``test``: the
    reference a student must beat, chosen without looking at test."""
    valid = eval_subset(tables.examples, "valid", 0)
    on_valid, _ = bias_baselines(tables.interactions, tables.examples, valid, seed=seed)
    name, _ = strongest_bias_baseline(on_valid)
    on_test, _ = bias_baselines(tables.interactions, tables.examples, test, seed=seed, methods=[name])
    return name, on_test.set_index("example_id").loc[test["example_id"], "p_yes"]


def score_test(row: dict, files: list[str], overrides: dict, out: Path, n_test: int = 0) -> dict:
    """The row's kept adapter and its method's zero-shot form on the test users (``n_test``: the
    stratified prefix of that many, 0: every one), paired."""
    run = out / "runs" / row["name"]
    params = load_params([*files, str(run / "row.yaml")], overrides)
    cfg, paths = Config(params), RunPaths.of(run)
    tables = load_tables(paths)
    test = eval_subset(tables.examples, "test", n_test)
    method, k = row["method"], int(row["params"]["TRAIN_KSHOTS"][0])
    ctx = PromptContext.from_run(paths, domain_of(params), method)
    tuned = predict_llm(method, k, test, cfg, ctx, paths.adapter_dir(method, k), reasoning_ids=[])
    base_method = zero_shot_form(method)
    base = predict_llm(base_method, 0, test, cfg, ctx, None, reasoning_ids=[])
    tuned, base = (b.set_index("example_id").loc[test["example_id"]].reset_index() for b in (tuned, base))
    labels, n_boot, seed = tuned["label"], cfg.evaluate.bootstrap_samples, cfg.common.seed
    auc, base_auc = (auc_with_ci(labels, b["p_yes"], n_boot=n_boot, seed=seed) for b in (tuned, base))
    d = paired_auc_difference(labels, tuned["p_yes"], base["p_yes"], n_boot=n_boot, seed=seed)
    ref, ref_p = bias_reference(tables, test, seed)
    d_ref = paired_auc_difference(labels, tuned["p_yes"], ref_p.to_numpy(), n_boot=n_boot, seed=seed)
    per_user = tuned[["example_id", "user_id", "label", "p_yes"]].assign(
        p_yes_zero_shot=base["p_yes"].to_numpy(), p_yes_bias_reference=ref_p.to_numpy()
    )
    per_user.to_csv(run / "test_predictions.csv", index=False)  # per-sample log: rows compare pairwise later
    return {
        "name": row["name"],
        "method": method,
        "zero_shot_form": base_method,
        "n_test": len(test),
        "n_test_dislikes": int((labels == 0).sum()),
        "auc": auc["auc"],
        "auc_ci": f"[{auc['ci_low']:.3f}, {auc['ci_high']:.3f}]",
        "zero_shot_auc": base_auc["auc"],
        "zero_shot_auc_ci": f"[{base_auc['ci_low']:.3f}, {base_auc['ci_high']:.3f}]",
        "delta_auc": d["delta_auc"],
        "delta_ci": f"[{d['ci_low']:.3f}, {d['ci_high']:.3f}]",
        "delta_p": d["p_value"],
        "bias_reference": ref,  # chosen on every validation user
        "delta_vs_reference": d_ref["delta_auc"],
        "delta_vs_reference_ci": f"[{d_ref['ci_low']:.3f}, {d_ref['ci_high']:.3f}]",
    }


def summary_row(row: dict, summary: dict) -> dict:
    steps = max(summary["global_step"], 1)
    return {
        "name": row["name"],
        "method": row["method"],
        "settings": ", ".join(f"{k}={v}" for k, v in row.get("params", {}).items()),
        "n_train": summary["n_train"],
        "n_valid": summary["n_valid_eval"],
        "updates": summary["global_step"],
        "auc_epoch0": summary["valid_auc"][0],
        "best_valid_auc": summary["best_valid_auc"],
        "best_epoch": summary["best_epoch"],
        "best_updates": summary["best_step"],
        "s_per_update": summary["train_seconds"] / steps,
        "train_tokens_per_s": summary["tokens_per_s"],
    }


def plot(curves: pd.DataFrame, path: Path) -> None:
    methods = sorted(curves["method"].unique())
    fig = Figure(figsize=(6 * len(methods), 4.2))
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    for ax, method in zip(axes, methods):
        for name, c in curves[curves["method"] == method].groupby("name", sort=False):
            ax.plot(c["updates"], c["valid_auc"], marker="o", label=name)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set(title=method, xlabel="optimizer updates", ylabel="validation AUC")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_parameter_arguments(parser)
    parser.add_argument("--base-run", type=Path, required=True, help="run folder with notebooks 01-05 done")
    parser.add_argument("--grid", type=Path, required=True, help="YAML list of {name, method, params}")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", default="", help="comma-separated row names to run (default: all)")
    parser.add_argument("--rerun", action="store_true", help="train rows already in summary.csv again")
    parser.add_argument("--score-test", action="store_true", help="score finished rows on every test user")
    parser.add_argument(
        "--test-users", type=int, default=0, help="with --score-test: the stratified test subsample (0: every user)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    overrides = {name: parse_override(name, value) for name, value in args.overrides}
    grid = yaml.safe_load(args.grid.read_text())
    only = {n for n in args.only.split(",") if n}
    args.out.mkdir(parents=True, exist_ok=True)
    summary_path, curves_path = args.out / "summary.csv", args.out / "curves.csv"
    done = pd.read_csv(summary_path) if summary_path.exists() else pd.DataFrame(columns=["name"])
    curves = pd.read_csv(curves_path) if curves_path.exists() else pd.DataFrame(columns=["name"])
    for row in grid:
        if (only and row["name"] not in only) or (row["name"] in set(done["name"]) and not args.rerun):
            continue
        summary = train_row(row, args.files, overrides, args.base_run, args.out)
        done = pd.concat([done[done["name"] != row["name"]], pd.DataFrame([summary_row(row, summary)])])
        curves = pd.concat([curves[curves["name"] != row["name"]], pd.DataFrame(curve_rows(row, summary))])
        done.to_csv(summary_path, index=False)  # after every row: a crash loses only the row in flight
        curves.to_csv(curves_path, index=False)
        print(done.tail(1).to_string(index=False), flush=True)
    if not curves.empty:
        plot(curves, args.out / "curves.png")
    print(done.to_string(index=False))
    if args.score_test:
        finished = [r for r in grid if r["name"] in set(done["name"]) and (not only or r["name"] in only)]
        test = pd.DataFrame([score_test(r, args.files, overrides, args.out, args.test_users) for r in finished])
        test_path = args.out / "test.csv"
        if test_path.exists():  # rows scored earlier stay (a row scored again is replaced)
            earlier = pd.read_csv(test_path)
            test = pd.concat([earlier[~earlier["name"].isin(test["name"])], test], ignore_index=True)
        test.to_csv(test_path, index=False)
        print(test.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
