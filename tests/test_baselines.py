"""Bias baselines (user / item like-rate, logistic regression): exact values on a hand-made
table, the expected behaviour on synthetic data with a known answer, no leakage, and the
user-like-rate AUC on the ReasoningRec authors' released Beauty split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from rrlib.data.sequences import training_interactions
from rrlib.methods.bias import bias_baselines, item_like_rate, smoothed_rate, user_like_rate


def interactions_from(seqs: dict[str, list[tuple[str, bool]]]) -> pd.DataFrame:
    rows = [
        dict(
            user_id=u,
            item_id=i,
            rating=5.0 if liked else 1.0,
            timestamp=1000 + p,
            liked=liked,
            position=p,
            review_text="",
            summary="",
        )
        for u, seq in seqs.items()
        for p, (i, liked) in enumerate(seq)
    ]
    return pd.DataFrame(rows)


def examples_from(inter: pd.DataFrame, history_len: int = 10) -> pd.DataFrame:
    """The paper's split as schema.EXAMPLES: train 3rd last, valid 2nd last, test last."""
    rows = []
    for u, g in inter.sort_values(["user_id", "position"]).groupby("user_id", sort=False):
        items, liked = g["item_id"].tolist(), g["liked"].tolist()
        for split, off in (("train", 3), ("valid", 2), ("test", 1)):
            p = len(items) - off
            s = max(0, p - history_len)
            rows.append(
                dict(
                    example_id=f"{split}:{u}",
                    split=split,
                    user_id=u,
                    target_item_id=items[p],
                    target_rating=5.0 if liked[p] else 1.0,
                    target_timestamp=1000 + p,
                    label=int(liked[p]),
                    history_item_ids=items[s:p],
                    history_ratings=[5.0 if x else 1.0 for x in liked[s:p]],
                    history_liked=liked[s:p],
                    sample_rank=0,
                )
            )
    return pd.DataFrame(rows)


HAND = {  # user: [(item, liked)], oldest first; last three are train/valid/test targets
    "a": [("x", True), ("y", True), ("x", False), ("z", True), ("y", False), ("x", True)],
    "b": [("y", False), ("z", False), ("x", True), ("y", True), ("z", True)],
}


def test_hand_computed_rates():
    inter = interactions_from(HAND)
    ex = examples_from(inter, history_len=2)
    train = training_interactions(inter)
    # a keeps positions 0..3, b keeps 0..2: the valid and test targets are never inside
    assert sorted(map(tuple, train[["user_id", "position"]].to_numpy().tolist())) == [
        ("a", 0),
        ("a", 1),
        ("a", 2),
        ("a", 3),
        ("b", 0),
        ("b", 1),
        ("b", 2),
    ]
    prior = train["liked"].mean()  # 4 liked of 7
    assert prior == pytest.approx(4 / 7)
    test = ex[ex["split"] == "test"].set_index("user_id")
    u = user_like_rate(test, prior_rate=prior, prior_strength=2.0)
    # a's history window (2): z liked, y disliked -> (1 + 2*4/7) / (2 + 2)
    assert u[0] == pytest.approx((1 + 2 * prior) / 4)
    # all_before: a has 5 interactions before its test target, 3 liked
    u_all = user_like_rate(
        ex[ex["split"] == "test"], prior_rate=prior, prior_strength=2.0, scope="all_before", interactions=inter
    )
    assert u_all[0] == pytest.approx((3 + 2 * prior) / 7)
    it = item_like_rate(ex, inter, prior_rate=prior, prior_strength=2.0)
    ex = ex.assign(item_rate=it).set_index("example_id")
    # test:a targets x: in training, x liked by a@0, disliked by a@2, liked by b@2 -> 2 of 3
    assert ex.loc["test:a", "item_rate"] == pytest.approx((2 + 2 * prior) / 5)
    # train:a targets z@3 (liked by a, disliked by b@1): a's own interaction is left out -> 0 of 1
    assert ex.loc["train:a", "item_rate"] == pytest.approx((0 + 2 * prior) / 3)
    assert smoothed_rate(np.array([0.0]), np.array([0.0]), 0.3)[0] == pytest.approx(0.3)


def test_unknown_scope_and_mismatched_tables_fail_clearly():
    inter = interactions_from(HAND)
    ex = examples_from(inter)
    with pytest.raises(ValueError, match="scope must be"):
        user_like_rate(ex, prior_rate=0.5, scope="everything")
    wrong = ex.copy()
    wrong.loc[wrong["example_id"] == "test:b", "target_item_id"] = "q"
    with pytest.raises(ValueError, match="test:b.*not the test target of user b"):
        user_like_rate(wrong, prior_rate=0.5, scope="all_before", interactions=inter)


def synthetic_bias(n_users=600, n_items=60, seed=0):
    """Likes depend on a user propensity (0.15 or 0.85) and an item propensity (+-0.1)."""
    rng = np.random.default_rng(seed)
    item_shift = {f"i{j}": (0.1 if j % 2 else -0.1) for j in range(n_items)}
    seqs = {}
    for u in range(n_users):
        base = 0.85 if rng.random() < 0.5 else 0.15
        seq = []
        for _ in range(rng.integers(6, 14)):
            item = f"i{rng.integers(n_items)}"
            seq.append((item, bool(rng.random() < base + item_shift[item])))
        seqs[f"u{u}"] = seq
    return interactions_from(seqs)


def test_bias_baselines_on_synthetic_data_with_known_answer():
    inter = synthetic_bias()
    ex = examples_from(inter)
    test = ex[ex["split"] == "test"]
    rows, info = bias_baselines(inter, ex, test, seed=0)
    assert set(rows["method"]) == {"user_like_rate", "item_like_rate", "bias_logreg"}
    assert (rows["k"] == 0).all() and rows["p_yes"].between(0, 1).all()
    auc = {m: roc_auc_score(g["label"], g["p_yes"]) for m, g in rows.groupby("method")}
    # the user propensity dominates; the item effect is small but real
    assert auc["user_like_rate"] > 0.8
    assert 0.5 < auc["item_like_rate"] < 0.65
    assert auc["bias_logreg"] > auc["user_like_rate"] - 0.01
    assert info["logreg_coef"]["user_like_rate"] > 0 and info["logreg_coef"]["item_like_rate"] > 0
    assert info["logreg_n_train"] == 600


def _flip_last(inter: pd.DataFrame, n_last: int) -> pd.DataFrame:
    out = inter.copy()
    last = out.groupby("user_id")["position"].transform("max") - out["position"] < n_last
    out.loc[last, "liked"] = ~out.loc[last, "liked"]
    return out


def test_no_leakage_of_valid_or_test_labels():
    inter = synthetic_bias(n_users=200, seed=1)
    ex = examples_from(inter)
    test = ex[ex["split"] == "test"]
    a, _ = bias_baselines(inter, ex, test)
    # flipping every test label changes no test score
    flipped = _flip_last(inter, 1)
    ex_f = examples_from(flipped)
    b, _ = bias_baselines(flipped, ex_f, ex_f[ex_f["split"] == "test"])
    np.testing.assert_allclose(a["p_yes"].to_numpy(), b["p_yes"].to_numpy())
    assert (a["label"].to_numpy() != b["label"].to_numpy()).all()
    # flipping every valid and test label changes no item rate (the valid label may enter a
    # test example's user history: it precedes the test target, so that is allowed)
    flipped2 = _flip_last(inter, 2)
    ex_f2 = examples_from(flipped2)
    prior = 0.5
    np.testing.assert_allclose(
        item_like_rate(ex, inter, prior_rate=prior), item_like_rate(ex_f2, flipped2, prior_rate=prior)
    )


def release_test_examples(release_dir) -> pd.DataFrame:
    """Test examples of the authors' release: user_test.json windows (last id = target), the
    like labels (rating > 3) looked up in ratings.csv (last rating of that user and item)."""
    ratings = pd.read_csv(release_dir / "ratings.csv")
    liked = {(str(u), str(i)): r > 3 for i, u, r in zip(ratings["item"], ratings["user"], ratings["rating"])}
    windows = json.loads((release_dir / "user_test.json").read_text())
    rows = []
    for user, window in windows.items():
        ids = [str(i) for i in window]
        if (user, ids[-1]) not in liked:
            continue  # a released target without a rating (2 of 624 users)
        hist = [i for i in ids[:-1] if (user, i) in liked]
        rows.append(
            dict(
                example_id=f"test:{user}",
                split="test",
                user_id=user,
                target_item_id=ids[-1],
                label=int(liked[(user, ids[-1])]),
                history_item_ids=hist,
                history_liked=[liked[(user, i)] for i in hist],
            )
        )
    return pd.DataFrame(rows)


def test_user_like_rate_on_the_released_beauty_split(shared_data):
    release = shared_data / "reasoningrec_release" / "beauty"
    if not (release / "ratings.csv").is_file():
        pytest.skip(f"{release}/ratings.csv is absent")
    test = release_test_examples(release)
    assert len(test) == 622
    ratings = pd.read_csv(release / "ratings.csv")
    prior = float((ratings["rating"] > 3).mean())
    auc = roc_auc_score(test["label"], user_like_rate(test, prior_rate=prior))
    # measured 0.842 (622 test users, 5 history items each): above the paper's ReasoningRec 0.798
    assert auc == pytest.approx(0.84, abs=0.01)
