"""Rating task: RMSE / MAE with bootstrap intervals and paired differences, the rating rows of the
results table, and the rating baselines (hand-computed values, agreement with scikit-surprise,
no leakage, early stopping, the embedded Beauty data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from rrlib import predictions as pr
from rrlib.errors import MethodError, PredictionsError
from rrlib.evaluate import rating as ra
from rrlib.evaluate import results as rs
from rrlib.evaluate import tables
from rrlib.methods import rating as rb
from rrlib.methods import registry


# ---------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------
def test_rmse_mae_hand_values_and_interval():
    out = ra.rmse_mae_with_ci([1, 2, 3, 4], [2, 2, 5, 4], n_boot=0, seed=0)
    assert out["rmse"] == pytest.approx(np.sqrt((1 + 0 + 4 + 0) / 4))
    assert out["mae"] == pytest.approx(3 / 4) and np.isnan(out["rmse_ci_low"])
    rng = np.random.default_rng(0)
    t = rng.integers(1, 6, 500).astype(float)
    p = t + rng.normal(scale=0.8, size=500)
    a = ra.rmse_mae_with_ci(t, p, n_boot=400, seed=3)
    assert a["rmse_ci_low"] < a["rmse"] < a["rmse_ci_high"] and a["mae_ci_low"] < a["mae"] < a["mae_ci_high"]
    assert a["rmse"] == pytest.approx(0.8, abs=0.08)
    b = ra.rmse_mae_with_ci(t, p, n_boot=400, seed=3)
    c = ra.rmse_mae_with_ci(t, p, n_boot=400, seed=4)
    assert (a["rmse_ci_low"], a["mae_ci_high"]) == (b["rmse_ci_low"], b["mae_ci_high"])
    assert a["rmse_ci_low"] != c["rmse_ci_low"]


def test_rating_metric_errors_name_the_problem():
    with pytest.raises(PredictionsError, match="3 true ratings but 2 predictions"):
        ra.rmse_mae_with_ci([1, 2, 3], [1, 2], n_boot=0, seed=0)
    with pytest.raises(PredictionsError, match="1 of 2 .*NaN.*position 1"):
        ra.rmse_mae_with_ci([1, 2], [1, float("nan")], n_boot=0, seed=0)
    with pytest.raises(PredictionsError, match="same examples"):
        ra.paired_rating_difference([1, 2], [1, 2], [1], n_boot=0, seed=0)


def test_paired_rating_difference_detects_a_real_gain_and_not_a_fake_one():
    rng = np.random.default_rng(1)
    t = rng.integers(1, 6, 600).astype(float)
    base = t + rng.normal(scale=1.0, size=600)
    better = t + rng.normal(scale=0.6, size=600)
    same = base + rng.normal(scale=0.02, size=600)
    gain = ra.paired_rating_difference(t, better, base, n_boot=500, seed=0)
    assert gain["delta_rmse"] < 0 and gain["delta_rmse_ci_high"] < 0 and gain["delta_rmse_p"] < 0.01
    assert gain["delta_mae"] < 0 and gain["delta_mae_ci_high"] < 0
    null = ra.paired_rating_difference(t, same, base, n_boot=500, seed=0)
    assert null["delta_rmse_ci_low"] < 0 < null["delta_rmse_ci_high"] and null["delta_rmse_p"] > 0.05
    # generators work (each input is read once)
    g = ra.paired_rating_difference(iter(t), iter(better), iter(base), n_boot=0, seed=0)
    assert g["delta_rmse"] == pytest.approx(gain["delta_rmse"])


def _examples(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rating = rng.integers(1, 6, n).astype(float)
    return pd.DataFrame(
        {
            "example_id": [f"test:u{i}" for i in range(n)],
            "split": "test",
            "user_id": [f"u{i}" for i in range(n)],
            "target_item_id": "i1",
            "target_rating": rating,
            "label": (rating > 3).astype(int),
        }
    )


def test_rating_metrics_of_a_block_with_argmax():
    ex = _examples(6).assign(target_rating=[1.0, 2.0, 3.0, 4.0, 5.0, 5.0], label=[0, 0, 0, 1, 1, 1])
    rows = pr.rating_rows(
        "mf", 0, ex, [1.5, 2.5, 3.2, 3.9, 4.4, 4.8], like_threshold=3.0, rating_argmax=[1, 3, 3, 4, 4, np.nan]
    )
    m = ra.rating_metrics(rows, n_boot=0, seed=0)
    err = np.array([0.5, 0.5, 0.2, -0.1, -0.6, -0.2])
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(err**2))) and m["mae"] == pytest.approx(np.abs(err).mean())
    # argmax over the 5 rows that have one: exact on rows 0, 2, 3 -> 3 / 5
    assert m["argmax_n"] == 5 and m["argmax_accuracy"] == pytest.approx(3 / 5)
    assert m["argmax_mae"] == pytest.approx((0 + 1 + 0 + 0 + 1) / 5)
    assert m["auc"] == pytest.approx(roc_auc_score(ex["label"], rows["predicted_rating"]))
    like = pr.like_rows("user_like_rate", 0, ex, np.linspace(0, 1, 6))
    with pytest.raises(PredictionsError, match="rating-task rows"):
        ra.rating_metrics(like, n_boot=0, seed=0)


def test_score_predictions_adds_rating_columns_and_the_paired_difference():
    n = 300
    ex = _examples(n, seed=2)
    t = ex["target_rating"].to_numpy()
    rng = np.random.default_rng(3)
    preds = pd.concat(
        [
            pr.like_rows("user_like_rate", 0, ex, np.clip(ex["label"] * 0.3 + rng.random(n) * 0.7, 0, 1)),
            pr.rating_rows("global_mean", 0, ex, np.full(n, t.mean()), like_threshold=3.0),
            pr.rating_rows("user_item_bias", 0, ex, t + rng.normal(scale=1.0, size=n), like_threshold=3.0),
            pr.rating_rows("mf", 0, ex, t + rng.normal(scale=0.5, size=n), like_threshold=3.0),
        ],
        ignore_index=True,
    )
    results, _ = rs.score_predictions(
        preds, {}, dataset="toy", n_boot=300, seed=0, bertscore_model="embedded", bertscore_layers=6, progress=False
    )
    by = results.set_index("method")
    assert list(results.columns) == rs.RESULT_COLUMNS
    assert set(results.loc[results["task"] == "rating", "rating_reference"]) == {"mf"}  # the lowest RMSE
    assert np.isnan(by.loc["mf", "delta_rmse"]) and by.loc["global_mean", "delta_rmse_ci_low"] > 0
    assert by.loc["mf", "rmse"] == pytest.approx(0.5, abs=0.06)
    assert by.loc["mf", "rmse_ci_low"] < by.loc["mf", "rmse"] < by.loc["mf", "rmse_ci_high"]
    # like-task rows keep their figures and have no rating figures
    assert np.isnan(by.loc["user_like_rate", "rmse"]) and by.loc["user_like_rate", "rating_reference"] == ""
    assert by.loc["mf", "reference"] == "user_like_rate" and not np.isnan(by.loc["mf", "delta_auc"])
    summary = rs.seed_summary(results)
    assert summary.set_index("method").loc["mf", "rmse_mean"] == pytest.approx(by.loc["mf", "rmse"])
    md = tables.results_markdown(results, summary)
    assert "RMSE [95% CI]" in md and "Δ RMSE vs Biased MF (SVD)" in md and "lower is better" in md
    paper = tables.paper_table(results)
    assert "toy RMSE" in paper.columns and "toy Δ RMSE vs rating baseline" in paper.columns
    metrics = rs.metrics_dict(
        results, summary, n_boot=300, seed=0, seeds=[0], bertscore_backbone_name="", test_examples=ex
    )
    assert metrics["strongest_rating_baseline"] == "mf" and metrics["beats_rating_baseline"] == []
    assert (
        metrics["rmse"]["mf@K0"] == pytest.approx(by.loc["mf", "rmse"]) and "user_like_rate@K0" not in metrics["rmse"]
    )
    standalone = ra.rating_results(preds, n_boot=300, seed=0).set_index("method")
    assert standalone.loc["global_mean", "delta_rmse"] == pytest.approx(by.loc["global_mean", "delta_rmse"])


def test_like_only_results_keep_their_layout():
    ex = _examples(40)
    preds = pr.like_rows("user_like_rate", 0, ex, np.linspace(0, 1, 40))
    results, _ = rs.score_predictions(
        preds, {}, dataset="toy", n_boot=50, seed=0, bertscore_model="embedded", bertscore_layers=6, progress=False
    )
    assert "RMSE" not in tables.results_markdown(results)
    assert list(tables.paper_table(results).columns) == ["Model", "K", "toy AUC", "toy Δ vs bias", "toy BERTScore"]


# ---------------------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------------------
def interactions_from(seqs: dict[str, list[tuple[str, float]]]) -> pd.DataFrame:
    rows = [
        dict(
            user_id=u,
            item_id=i,
            rating=float(r),
            timestamp=1000 + p,
            liked=r > 3,
            position=p,
            review_text="",
            summary="",
        )
        for u, seq in seqs.items()
        for p, (i, r) in enumerate(seq)
    ]
    return pd.DataFrame(rows)


def examples_from(inter: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for u, g in inter.sort_values(["user_id", "position"]).groupby("user_id", sort=False):
        for split, off in (("train", 3), ("valid", 2), ("test", 1)):
            r = g.iloc[len(g) - off]
            rows.append(
                dict(
                    example_id=f"{split}:{u}",
                    split=split,
                    user_id=u,
                    target_item_id=r["item_id"],
                    target_rating=r["rating"],
                    label=int(r["liked"]),
                    target_position=int(r["position"]),
                    sample_rank=0,
                )
            )
    return pd.DataFrame(rows)


HAND = {  # user: [(item, rating)], oldest first; the last two are the valid and test targets
    "a": [("x", 5), ("y", 3), ("z", 4), ("q", 1), ("x2", 2)],
    "b": [("x", 4), ("z", 2), ("y", 1), ("w", 5), ("y2", 5)],
    "c": [("y", 5), ("x", 5), ("new", 3), ("z", 4)],
}


def test_means_are_fitted_on_training_interactions_only():
    inter = interactions_from(HAND)
    ex = examples_from(inter)
    test = ex[ex["split"] == "test"]
    rows, info = rb.rating_baselines(
        inter, ex, test, like_threshold=3.0, methods=("global_mean", "user_mean", "item_mean")
    )
    got = rows.pivot(index="example_id", columns="method", values="predicted_rating")
    # training: a x5 y3 z4; b x4 z2 y1; c y5 x5 -> mu = 29 / 8
    mu = 29 / 8
    assert info["global_mean"]["mu"] == pytest.approx(mu) and info["global_mean"]["n_train"] == 8
    assert got.loc["test:a", "global_mean"] == pytest.approx(mu)
    assert got.loc["test:a", "user_mean"] == pytest.approx(4.0) and got.loc["test:c", "user_mean"] == pytest.approx(5)
    # test targets: a -> x2 (unseen: mu), b -> y2 (unseen), c -> z (a 4, b 2)
    assert got.loc["test:a", "item_mean"] == pytest.approx(mu) and got.loc["test:c", "item_mean"] == pytest.approx(3)
    assert info["item_mean"]["cold_items"] == 2 and info["item_mean"]["rating_scale"] == [1.0, 5.0]
    assert (
        set(rows["task"]) == {"rating"}
        and rows["predicted_label"].tolist() == (rows["predicted_rating"] > 3.0).astype(int).tolist()
    )


def test_baseline_als_matches_surprise_baseline_only():
    surprise = pytest.importorskip("surprise")
    rng = np.random.default_rng(0)
    n = 600
    df = pd.DataFrame(
        {
            "user_id": [f"u{x}" for x in rng.integers(0, 40, n)],
            "item_id": [f"i{x}" for x in rng.integers(0, 25, n)],
            "rating": rng.integers(1, 6, n).astype(float),
        }
    ).drop_duplicates(["user_id", "item_id"])
    cfg = rb.RatingConfig(reg_user=15.0, reg_item=10.0, als_epochs=10)
    ours = rb._Bias(df, cfg)
    algo = surprise.BaselineOnly(bsl_options={"method": "als", "reg_u": 15, "reg_i": 10, "n_epochs": 10}, verbose=False)
    algo.fit(surprise.Dataset.load_from_df(df, surprise.Reader(rating_scale=(1, 5))).build_full_trainset())
    users, items = ["u1", "u3", "u7", "nobody"], ["i2", "i9", "nothing", "i4"]
    want = [algo.predict(u, i, clip=False).est for u, i in zip(users, items)]
    np.testing.assert_allclose(ours.predict(users, items), want, atol=1e-9)


def _low_rank(n_users=150, n_items=60, per_user=25, seed=0) -> pd.DataFrame:
    """Ratings from user and item biases plus a rank-2 taste, shuffled into per-user sequences."""
    rng = np.random.default_rng(seed)
    pu, qi = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    bu, bi = rng.normal(scale=0.6, size=n_users), rng.normal(scale=0.6, size=n_items)
    seqs = {}
    for u in range(n_users):
        items = rng.choice(n_items, per_user, replace=False)
        taste = bu[u] + bi[items] + 0.8 * pu[u] @ qi[items].T
        r = np.clip(np.round(3 + taste + rng.normal(scale=0.3, size=per_user)), 1, 5)
        seqs[f"u{u:03d}"] = [(f"i{i:02d}", float(x)) for i, x in zip(items, r)]
    return interactions_from(seqs)


def test_mf_learns_a_low_rank_taste_and_stops_early():
    inter = _low_rank()
    ex = examples_from(inter)
    test = ex[ex["split"] == "test"]
    cfg = rb.RatingConfig(seed=1, mf_factors=8, mf_max_epochs=60)
    rows, info = rb.rating_baselines(inter, ex, test, like_threshold=3.0, cfg=cfg)
    rmse = {
        m: ra.rmse_mae_with_ci(g["target_rating"], g["predicted_rating"], n_boot=0, seed=0)["rmse"]
        for m, g in rows.groupby("method")
    }
    assert rmse["mf"] < rmse["user_item_bias"] - 0.1 and rmse["user_item_bias"] < rmse["global_mean"]
    curve = info["mf"]["curve"]
    assert [c["epoch"] for c in curve] == rb.checkpoints(60)[: len(curve)]
    assert info["mf"]["best_epoch"] == min(curve, key=lambda c: c["valid_rmse"])["epoch"]
    assert rows["predicted_rating"].between(1, 5).all()
    again, _ = rb.rating_baselines(inter, ex, test, like_threshold=3.0, cfg=cfg, methods=("mf",))
    np.testing.assert_array_equal(again["predicted_rating"], rows.loc[rows["method"] == "mf", "predicted_rating"])


def test_no_leakage_test_and_valid_ratings_never_reach_the_models():
    inter = _low_rank(n_users=60, seed=3)
    ex = examples_from(inter)
    test = ex[ex["split"] == "test"]
    cfg = rb.RatingConfig(seed=0, mf_factors=4, mf_max_epochs=20)
    base, _ = rb.rating_baselines(inter, ex, test, like_threshold=3.0, cfg=cfg)
    # change every test rating (and the examples' copies): no prediction moves
    changed = inter.copy()
    last = changed.groupby("user_id")["position"].transform("max") == changed["position"]
    changed.loc[last, "rating"] = 6 - changed.loc[last, "rating"]
    ex2 = examples_from(changed)
    moved, _ = rb.rating_baselines(changed, ex2, ex2[ex2["split"] == "test"], like_threshold=3.0, cfg=cfg)
    np.testing.assert_array_equal(moved["predicted_rating"], base["predicted_rating"])
    # change every valid rating: only MF (early stopping reads them) may move
    val = changed.groupby("user_id")["position"].transform("max") - 1 == changed["position"]
    changed.loc[val, "rating"] = 6 - changed.loc[val, "rating"]
    ex3 = examples_from(changed)
    moved, _ = rb.rating_baselines(
        changed,
        ex3,
        ex3[ex3["split"] == "test"],
        like_threshold=3.0,
        cfg=cfg,
        methods=("global_mean", "user_mean", "item_mean", "user_item_bias"),
    )
    np.testing.assert_array_equal(moved["predicted_rating"], base.loc[base["method"] != "mf", "predicted_rating"])


def test_baselines_refuse_in_sample_examples_and_unknown_names():
    inter = interactions_from(HAND)
    ex = examples_from(inter)
    with pytest.raises(MethodError, match="train:a.*in-sample"):
        rb.rating_baselines(inter, ex, ex[ex["split"] == "train"], like_threshold=3.0)
    with pytest.raises(MethodError, match="unknown rating baseline.*knn"):
        rb.rating_baselines(inter, ex, ex[ex["split"] == "test"], like_threshold=3.0, methods=("knn",))
    with pytest.raises(MethodError, match="no rating column"):
        rb.rating_baselines(inter.drop(columns="rating"), ex, ex[ex["split"] == "test"], like_threshold=3.0)


def test_registry_entries_of_the_rating_baselines():
    names = registry.names(kind="rating_baseline")
    assert names == ["global_mean", "user_mean", "item_mean", "user_item_bias", "mf"]
    for n in names:
        spec = registry.get(n)
        assert spec.task == "rating" and registry.implementation(n) is rb.predict


def test_rating_baselines_on_the_embedded_beauty_data(tmp_path):
    from rrlib.config.params import Config
    from rrlib.config.paths import RunPaths
    from rrlib.data import eval_subset, load_tables, prepare

    paths = RunPaths.of(tmp_path / "run")
    prepare({"CACHE_DIR": str(tmp_path / "cache")}, paths, progress=False)
    data = load_tables(paths)
    test = eval_subset(data.examples, "test", 0)
    cfg = Config.full({"SEED": 7, "LIKE_THRESHOLD": 4.0})
    rows, info = rb.predict(registry.names(kind="rating_baseline"), data, test, cfg)
    pr.check(rows)
    assert len(rows) == 5 * len(test) and set(rows["seed"]) == {7}
    assert (rows["predicted_label"] == (rows["predicted_rating"] > 4.0)).all()  # LIKE_THRESHOLD is used
    assert rows["predicted_rating"].between(1, 5).all()
    results = ra.rating_results(rows, n_boot=200, seed=0).set_index("method")
    # on these data MF is the strongest and the global mean the weakest
    assert results["rmse"].idxmin() == "mf" and results.loc["global_mean", "rmse"] > results.loc["mf", "rmse"]
    assert info["mf"]["best_epoch"] in rb.checkpoints(info["mf"]["config"]["mf_max_epochs"])
