"""AUC with bootstrap interval, the paired comparison with the strongest bias baseline, BERTScore
on the embedded MiniLM, the predictions contract, results tables and metrics.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from rrlib import predictions as pr
from rrlib.config.paths import RunPaths
from rrlib.evaluate import bertscore as bs
from rrlib.evaluate import metrics as me
from rrlib.evaluate import plots, tables
from rrlib.evaluate import results as rs
from rrlib.evaluate.metrics import _auc_rows


def _scores(n: int, seed: int = 0, signal: float = 1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = y * signal + rng.normal(size=n)
    return y, s


def test_auc_matches_sklearn_and_ci_contains_it():
    y, s = _scores(300)
    out = me.auc_with_ci(y, s, n_boot=500, seed=1)
    assert out["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert out["ci_low"] < out["auc"] < out["ci_high"]
    assert out["n"] == 300 and out["n_pos"] == int(y.sum()) and out["n_boot"] == 500


def test_vectorised_bootstrap_auc_equals_sklearn_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (20, 50))
    s = rng.integers(0, 4, (20, 50)).astype(float)  # many ties
    got = _auc_rows(y, s)
    want = [roc_auc_score(a, b) for a, b in zip(y, s)]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_bootstrap_is_reproducible_with_a_seed_and_changes_without():
    y, s = _scores(200, seed=5)
    a = me.auc_with_ci(y, s, n_boot=300, seed=7)
    b = me.auc_with_ci(y, s, n_boot=300, seed=7)
    c = me.auc_with_ci(y, s, n_boot=300, seed=8)
    assert (a["ci_low"], a["ci_high"]) == (b["ci_low"], b["ci_high"])
    assert (a["ci_low"], a["ci_high"]) != (c["ci_low"], c["ci_high"])


def test_ci_narrows_as_n_grows():
    widths = []
    for n in (50, 400, 3200):
        y, s = _scores(n, seed=11)
        out = me.auc_with_ci(y, s, n_boot=400, seed=0)
        widths.append(out["ci_high"] - out["ci_low"])
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < widths[0] / 4  # ~ 1/sqrt(n): 64x more data, about 8x narrower


def test_single_class_resamples_are_dropped_and_counted():
    y = np.array([1] * 9 + [0])
    s = np.linspace(0, 1, 10)
    out = me.auc_with_ci(y, s, n_boot=400, seed=0)
    # P(no negative in a resample of 10) = 0.9^10 ~ 35%
    assert 80 < out["n_boot_single_class"] < 200
    assert not np.isnan(out["ci_low"]) and out["ci_low"] <= out["auc"] <= out["ci_high"]


def test_auc_errors_name_the_problem():
    with pytest.raises(ValueError, match="all 3 labels are 1"):
        me.auc_with_ci([1, 1, 1], [0.1, 0.2, 0.3], n_boot=10, seed=0)
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        me.auc_with_ci([0, 1], [0.1, 0.2, 0.3], n_boot=10, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        me.auc_with_ci([0, 1], [0.1, float("nan")], n_boot=10, seed=0)
    out = me.auc_with_ci([0, 1, 1], [0.1, 0.5, 0.9], n_boot=0, seed=0)
    assert out["auc"] == 1.0 and np.isnan(out["ci_low"])


def _examples(n=6):
    return pd.DataFrame(
        {
            "example_id": [f"test:u{i}" for i in range(n)],
            "split": "test",
            "user_id": [f"u{i}" for i in range(n)],
            "target_item_id": "i1",
            "label": [i % 2 for i in range(n)],
        }
    )


def test_prediction_rows_and_checks():
    ex = _examples()
    rows = pr.like_rows("user_like_rate", 0, ex, np.linspace(0, 1, 6))
    assert list(rows.columns) == list(pr.PREDICTION_COLUMNS)
    assert rows["predicted_label"].tolist() == [0, 0, 0, 1, 1, 1] and set(rows["task"]) == {"like"}
    bad = rows.copy()
    bad.loc[2, "p_yes"] = 1.5
    with pytest.raises(ValueError, match="p_yes must be a number in \\[0, 1\\].*test:u2"):
        pr.check(bad, "x.parquet")
    with pytest.raises(ValueError, match="lacks column"):
        pr.check(rows.drop(columns=["format_ok"]), "x.parquet")
    with pytest.raises(ValueError, match="duplicate"):
        pr.check(pd.concat([rows, rows.iloc[:1]]), "x.parquet")
    other = pr.like_rows("item_like_rate", 0, ex, np.full(6, 0.3))
    merged = pr.merge(pr.merge(None, rows), other)
    again = pr.merge(merged, pr.like_rows("user_like_rate", 0, ex, np.full(6, 0.9)))
    assert len(again) == 12
    assert again[again["method"] == "user_like_rate"]["p_yes"].eq(0.9).all()
    # a second seed of the same method is its own block, never merged away
    seeded = pr.merge(again, pr.like_rows("user_like_rate", 0, ex, np.full(6, 0.1), seed=7))
    assert len(seeded) == 18 and sorted(set(seeded["seed"])) == [0, 7]


def test_rating_rows_check_and_threshold():
    ex = _examples().assign(target_rating=[1.0, 4.0, 2.0, 5.0, 3.0, 4.5])
    rows = pr.rating_rows("global_mean", 0, ex, [3.5] * 6, like_threshold=3.0, rating_argmax=[4.0] * 6)
    assert set(rows["task"]) == {"rating"} and rows["p_yes"].isna().all() and rows["predicted_label"].eq(1).all()
    assert rows["target_rating"].tolist() == [1.0, 4.0, 2.0, 5.0, 3.0, 4.5]
    bad = rows.copy()
    bad.loc[0, "predicted_rating"] = float("nan")
    with pytest.raises(ValueError, match="finite predicted_rating"):
        pr.check(bad)


def test_ranking_rows_sort_by_score_then_retriever_score():
    lists = pd.DataFrame(
        {
            "user_id": ["u1"] * 3 + ["u2"] * 2,
            "example_id": ["test:u1"] * 3 + ["test:u2"] * 2,
            "item_id": ["a", "b", "c", "a", "d"],
            "score": [4.0, 4.0, 5.0, 1.0, 2.0],
            "retriever_score": [0.1, 0.9, 0.0, 0.5, 0.5],
            "is_target": [False, True, False, True, False],
        }
    )
    ranked = pr.ranking_rows("exp3rt_rerank", 64, lists)
    u1 = ranked[ranked["user_id"] == "u1"].sort_values("rank")
    assert u1["item_id"].tolist() == ["c", "b", "a"]  # the tie at 4.0 goes to the better retriever score
    assert ranked.groupby("user_id")["rank"].min().eq(1).all()
    with pytest.raises(ValueError, match="twice"):
        pr.check_rankings(pd.concat([ranked, ranked.iloc[:1]]))


# ---------------------------------------------------------------------------------------
# Paired comparison with the strongest bias baseline
# ---------------------------------------------------------------------------------------
def test_paired_difference_detects_a_real_gain_and_not_a_fake_one():
    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 2, n)
    base = y * 0.8 + rng.normal(size=n)
    better = base + y * 0.8 + rng.normal(scale=0.3, size=n)  # strictly more signal
    same = base + rng.normal(scale=0.05, size=n)  # the baseline plus noise
    gain = me.paired_auc_difference(y, better, base, n_boot=500, seed=1)
    assert gain["delta_auc"] > 0 and gain["ci_low"] > 0 and gain["p_value"] < 0.01
    null = me.paired_auc_difference(y, same, base, n_boot=500, seed=1)
    assert null["ci_low"] < 0 < null["ci_high"] and null["p_value"] > 0.05
    # the paired interval is much narrower than the two separate intervals would suggest
    a, b = me.auc_with_ci(y, same, n_boot=500, seed=1), me.auc_with_ci(y, base, n_boot=500, seed=1)
    assert (null["ci_high"] - null["ci_low"]) < 0.5 * ((a["ci_high"] - a["ci_low"]) + (b["ci_high"] - b["ci_low"])) / 2
    # DeLong agrees with the bootstrap on which one is significant
    assert me.delong_auc_difference(y, better, base)["p_value"] < 0.01
    assert me.delong_auc_difference(y, same, base)["p_value"] > 0.05
    assert me.delong_auc_difference(y, better, base)["delta_auc"] == pytest.approx(gain["delta_auc"])


def test_paired_difference_refuses_mismatched_or_single_class_inputs():
    with pytest.raises(ValueError, match="same examples"):
        me.paired_auc_difference([0, 1], [0.1, 0.2], [0.3], n_boot=10, seed=0)
    with pytest.raises(ValueError, match="single class"):
        me.paired_auc_difference([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1], n_boot=10, seed=0)
    assert me.mean_sd([0.5]) == (0.5, pytest.approx(float("nan"), nan_ok=True), 1)
    m, sd, n = me.mean_sd([0.6, 0.8, float("nan")])
    assert (m, n) == (pytest.approx(0.7), 2) and sd == pytest.approx(np.std([0.6, 0.8], ddof=1))


def test_results_compare_every_method_with_the_strongest_bias_baseline(tmp_path):
    rng = np.random.default_rng(4)
    n = 300
    ex = pd.DataFrame(
        {
            "example_id": [f"test:u{i}" for i in range(n)],
            "split": "test",
            "user_id": [f"u{i}" for i in range(n)],
            "target_item_id": "i1",
            "label": rng.integers(0, 2, n),
        }
    )
    y = ex["label"].to_numpy()
    strong = 1 / (1 + np.exp(-(y * 1.5 + rng.normal(size=n))))
    weak = 1 / (1 + np.exp(-(y * 0.3 + rng.normal(size=n))))
    preds = pd.concat(
        [
            pr.like_rows("user_like_rate", 0, ex, strong),
            pr.like_rows("item_like_rate", 0, ex, weak),
            pr.like_rows("tallrec", 64, ex, 1 / (1 + np.exp(-(y * 3 + rng.normal(size=n)))), seed=1),
            pr.like_rows("tallrec", 64, ex, 1 / (1 + np.exp(-(y * 3 + rng.normal(size=n)))), seed=2),
            pr.like_rows("sasrec", 0, ex, weak),
        ],
        ignore_index=True,
    )
    results, _ = rs.score_predictions(
        preds, {}, dataset="toy", n_boot=300, seed=0, bertscore_model="embedded", bertscore_layers=6, progress=False
    )
    by = {(r.method, r.seed): r for r in results.itertuples()}
    assert set(results["reference"]) == {"user_like_rate"}  # the strongest bias baseline on these examples
    assert np.isnan(by[("user_like_rate", 0)].delta_auc)
    assert by[("tallrec", 1)].delta_ci_low > 0 and by[("tallrec", 2)].delta_ci_low > 0
    assert by[("sasrec", 0)].delta_ci_high < 0 and by[("item_like_rate", 0)].delta_auc < 0
    assert (results["n_neg"] == int((y == 0).sum())).all()
    assert results["method"].tolist()[:2] == ["user_like_rate", "item_like_rate"]  # registry order
    summary = rs.seed_summary(results)
    tall = summary.set_index("method").loc["tallrec"]
    assert tall["n_seeds"] == 2 and tall["seeds_above_baseline"] == 2 and tall["auc_sd"] > 0
    md = tables.results_markdown(results, summary)
    assert "Δ AUC vs User like-rate" in md and "✓" in md and "✗" in md and "mean ± sd" in md
    assert "n (dislikes)" in md


@pytest.mark.slow
def test_bertscore_embedded_minilm():
    cands = [
        "The user enjoys gentle moisturisers, so she will like this hydrating cream.",
        "The user enjoys gentle moisturisers, so she will like this hydrating cream.",
        "Quarterly revenue of the steel mill fell after the strike.",
        "",
        "   ",
    ]
    refs = [
        "The user enjoys gentle moisturisers, so she will like this hydrating cream.",
        "She prefers mild hydrating products and this cream fits her taste.",
        "The user enjoys gentle moisturisers, so she will like this hydrating cream.",
        "Some reference.",
        "Another reference.",
    ]
    f1 = bs.bertscore_f1(cands, refs, "embedded", 6)
    assert f1[0] == pytest.approx(1.0, abs=1e-4)
    assert f1[0] > f1[1] > f1[2]  # paraphrase above an unrelated sentence
    assert f1[3] == 0.0 and f1[4] == 0.0  # empty candidates score 0
    with pytest.raises(ValueError, match="has 6 layers"):
        bs.bertscore_f1(["a b"], ["a b"], "embedded", 9)
    with pytest.raises(ValueError, match="reference #0"):
        bs.bertscore_f1(["a"], [""], "embedded", 6)
    assert "all-MiniLM-L6-v2" in bs.bertscore_backbone("embedded", 6) and "layer 6" in bs.bertscore_backbone(
        "embedded", 6
    )


@pytest.mark.slow
def test_score_predictions_tables_plots_and_metrics(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    ex = pd.DataFrame(
        {
            "example_id": [f"test:u{i}" for i in range(n)],
            "split": "test",
            "user_id": [f"u{i}" for i in range(n)],
            "target_item_id": "i1",
            "label": rng.integers(0, 2, n),
        }
    )
    ex.loc[:1, "label"] = [0, 1]
    refs = {e: f"reference reasoning number {i} about a moisturiser" for i, e in enumerate(ex["example_id"])}
    reasoning = [refs[e] if i % 3 else "" for i, e in enumerate(ex["example_id"])]
    refs.pop("test:u5")  # one example without ground truth: counted in the note
    preds = pd.concat(
        [
            pr.like_rows(
                "reasoningrec",
                64,
                ex,
                np.clip(ex["label"] * 0.5 + rng.random(n) * 0.5, 0, 1),
                reasoning=reasoning,
                generated_text=reasoning,
                format_ok=[i != 3 for i in range(n)],
            ),
            pr.like_rows("user_like_rate", 0, ex, rng.random(n)),
        ],
        ignore_index=True,
    )
    results, per = rs.score_predictions(
        preds,
        {"full": refs},
        dataset="embedded_beauty",
        n_boot=200,
        seed=0,
        bertscore_model="embedded",
        bertscore_layers=6,
        progress=False,
    )
    rr = results.set_index("method").loc["reasoningrec"]
    assert rr["n"] == n and rr["format_errors"] == 1 and rr["bertscore_n"] == n - 1
    assert rr["bertscore_empty"] == sum(1 for i in range(n) if i % 3 == 0 and i != 5)
    assert "all-MiniLM-L6-v2" in rr["bertscore_backbone"] and "1 of 40 examples have no" in rr["note"]
    assert rr["auc_ci_low"] <= rr["auc"] <= rr["auc_ci_high"]
    assert rr["reference"] == "user_like_rate" and not np.isnan(rr["delta_auc"])
    ulr = results.set_index("method").loc["user_like_rate"]
    assert np.isnan(ulr["bertscore_f1"]) and ulr["bertscore_backbone"] == ""
    assert len(per) == n - 1 and per["bertscore_f1"].between(0, 1.0001).all()

    summary = rs.seed_summary(results)
    files = tables.save_tables(results, summary, tmp_path)
    md = files["results_md"].read_text()
    assert "ReasoningRec" in md and "[" in md and "BERTScore backbone" in md
    paper = pd.read_csv(files["paper_table_csv"])
    assert list(paper.columns) == [
        "Model",
        "K",
        "embedded_beauty AUC",
        "embedded_beauty Δ vs bias",
        "embedded_beauty BERTScore",
    ]
    assert paper["Model"].tolist() == ["User like-rate", "ReasoningRec"]  # the registry's row order
    paths = plots.plot_paths(tmp_path)
    plots.plot_auc_vs_k(results, paths["auc_vs_k"])
    plots.plot_roc_curves(preds, paths["roc"])
    plots.plot_bertscore_distribution(per, paths["bertscore"])
    plots.plot_paired_differences(results, paths["paired"])
    assert all(paths[k].stat().st_size > 1000 for k in ("auc_vs_k", "roc", "bertscore", "paired"))

    metrics = rs.metrics_dict(
        results,
        summary,
        n_boot=200,
        seed=0,
        seeds=[0],
        bertscore_backbone_name=rr["bertscore_backbone"],
        test_examples=ex,
    )
    run = RunPaths.of(tmp_path / "run")
    rs.write_run_metrics(run, metrics, {"DATASET": "embedded_beauty", "SEED": 0})
    loaded = json.loads((run.evaluate / "metrics.json").read_text())
    assert loaded["auc"]["reasoningrec@K64"] == pytest.approx(rr["auc"])
    assert loaded["n_test"] == n and loaded["n_test_dislikes"] == int((ex["label"] == 0).sum())
    assert loaded["strongest_bias_baseline"] == "user_like_rate"
    final = json.loads(run.metrics.read_text())
    assert set(final["metrics"]) == set(rs.METRICS_KEYS) - {"results", "summary"}
    with pytest.raises(ValueError, match="lack key"):
        rs.write_run_metrics(run, {"auc": {}}, {})
