"""Top-k ranking: NDCG / Recall / HitRate with one held-out target per user, bootstrap intervals and
paired differences; the popularity and BPR-MF retrievers (no leakage of the valid and test
interactions, exclusion of what the user saw, BPR beating popularity where there is structure);
reranking by any scorer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rrlib import predictions as pr
from rrlib.errors import MethodError, PredictionsError
from rrlib.evaluate import ranking as rk
from rrlib.methods import registry
from rrlib.methods import retrieval as rt


# ---------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------
def _ranking(method: str, ranks: dict[str, int | None], length: int = 20, k: int = 0) -> pd.DataFrame:
    """A rankings block where each user's target sits at the given rank (None: absent)."""
    rows = []
    for u, r in ranks.items():
        for pos in range(1, length + 1):
            rows.append(
                {
                    "user_id": u,
                    "example_id": f"test:{u}",
                    "item_id": f"{u}-{pos}",
                    "score": float(length - pos),
                    "retriever_score": 0.0,
                    "is_target": pos == r,
                }
            )
    return pr.ranking_rows(method, k, pd.DataFrame(rows))


def test_per_user_metrics_hand_values():
    block = _ranking("bpr_mf", {"u1": 1, "u2": 3, "u3": None, "u4": 11})
    ranks = rk.target_ranks(block)
    assert ranks.to_dict() == {"u1": 1.0, "u2": 3.0, "u3": pytest.approx(np.nan, nan_ok=True), "u4": 11.0}
    m = rk.per_user_metrics(ranks, (1, 10, 20))
    assert m["ndcg@10"].tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0])  # 1 / log2(3 + 1) = 0.5
    assert m["ndcg@20"]["u4"] == pytest.approx(1 / np.log2(12))
    assert m["hit@10"].tolist() == [1, 1, 0, 0] and m["recall@10"].tolist() == m["hit@10"].tolist()
    assert m["hit@1"].tolist() == [1, 0, 0, 0]
    # users without a list count as misses
    with_missing = rk.target_ranks(block, users=["u1", "u5"])
    assert len(with_missing) == 5 and np.isnan(with_missing["u5"])
    two = block.copy()
    two.loc[two["rank"] == 2, "is_target"] = True
    with pytest.raises(PredictionsError, match="more than one ranked item"):
        rk.target_ranks(two)


def test_score_rankings_intervals_and_paired_difference():
    rng = np.random.default_rng(0)
    users = [f"u{i}" for i in range(400)]
    good = {u: int(rng.integers(1, 4)) if rng.random() < 0.6 else None for u in users}
    bad = {u: int(rng.integers(6, 21)) if rng.random() < 0.6 else None for u in users}
    table = pd.concat([_ranking("popularity", bad), _ranking("bpr_mf", good)], ignore_index=True)
    results, per_user = rk.score_rankings(table, n_boot=300, seed=0, cutoffs=(5, 10), dataset="toy")
    assert list(results.columns) == rk.RANKING_RESULT_COLUMNS
    row = results.set_index(["method", "cutoff"])
    assert set(results["reference"]) == {"bpr_mf"}  # the strongest retriever by NDCG@10
    assert row.loc[("popularity", 5), "hit"] == 0.0 and row.loc[("popularity", 5), "delta_ndcg_ci_high"] < 0
    assert row.loc[("popularity", 5), "delta_ndcg_p"] < 0.01
    expected = np.mean([1 / np.log2(r + 1) if r else 0.0 for r in good.values()])
    assert row.loc[("bpr_mf", 10), "ndcg"] == pytest.approx(expected)
    assert row.loc[("bpr_mf", 10), "ndcg_ci_low"] < expected < row.loc[("bpr_mf", 10), "ndcg_ci_high"]
    assert np.isnan(row.loc[("bpr_mf", 10), "delta_ndcg"]) and row.loc[("bpr_mf", 10), "n_users"] == 400
    assert len(per_user) == 800
    # an explicit reference (a reranker compared with its retriever)
    again, _ = rk.score_rankings(table, n_boot=0, seed=0, cutoffs=(10,), references={"bpr_mf": "popularity"})
    assert again.set_index("method").loc["bpr_mf", "delta_ndcg"] > 0


def test_paired_ranking_difference_is_near_zero_for_a_copy():
    a = pd.Series(np.random.default_rng(1).random(300), index=[f"u{i}" for i in range(300)])
    d = rk.paired_ranking_difference(a, a.copy(), n_boot=200, seed=0)
    assert d["delta"] == 0 and d["ci_low"] == 0 and d["ci_high"] == 0 and d["p_value"] == 1.0
    with pytest.raises(PredictionsError, match="share no user"):
        rk.paired_ranking_difference(a, pd.Series([1.0], index=["x"]), n_boot=0, seed=0)


# ---------------------------------------------------------------------------------------
# retrievers
# ---------------------------------------------------------------------------------------
def interactions_from(seqs: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            dict(
                user_id=u, item_id=i, rating=5.0, timestamp=1000 + p, liked=True, position=p, review_text="", summary=""
            )
            for u, seq in seqs.items()
            for p, i in enumerate(seq)
        ]
    )


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
                    target_rating=5.0,
                    label=1,
                    target_position=int(r["position"]),
                    sample_rank=0,
                )
            )
    return pd.DataFrame(rows)


def _clustered(n_users=120, n_items=40, per_user=12, seed=0) -> pd.DataFrame:
    """Two taste groups, each consuming (almost) only its half of the catalogue; the halves are
    equally popular, so popularity cannot tell them apart and BPR can."""
    rng = np.random.default_rng(seed)
    seqs = {}
    for u in range(n_users):
        half = u % 2
        own = [f"i{j:02d}" for j in range(n_items) if j % 2 == half]
        seqs[f"u{u:03d}"] = list(rng.choice(own, per_user, replace=False))
    return interactions_from(seqs)


def test_popularity_counts_training_interactions_only():
    inter = interactions_from(
        {"a": ["x", "y", "z", "v1", "t1"], "b": ["x", "z", "w", "v2", "t2"], "c": ["y", "x", "q", "v3", "z"]}
    )
    ex = examples_from(inter)
    lists, info = rt.retrieve("popularity", inter, ex, ex[ex["split"] == "test"], rt.RetrievalConfig(n_candidates=10))
    # training: a x y z; b x z w; c y x q -> x 3, y 2, z 2, w 1, q 1 (v*, t* are valid/test only)
    assert info["n_items"] == 5 and info["targets_not_in_training_items"] == 2
    a = lists[lists["user_id"] == "a"]
    assert a["item_id"].tolist() == ["q", "w"]  # x, y, z seen before; ties by item id
    c = lists[lists["user_id"] == "c"].set_index("item_id")
    assert c.index.tolist() == ["z", "w"] and c.loc["z", "is_target"] and c.loc["z", "score"] == 2.0
    assert not lists["item_id"].str.startswith(("v", "t")).any()


def test_bpr_never_sees_the_valid_and_test_interactions():
    pytest.importorskip("implicit")
    inter = _clustered(seed=1)
    ex = examples_from(inter)
    cfg = rt.RetrievalConfig(seed=0, bpr_factors=8, bpr_max_epochs=30)
    idx = rt.InteractionIndex(inter)
    f1, _ = rt.fit_bpr(idx, ex[ex["split"] == "valid"], cfg)
    # swap every valid and test item for another item: the training matrix and the fit are unchanged
    changed = inter.copy()
    tail = changed.groupby("user_id")["position"].transform("max") - changed["position"] <= 1
    changed.loc[tail, "item_id"] = changed.loc[tail, "item_id"].map(lambda i: "zz" + i)
    idx2 = rt.InteractionIndex(changed)
    assert (idx2.matrix != idx.matrix).nnz == 0 and list(idx2.item_ids) == list(idx.item_ids)
    # the early-stopping targets differ, so fit with the same number of epochs and compare factors
    model_a = rt._implicit_bpr()(
        factors=8,
        iterations=20,
        num_threads=1,
        random_state=0,
        learning_rate=cfg.bpr_learning_rate,
        regularization=cfg.bpr_regularization,
    )
    model_b = rt._implicit_bpr()(
        factors=8,
        iterations=20,
        num_threads=1,
        random_state=0,
        learning_rate=cfg.bpr_learning_rate,
        regularization=cfg.bpr_regularization,
    )
    model_a.fit(idx.matrix, show_progress=False)
    model_b.fit(idx2.matrix, show_progress=False)
    np.testing.assert_array_equal(model_a.item_factors, model_b.item_factors)
    assert f1[1].shape[0] == len(idx.item_ids)
    # changing only the test interaction leaves every candidate list as it was (bar the target flag)
    only_test = inter.copy()
    last = only_test.groupby("user_id")["position"].transform("max") == only_test["position"]
    only_test.loc[last, "item_id"] = only_test.loc[last, "item_id"].map(lambda i: "zz" + i)
    ex_t = examples_from(only_test)
    la, _ = rt.retrieve("bpr_mf", inter, ex, ex[ex["split"] == "test"], cfg)
    lb, _ = rt.retrieve("bpr_mf", only_test, ex_t, ex_t[ex_t["split"] == "test"], cfg)
    pd.testing.assert_frame_equal(la.drop(columns="is_target"), lb.drop(columns="is_target"))
    assert not lb["is_target"].any()  # the new test items never occur in training


def test_candidates_exclude_what_the_user_saw_before_the_target():
    pytest.importorskip("implicit")
    inter = _clustered(seed=2)
    ex = examples_from(inter)
    test = ex[ex["split"] == "test"]
    lists, info = rt.retrieve("bpr_mf", inter, ex, test, rt.RetrievalConfig(seed=0, n_candidates=15))
    seen = inter.merge(test[["user_id", "target_position"]], on="user_id")
    seen = seen[seen["position"] < seen["target_position"]]
    clash = lists.merge(seen[["user_id", "item_id"]], on=["user_id", "item_id"])
    assert clash.empty  # includes the valid item: the user interacted with it before the test target
    assert lists.groupby("user_id").size().eq(15).all() and info["targets_seen_before"] == 0
    ranked = pr.ranking_rows("bpr_mf", 0, lists)
    assert ranked.groupby("user_id")["rank"].max().eq(15).all()


def test_bpr_beats_popularity_when_tastes_are_clustered():
    pytest.importorskip("implicit")
    inter = _clustered(n_users=200, seed=3)
    ex = examples_from(inter)
    test = ex[ex["split"] == "test"]
    cfg = rt.RetrievalConfig(seed=0, n_candidates=10, bpr_factors=16)
    data = type("T", (), {"interactions": inter, "examples": ex})()
    from rrlib.config.params import Config

    rows, info = rt.predict(["popularity", "bpr_mf"], data, test, Config.full({"SEED": 0}), ["retrieved"])
    results, _ = rk.score_rankings(rows, n_boot=300, seed=0, cutoffs=(10,))
    by = results.set_index("method")
    assert set(results["protocol"]) == {"retrieved"}
    assert by.loc["bpr_mf", "ndcg"] > 2 * by.loc["popularity", "ndcg"]
    assert by.loc["popularity", "reference"] == "bpr_mf" and by.loc["popularity", "delta_ndcg_ci_high"] < 0
    assert info["bpr_mf"]["best_epoch"] == max(info["bpr_mf"]["curve"], key=lambda c: c["valid_ndcg@20"])["epoch"]
    again, _ = rt.retrieve("bpr_mf", inter, ex, test, cfg)
    first, _ = rt.retrieve("bpr_mf", inter, ex, test, cfg)
    pd.testing.assert_frame_equal(again, first)  # seeded and single-threaded: runs repeat exactly


def test_liked_positives_and_a_user_without_any_gets_popularity():
    pytest.importorskip("implicit")
    inter = _clustered(n_users=60, seed=4)
    first = inter["user_id"] == "u000"
    inter.loc[first, "liked"] = False  # u000 has no liked interaction
    ex = examples_from(inter)
    test = ex[ex["split"] == "test"]
    cfg = rt.RetrievalConfig(seed=0, positives="liked", n_candidates=5, bpr_factors=8, bpr_max_epochs=20)
    lists, info = rt.retrieve("bpr_mf", inter, ex, test, cfg)
    pop, _ = rt.retrieve("popularity", inter, ex, test, cfg)
    assert info["cold_users_popularity"] == 1 and info["n_users_train"] == 59
    got = lists[lists["user_id"] == "u000"]["item_id"].tolist()
    assert got == pop[pop["user_id"] == "u000"]["item_id"].tolist()


def test_retrieval_refuses_bad_inputs():
    inter = _clustered(n_users=10)
    ex = examples_from(inter)
    with pytest.raises(MethodError, match="several examples"):
        rt.retrieve("popularity", inter, ex, ex[ex["split"] != "train"])
    with pytest.raises(MethodError, match="inside the training interactions"):
        rt.retrieve("popularity", inter, ex, ex[ex["split"] == "train"])
    with pytest.raises(MethodError, match="unknown retriever"):
        rt.retrieve("lightgcn", inter, ex, ex[ex["split"] == "test"])
    with pytest.raises(MethodError, match="positives"):
        rt.RetrievalConfig(positives="some")


def test_top_n_ties_and_exclusion():
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 0.0]])
    order, values = rt.top_n(scores, [np.array([1])], 3)
    assert order.tolist() == [[2, 3, 0]] and values.tolist() == [[3.0, 2.0, 1.0]]


# ---------------------------------------------------------------------------------------
# reranking
# ---------------------------------------------------------------------------------------
def _candidates() -> pd.DataFrame:
    lists = pd.DataFrame(
        {
            "user_id": ["u1"] * 4 + ["u2"] * 2,
            "example_id": ["test:u1"] * 4 + ["test:u2"] * 2,
            "item_id": ["a", "b", "c", "d", "a", "e"],
            "score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
            "retriever_score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
            "is_target": [False, False, True, False, False, True],
        }
    )
    return pr.ranking_rows("bpr_mf", 0, lists)


def test_rerank_orders_by_the_scorer_and_breaks_ties_by_the_retriever():
    cands = _candidates()
    pairs = rt.candidate_pairs(cands)
    assert pairs.columns.tolist() == ["user_id", "example_id", "item_id", "retriever_rank"]
    assert pairs.loc[pairs["user_id"] == "u1", "retriever_rank"].tolist() == [1, 2, 3, 4]
    expected = {
        ("u1", "a"): 3.0,
        ("u1", "b"): 4.0,
        ("u1", "c"): 5.0,
        ("u1", "d"): 4.0,
        ("u2", "a"): 1.0,
        ("u2", "e"): 2.0,
    }
    out = rt.rerank(cands, expected, method="exp3rt_rerank", k=64)
    u1 = out[out["user_id"] == "u1"].sort_values("rank")
    assert u1["item_id"].tolist() == ["c", "b", "d", "a"]  # b and d tie at 4.0: b had the better retriever score
    assert u1["retriever_score"].tolist() == [0.7, 0.8, 0.6, 0.9] and set(out["k"]) == {64}
    assert out[out["user_id"] == "u2"].sort_values("rank")["item_id"].tolist() == ["e", "a"]
    # the same order from a Series, a DataFrame and a function
    series = pd.Series(expected)
    frame = pd.DataFrame([{"user_id": u, "item_id": i, "score": s} for (u, i), s in expected.items()])
    for scorer in (series, frame, lambda us, its: [expected[(u, i)] for u, i in zip(us, its)]):
        pd.testing.assert_frame_equal(rt.rerank(cands, scorer, method="exp3rt_rerank", k=64), out)
    results, _ = rk.score_rankings(
        pd.concat([cands, out]), n_boot=0, seed=0, cutoffs=(1, 4), references={"exp3rt_rerank": "bpr_mf"}
    )
    row = results.set_index(["method", "cutoff"])
    assert row.loc[("exp3rt_rerank", 1), "hit"] == 1.0 and row.loc[("bpr_mf", 1), "hit"] == 0.0
    assert row.loc[("exp3rt_rerank", 4), "recall"] == row.loc[("bpr_mf", 4), "recall"]  # same candidates


def test_rerank_needs_a_score_for_every_candidate():
    cands = _candidates()
    with pytest.raises(PredictionsError, match="2 of 6 candidates have no finite score.*u2"):
        rt.rerank(cands, {("u1", i): 1.0 for i in "abcd"}, method="exp3rt_rerank")
    with pytest.raises(PredictionsError, match="returned 1 scores for 6"):
        rt.rerank(cands, lambda us, its: [1.0], method="exp3rt_rerank")
    with pytest.raises(PredictionsError, match="lack column"):
        rt.rerank(cands.drop(columns="retriever_score"), {}, method="exp3rt_rerank")


def test_registry_entries_of_the_retrievers():
    assert registry.names(kind="retriever") == ["popularity", "bpr_mf"]
    for n in ("popularity", "bpr_mf"):
        assert registry.get(n).task == "ranking" and registry.implementation(n) is rt.predict


def test_retrievers_on_the_embedded_beauty_data(tmp_path):
    pytest.importorskip("implicit")
    from rrlib.config.params import Config
    from rrlib.config.paths import RunPaths
    from rrlib.data import eval_subset, load_tables, prepare

    paths = RunPaths.of(tmp_path / "run")
    prepare({"CACHE_DIR": str(tmp_path / "cache")}, paths, progress=False)
    data = load_tables(paths)
    test = eval_subset(data.examples, "test", 0)
    rows, info = rt.predict(["popularity", "bpr_mf"], data, test, Config.full({"SEED": 3}))
    pr.check_rankings(rows)
    assert rows.groupby(["method", "protocol", "user_id"]).size().eq(20).all() and set(rows["seed"]) == {3}
    assert set(rows["protocol"]) == set(rt.PROTOCOLS)
    assert rows.groupby(["method", "protocol", "user_id"])["is_target"].sum().eq(1).all()  # every list holds it
    assert info["bpr_mf"]["targets_seen_before"] == 0
    results, _ = rk.score_rankings(rows, n_boot=100, seed=0, cutoffs=(10,))
    assert results["n_users"].eq(len(test)).all() and results["ndcg"].between(0, 1).all()
    assert (results["hit"] > 0).all()


@pytest.mark.slow
def test_measure_script_on_the_embedded_data(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [
            sys.executable,
            str(root / "scripts" / "measure_exp3rt_baselines.py"),
            "-p",
            "CACHE_DIR",
            str(tmp_path / "cache"),
            "--n-boot",
            "20",
            "--out",
            str(tmp_path / "figures"),
        ],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert out.returncode == 0, out.stderr
    assert "## Rating baselines" in out.stdout and "## Retrievers" in out.stdout
    assert len(pd.read_csv(tmp_path / "figures" / "rating.csv")) == 5
    assert set(pd.read_csv(tmp_path / "figures" / "ranking.csv")["method"]) == {"popularity", "bpr_mf"}


# ---------------------------------------------------------------------------------------
# ranking protocols (issue 20): liked held-out items, (a) retrieved + inserted, (b) sampled
# ---------------------------------------------------------------------------------------
def test_ranking_examples_are_the_liked_test_targets_in_sample_order_and_nested():
    inter = _clustered(n_users=30, seed=5)
    ex = examples_from(inter)
    test = ex["split"] == "test"
    ex.loc[test, "sample_rank"] = np.arange(int(test.sum()))[::-1]  # reversed user order
    ex.loc[test & ex["user_id"].isin(["u000", "u001", "u029"]), "label"] = 0  # disliked held-out items
    got = rt.ranking_examples(ex)
    assert len(got) == 27 and got["label"].eq(1).all() and got["split"].eq("test").all()
    assert got["user_id"].iloc[0] == "u028" and got["sample_rank"].is_monotonic_increasing
    assert rt.ranking_examples(ex, 5)["user_id"].tolist() == got["user_id"].head(5).tolist()
    within = rt.ranking_examples(ex, within=10)  # the first 10 test examples hold u029 (disliked)
    assert len(within) == 9 and set(within["user_id"]) <= set(got["user_id"].head(10))


def test_protocol_a_is_the_retrievers_top_n_with_the_held_out_item_inserted():
    pytest.importorskip("implicit")
    inter = _clustered(n_users=80, seed=6)
    ex = examples_from(inter)
    test = ex[ex["split"] == "test"]
    cfg = rt.RetrievalConfig(seed=0, n_candidates=6, bpr_factors=8, bpr_max_epochs=20)
    top, _ = rt.retrieve("bpr_mf", inter, ex, test, cfg)
    lists, info = rt.candidate_lists("bpr_mf", inter, ex, test, cfg, ["retrieved"])
    assert set(lists["protocol"]) == {"retrieved"} and lists.groupby("user_id").size().eq(6).all()
    assert lists.groupby("user_id")["is_target"].sum().eq(1).all()
    ranked = pr.ranking_rows("bpr_mf", 0, lists)
    inserted = 0
    for user, own in top.groupby("user_id"):
        got = ranked[ranked["user_id"] == user].sort_values("rank")
        if own["is_target"].any():  # found by the retriever: the list is its top-N as it stands
            assert got["item_id"].tolist() == own["item_id"].tolist()
        else:  # its top N-1, then the held-out item, which the retriever alone ranks last
            inserted += 1
            assert got["item_id"].tolist()[:5] == own["item_id"].tolist()[:5]
            assert got["is_target"].tolist() == [False] * 5 + [True]
    assert inserted == info["protocols"]["retrieved"]["inserted"] > 0
    # the retriever's HitRate@k below the list length is its full-catalogue HitRate@k
    full = rk.per_user_metrics(rk.target_ranks(pr.ranking_rows("bpr_mf", 0, top), test["user_id"]), (5,))
    prot = rk.per_user_metrics(rk.target_ranks(ranked), (5,))
    assert prot["hit@5"].sum() == full["hit@5"].sum()


def test_protocol_b_samples_unrated_items_seeded_per_user():
    pytest.importorskip("implicit")
    inter = _clustered(n_users=60, seed=7)
    ex = examples_from(inter)
    test = ex[ex["split"] == "test"]
    cfg = rt.RetrievalConfig(seed=0, n_candidates=8, bpr_factors=8, bpr_max_epochs=20)
    lists, info = rt.candidate_lists("popularity", inter, ex, test, cfg, ["sampled"])
    assert lists.groupby("user_id").size().eq(8).all() and lists.groupby("user_id")["is_target"].sum().eq(1).all()
    rated = inter.groupby("user_id")["item_id"].apply(set)  # every split, the held-out item included
    negatives = lists[~lists["is_target"]]
    assert not any(i in rated[u] for u, i in zip(negatives["user_id"], negatives["item_id"]))
    # the same user gets the same negatives in any subsample of users, and another seed others
    few, _ = rt.candidate_lists("popularity", inter, ex, test.iloc[[3, 7]], cfg, ["sampled"])
    same = lists[lists["user_id"].isin(few["user_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        few.sort_values(["user_id", "item_id"]).reset_index(drop=True),
        same.sort_values(["user_id", "item_id"]).reset_index(drop=True),
    )
    other, _ = rt.candidate_lists(
        "popularity", inter, ex, test, rt.RetrievalConfig(seed=1, n_candidates=8), ["sampled"]
    )
    assert set(zip(other["user_id"], other["item_id"])) != set(zip(lists["user_id"], lists["item_id"]))
    # both protocols at once, and the scores are the retriever's
    both, info = rt.candidate_lists("popularity", inter, ex, test, cfg)
    assert set(both["protocol"]) == set(rt.PROTOCOLS) and set(info["protocols"]) == set(rt.PROTOCOLS)
    pop = rt.popularity_scores(rt.InteractionIndex(inter))
    idx = rt.InteractionIndex(inter).item_index
    known = both[both["item_id"].isin(idx) & ~both["is_target"]]
    assert np.allclose(known["retriever_score"], pop[[idx[i] for i in known["item_id"]]])
    with pytest.raises(MethodError, match="ranking protocols"):
        rt.candidate_lists("popularity", inter, ex, test, cfg, ["top100"])


def test_score_rankings_compares_within_a_protocol_on_the_shared_users():
    users = [f"u{i}" for i in range(40)]
    rng = np.random.default_rng(3)

    def block(method, ranks, protocol, length=10):
        b = _ranking(method, ranks, length=length)
        return b.assign(protocol=protocol)

    retr_a = block("bpr_mf", {u: int(rng.integers(1, 11)) for u in users}, "retrieved")
    retr_b = block("bpr_mf", {u: int(rng.integers(1, 11)) for u in users}, "sampled")
    rer_a = block("exp3rt_rerank", {u: 1 for u in users[:15]}, "retrieved")  # a subsample of users
    results, _ = rk.score_rankings(
        pd.concat([retr_a, retr_b, rer_a]), n_boot=200, seed=0, cutoffs=(5, 10), references={"exp3rt_rerank": "bpr_mf"}
    )
    row = results.set_index(["protocol", "method", "cutoff"])
    assert row.loc[("retrieved", "exp3rt_rerank", 10), "delta_n_users"] == 15
    expected = (
        1.0
        - retr_a[retr_a["is_target"] & retr_a["user_id"].isin(users[:15])]["rank"]
        .map(lambda r: 1 / np.log2(r + 1))
        .mean()
    )
    assert row.loc[("retrieved", "exp3rt_rerank", 10), "delta_ndcg"] == pytest.approx(expected)
    assert "15 users" in row.loc[("retrieved", "exp3rt_rerank", 10), "note"]
    assert "every list holds the target" in row.loc[("sampled", "bpr_mf", 10), "note"]
    assert "every list holds" not in row.loc[("sampled", "bpr_mf", 5), "note"]
    from rrlib.evaluate.exp3rt import ranking_markdown, ranking_view

    md = ranking_markdown(results)
    assert md.count("### Top-k ranking, protocol") == 4
    assert rt.PROTOCOL_LABELS["retrieved"] in md and rt.PROTOCOL_LABELS["sampled"] in md
    view = ranking_view(results, 10)
    assert view["paired users"].tolist().count(15) == 1


def test_every_reranking_candidate_is_in_the_enrichment_scope():
    """With a reranker in EVAL_METHODS, 02/04's scope holds every item of its candidate lists, so
    the held-out item (a test target: always described) is not the only candidate with a text."""
    from rrlib.config.params import Config
    from rrlib.enrich.scope import reranking_items

    inter = _clustered(n_users=40, seed=8)
    ex = examples_from(inter)
    ex.loc[ex["split"] == "test", "sample_rank"] = np.arange(40)
    params = {"N_TEST": 20, "RANK_USERS": 5, "RANK_CANDIDATES": 6, "RETRIEVER": "popularity"}
    cfg = Config.full({**params, "EVAL_METHODS": ["popularity", "exp3rt_rerank"]})
    items = reranking_items(ex, inter, cfg)
    rank = rt.ranking_examples(ex, 5, within=20)
    lists, _ = rt.candidate_lists(
        "popularity", inter, ex, rank, rt.RetrievalConfig(n_candidates=6, seed=cfg.common.seed)
    )
    assert items == set(lists["item_id"]) and set(rank["target_item_id"]) <= items
    assert reranking_items(ex, inter, Config.full({**params, "EVAL_METHODS": ["popularity"]})) == set()
