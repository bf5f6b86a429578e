"""Notebook 06 runs headless (papermill) on a small embedded slice and leaves the predictions,
results table, plots, metrics JSON and results record it promises."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from rrlib.artifacts import PROJECT_ROOT, RunPaths
from rrlib.params import COMMON, EVALUATE, SCHEMA, load_params, notebook_parameters

NOTEBOOK = PROJECT_ROOT / "notebooks" / "06_evaluate.ipynb"
#: the de-quantized embedded student, built once per machine and shared by test sessions
SHARED_CACHE = Path(tempfile.gettempdir()) / "rrlib-test-shared-cache"
# "Liked" is 5 stars here (LIKE_THRESHOLD 4) so that a dozen test users hold both labels.
SLICE = dict(MAX_USERS=60, LIKE_THRESHOLD=4.0, N_VALID=0, N_TEST=16, KSHOT_SIZES=[4], TRAIN_KSHOTS=[4],
             HISTORY_LEN=3, MAX_SEQ_LENGTH=512, PREDICT_BATCH_SIZE=8, SEED=7)
RUN = dict(METHODS=[], EVAL_METHODS=["zeroshot_vanilla", "user_like_rate", "item_like_rate", "bias_logreg",
                                     "sasrec", "caser"],
           SEQ_EPOCHS=4, BOOTSTRAP_SAMPLES=200)


def test_parameters_cell_declares_common_and_evaluate_with_schema_defaults():
    declared = notebook_parameters(NOTEBOOK)
    assert set(COMMON) | set(EVALUATE) <= set(declared)
    assert {"METHODS", "TRAIN_KSHOTS", "STUDENT_MODEL", "N_TEST"} <= set(declared)
    assert {k: v for k, v in declared.items() if v != SCHEMA[k].default} == {}


@pytest.mark.slow
def test_papermill_run_on_an_embedded_slice(tmp_path):
    import papermill as pm

    from rrlib.data import prepare
    from rrlib.llm.embedded import embedded_checkpoint

    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    shared = embedded_checkpoint(SHARED_CACHE)
    os.symlink(shared, cache / "models" / shared.name)
    paths = RunPaths.of(run_dir)
    prepare(load_params(overrides=dict(SLICE, RUN_DIR=str(run_dir), CACHE_DIR=str(cache))), paths)

    params = {k: v for k, v in {**SLICE, **RUN}.items() if k in notebook_parameters(NOTEBOOK)}
    params.update(RUN_DIR=str(run_dir), CACHE_DIR=str(cache))
    pm.execute_notebook(str(NOTEBOOK), str(tmp_path / "06_evaluate.ipynb"), kernel_name="rrlib",
                        cwd=str(PROJECT_ROOT), parameters=params, progress_bar=False)

    preds = pd.read_parquet(paths.predictions)
    methods = set(RUN["EVAL_METHODS"])
    assert set(preds["method"]) == methods and (preds["k"] == 0).all()
    assert preds.groupby("method")["example_id"].apply(lambda s: tuple(sorted(s))).nunique() == 1  # same examples
    assert len(preds) == len(methods) * SLICE["N_TEST"]
    results = pd.read_csv(paths.evaluate / "results.csv")
    assert set(results["method"]) == methods and (results["n"] == SLICE["N_TEST"]).all()
    assert (results["auc_ci_low"] <= results["auc"]).all() and (results["auc"] <= results["auc_ci_high"]).all()
    for name in ("results.md", "paper_table.md", "paper_table.csv", "metrics.json", "plots/auc_vs_k.png",
                 "plots/roc_curves.png", "plots/bertscore_distribution.png", "plots/sequential_training.png"):
        assert (paths.evaluate / name).is_file(), name
    metrics = json.loads((paths.evaluate / "metrics.json").read_text())
    assert metrics["auc"]["user_like_rate@K0"] == pytest.approx(
        results.set_index("method").loc["user_like_rate", "auc"])
    assert metrics["n_test"] == SLICE["N_TEST"] and "all-MiniLM-L6-v2" in metrics["bertscore_backbone"]
    run_metrics = json.loads(paths.metrics.read_text())
    assert run_metrics["06_evaluate"]["auc"] == metrics["auc"]
    records = sorted(paths.results.glob("06_evaluate-*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["seed"] == 7 and record["params"]["EVAL_METHODS"] == RUN["EVAL_METHODS"]
    assert record["environment"]["packages"]["torch"]
