"""AUC with bootstrap interval, BERTScore on the embedded MiniLM, results table and metrics."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from rrlib import evaluate as ev
from rrlib import tables


def _scores(n: int, seed: int = 0, signal: float = 1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = y * signal + rng.normal(size=n)
    return y, s


def test_auc_matches_sklearn_and_ci_contains_it():
    y, s = _scores(300)
    out = ev.auc_with_ci(y, s, n_boot=500, seed=1)
    assert out["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert out["ci_low"] < out["auc"] < out["ci_high"]
    assert out["n"] == 300 and out["n_pos"] == int(y.sum()) and out["n_boot"] == 500


def test_vectorised_bootstrap_auc_equals_sklearn_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (20, 50))
    s = rng.integers(0, 4, (20, 50)).astype(float)  # many ties
    got = ev._auc_rows(y, s)
    want = [roc_auc_score(a, b) for a, b in zip(y, s)]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_bootstrap_is_reproducible_with_a_seed_and_changes_without():
    y, s = _scores(200, seed=5)
    a = ev.auc_with_ci(y, s, n_boot=300, seed=7)
    b = ev.auc_with_ci(y, s, n_boot=300, seed=7)
    c = ev.auc_with_ci(y, s, n_boot=300, seed=8)
    assert (a["ci_low"], a["ci_high"]) == (b["ci_low"], b["ci_high"])
    assert (a["ci_low"], a["ci_high"]) != (c["ci_low"], c["ci_high"])


def test_ci_narrows_as_n_grows():
    widths = []
    for n in (50, 400, 3200):
        y, s = _scores(n, seed=11)
        out = ev.auc_with_ci(y, s, n_boot=400, seed=0)
        widths.append(out["ci_high"] - out["ci_low"])
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < widths[0] / 4  # ~ 1/sqrt(n): 64x more data, about 8x narrower


def test_single_class_resamples_are_dropped_and_counted():
    y = np.array([1] * 9 + [0])
    s = np.linspace(0, 1, 10)
    out = ev.auc_with_ci(y, s, n_boot=400, seed=0)
    # P(no negative in a resample of 10) = 0.9^10 ~ 35%
    assert 80 < out["n_boot_single_class"] < 200
    assert not np.isnan(out["ci_low"]) and out["ci_low"] <= out["auc"] <= out["ci_high"]


def test_auc_errors_name_the_problem():
    with pytest.raises(ValueError, match="all 3 labels are 1"):
        ev.auc_with_ci([1, 1, 1], [0.1, 0.2, 0.3], n_boot=10, seed=0)
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        ev.auc_with_ci([0, 1], [0.1, 0.2, 0.3], n_boot=10, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        ev.auc_with_ci([0, 1], [0.1, float("nan")], n_boot=10, seed=0)
    out = ev.auc_with_ci([0, 1, 1], [0.1, 0.5, 0.9], n_boot=0, seed=0)
    assert out["auc"] == 1.0 and np.isnan(out["ci_low"])


def _examples(n=6):
    return pd.DataFrame({"example_id": [f"test:u{i}" for i in range(n)], "split": "test",
                         "user_id": [f"u{i}" for i in range(n)], "target_item_id": "i1",
                         "label": [i % 2 for i in range(n)]})


def test_prediction_rows_and_checks():
    ex = _examples()
    rows = ev.prediction_rows("user_like_rate", 0, ex, np.linspace(0, 1, 6))
    assert list(rows.columns) == list(ev.PREDICTION_COLUMNS)
    assert rows["predicted_label"].tolist() == [0, 0, 0, 1, 1, 1]
    bad = rows.copy()
    bad.loc[2, "p_yes"] = 1.5
    with pytest.raises(ValueError, match="p_yes must be a number in \\[0, 1\\].*test:u2"):
        ev.check_predictions(bad, "x.parquet")
    with pytest.raises(ValueError, match="lacks column"):
        ev.check_predictions(rows.drop(columns=["format_ok"]), "x.parquet")
    with pytest.raises(ValueError, match="duplicate"):
        ev.check_predictions(pd.concat([rows, rows.iloc[:1]]), "x.parquet")
    other = ev.prediction_rows("item_like_rate", 0, ex, np.full(6, 0.3))
    merged = ev.merge_predictions(ev.merge_predictions(None, rows), other)
    again = ev.merge_predictions(merged, ev.prediction_rows("user_like_rate", 0, ex, np.full(6, 0.9)))
    assert len(again) == 12
    assert again[again["method"] == "user_like_rate"]["p_yes"].eq(0.9).all()


@pytest.mark.slow
def test_bertscore_embedded_minilm():
    cands = ["The user enjoys gentle moisturisers, so she will like this hydrating cream.",
             "The user enjoys gentle moisturisers, so she will like this hydrating cream.",
             "Quarterly revenue of the steel mill fell after the strike.", "", "   "]
    refs = ["The user enjoys gentle moisturisers, so she will like this hydrating cream.",
            "She prefers mild hydrating products and this cream fits her taste.",
            "The user enjoys gentle moisturisers, so she will like this hydrating cream.",
            "Some reference.", "Another reference."]
    f1 = ev.bertscore_f1(cands, refs, "embedded", 6)
    assert f1[0] == pytest.approx(1.0, abs=1e-4)
    assert f1[0] > f1[1] > f1[2]          # paraphrase above an unrelated sentence
    assert f1[3] == 0.0 and f1[4] == 0.0  # empty candidates score 0
    with pytest.raises(ValueError, match="has 6 layers"):
        ev.bertscore_f1(["a b"], ["a b"], "embedded", 9)
    with pytest.raises(ValueError, match="reference #0"):
        ev.bertscore_f1(["a"], [""], "embedded", 6)
    assert "all-MiniLM-L6-v2" in ev.bertscore_backbone("embedded", 6) and "layer 6" in ev.bertscore_backbone(
        "embedded", 6)


@pytest.mark.slow
def test_score_predictions_tables_plots_and_metrics(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    ex = pd.DataFrame({"example_id": [f"test:u{i}" for i in range(n)], "split": "test",
                       "user_id": [f"u{i}" for i in range(n)], "target_item_id": "i1",
                       "label": rng.integers(0, 2, n)})
    ex.loc[:1, "label"] = [0, 1]
    refs = {e: f"reference reasoning number {i} about a moisturiser" for i, e in enumerate(ex["example_id"])}
    reasoning = [refs[e] if i % 3 else "" for i, e in enumerate(ex["example_id"])]
    refs.pop("test:u5")  # one example without ground truth: counted in the note
    preds = pd.concat([
        ev.prediction_rows("reasoningrec", 64, ex, np.clip(ex["label"] * 0.5 + rng.random(n) * 0.5, 0, 1),
                           reasoning=reasoning, generated_text=reasoning,
                           format_ok=[i != 3 for i in range(n)]),
        ev.prediction_rows("user_like_rate", 0, ex, rng.random(n)),
    ], ignore_index=True)
    results, per = ev.score_predictions(preds, refs, dataset="embedded_beauty", n_boot=200, seed=0,
                                        bertscore_model="embedded", bertscore_layers=6, progress=False)
    rr = results.set_index("method").loc["reasoningrec"]
    assert rr["n"] == n and rr["format_errors"] == 1 and rr["bertscore_n"] == n - 1
    assert rr["bertscore_empty"] == sum(1 for i in range(n) if i % 3 == 0 and i != 5)
    assert "all-MiniLM-L6-v2" in rr["bertscore_backbone"] and "1 of 40 examples have no" in rr["note"]
    assert rr["auc_ci_low"] <= rr["auc"] <= rr["auc_ci_high"]
    ulr = results.set_index("method").loc["user_like_rate"]
    assert np.isnan(ulr["bertscore_f1"]) and ulr["bertscore_backbone"] == ""
    assert len(per) == n - 1 and per["bertscore_f1"].between(0, 1.0001).all()

    files = tables.save_tables(results, tmp_path)
    md = files["results_md"].read_text()
    assert "reasoningrec" in md and "[" in md and "BERTScore backbone" in md
    paper = pd.read_csv(files["paper_table_csv"])
    assert list(paper.columns) == ["Model", "K", "embedded_beauty AUC", "embedded_beauty BERTScore"]
    assert paper["Model"].tolist() == ["User like-rate", "ReasoningRec"]  # paper's row order
    plots = tables.plot_paths(tmp_path)
    tables.plot_auc_vs_k(results, plots["auc_vs_k"])
    tables.plot_roc_curves(preds, plots["roc"])
    tables.plot_bertscore_distribution(per, plots["bertscore"])
    assert all(plots[k].stat().st_size > 1000 for k in ("auc_vs_k", "roc", "bertscore"))

    metrics = ev.metrics_dict(results, n_boot=200, seed=0, bertscore_backbone_name=rr["bertscore_backbone"],
                              test_example_ids=ex["example_id"].tolist())
    path = ev.write_json_atomic(tmp_path / "metrics.json", metrics)
    loaded = json.loads(path.read_text())
    assert loaded["auc"]["reasoningrec@K64"] == pytest.approx(rr["auc"])
    assert loaded["n_test"] == n
    run_metrics = tmp_path / "run_metrics.json"
    run_metrics.write_text(json.dumps({"01_data_prep": {"n_users": 3}}))
    ev.merge_run_metrics(run_metrics, "06_evaluate", {"best_method": loaded["best_method"]})
    merged = json.loads(run_metrics.read_text())
    assert merged["01_data_prep"] == {"n_users": 3} and "best_method" in merged["06_evaluate"]
