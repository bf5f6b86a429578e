"""scripts/learning_study.py: the bias reference is chosen on validation and read on test in the
test's order; the curve and summary rows count updates from epoch 0."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
from sklearn.metrics import roc_auc_score
from test_baselines import examples_from, synthetic_bias

from rrlib.methods.bias import bias_baselines

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "learning_study.py"


def _script():
    spec = importlib.util.spec_from_file_location("learning_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bias_reference_is_chosen_on_validation_and_aligned_with_test():
    ls = _script()
    inter = synthetic_bias(n_users=300, seed=3)
    ex = examples_from(inter)
    tables = SimpleNamespace(interactions=inter, examples=ex)
    test = ex[ex["split"] == "test"].sample(frac=1.0, random_state=0)  # an order of its own
    name, p_yes = ls.bias_reference(tables, test, seed=0)

    valid = ex[ex["split"] == "valid"]
    on_valid, _ = bias_baselines(inter, ex, valid, seed=0)
    valid_auc = {m: roc_auc_score(g["label"], g["p_yes"]) for m, g in on_valid.groupby("method")}
    assert name == max(valid_auc, key=valid_auc.get)
    assert list(p_yes.index) == test["example_id"].tolist()
    on_test, _ = bias_baselines(inter, ex, test, seed=0, methods=[name])
    expected = on_test.set_index("example_id")["p_yes"]
    pd.testing.assert_series_equal(p_yes, expected.loc[test["example_id"]])


def test_curve_and_summary_rows_start_at_update_zero():
    ls = _script()
    row = {"name": "r", "method": "tallrec", "params": {"TRAIN_KSHOTS": [4], "MAX_EPOCHS": 3}}
    summary = {
        "updates_per_epoch": 4,
        "global_step": 10,  # early stop inside epoch 3
        "valid_auc": [0.4, 0.55, 0.6, 0.58],
        "n_train": 4,
        "n_valid_eval": 20,
        "best_valid_auc": 0.6,
        "best_epoch": 2,
        "best_step": 8,
        "train_seconds": 20.0,
        "tokens_per_s": 100.0,
    }
    curve = ls.curve_rows(row, summary)
    assert [c["updates"] for c in curve] == [0, 4, 8, 10]
    assert [c["valid_auc"] for c in curve] == summary["valid_auc"]
    out = ls.summary_row(row, summary)
    assert out["auc_epoch0"] == 0.4 and out["best_updates"] == 8 and out["s_per_update"] == 2.0
    assert out["settings"] == "TRAIN_KSHOTS=[4], MAX_EPOCHS=3"
