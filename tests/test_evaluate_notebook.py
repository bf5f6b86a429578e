"""Notebook 07 runs headless (papermill, through the runner's smoke run) and leaves the
predictions, results table, plots, metrics JSON and results record it promises, for every
finetuned method, zero-shot method and baseline, all on the same test examples."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rrlib.config.params import COMMON, EVALUATE, SCHEMA, notebook_parameters
from rrlib.config.paths import PROJECT_ROOT, RunPaths

NOTEBOOK = PROJECT_ROOT / "notebooks" / "07_evaluate.ipynb"


def test_parameters_cell_declares_common_and_evaluate_with_schema_defaults():
    declared = notebook_parameters(NOTEBOOK)
    assert set(COMMON) | set(EVALUATE) <= set(declared)
    assert {"METHODS", "TRAIN_KSHOTS", "STUDENT_MODEL", "N_TEST"} <= set(declared)
    assert {k: v for k, v in declared.items() if v != SCHEMA[k].default} == {}


@pytest.mark.slow
def test_notebook_06_in_the_smoke_run(smoke_run):
    run_dir, manifest, _, _ = smoke_run
    params = manifest["params"]
    paths = RunPaths.of(run_dir, create=False)
    n_test = params["N_TEST"]

    preds = pd.read_parquet(paths.predictions)
    # ranking methods write rankings.parquet and ranking_results.csv instead (tests/test_exp3rt_pipeline.py)
    from rrlib.methods import registry

    methods = {m for m in set(params["EVAL_METHODS"]) | set(params["METHODS"]) if registry.get(m).task != "ranking"}
    assert set(preds["method"]) == methods
    finetuned = preds["method"].isin(params["METHODS"])
    assert set(preds.loc[finetuned, "k"]) == set(params["TRAIN_KSHOTS"]) and (preds.loc[~finetuned, "k"] == 0).all()
    assert (
        preds.groupby(["method", "k"])["example_id"].apply(lambda s: tuple(sorted(s))).nunique() == 1
    )  # same examples
    like = preds["task"] == "like"
    assert preds.loc[like, "p_yes"].between(0, 1).all()
    assert preds.loc[~like, "predicted_rating"].between(1, 5).all()  # rating methods (EXP3RT, rating baselines)
    results = pd.read_csv(paths.evaluate / "results.csv")
    assert set(results["method"]) == methods and (results["n"] == n_test).all()
    reasoning_methods = results[results["method"].isin(["reasoningrec", "zeroshot_reasoningrec"])]
    assert (reasoning_methods["bertscore_n"] > 0).all(), "no BERTScore for the reasoning methods"
    assert (results["auc_ci_low"] <= results["auc"]).all() and (results["auc"] <= results["auc_ci_high"]).all()
    for name in (
        "results.md",
        "paper_table.md",
        "paper_table.csv",
        "metrics.json",
        "plots/auc_vs_k.png",
        "plots/roc_curves.png",
        "plots/bertscore_distribution.png",
        "plots/sequential_training.png",
    ):
        assert (paths.evaluate / name).is_file(), name
    metrics = json.loads((paths.evaluate / "metrics.json").read_text())
    assert metrics["auc"]["user_like_rate@K0"] == pytest.approx(
        results.set_index("method").loc["user_like_rate", "auc"]
    )
    assert metrics["n_test"] == n_test and "all-MiniLM-L6-v2" in metrics["bertscore_backbone"]
    run_metrics = json.loads(paths.metrics.read_text())
    assert run_metrics["metrics"]["auc"] == metrics["auc"] and run_metrics["n_test"] == n_test
    records = sorted(paths.results.glob("07_evaluate-*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["seed"] == params["SEED"] and record["params"]["EVAL_METHODS"] == params["EVAL_METHODS"]
    assert record["environment"]["packages"]["torch"]
