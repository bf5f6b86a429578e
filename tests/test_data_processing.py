"""The paper's transforms on small synthetic cases with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rrlib.config.params import defaults
from rrlib.data import processing as P
from rrlib.data.loaders import RawDataset
from rrlib.data.sampling import sample_users, stratified_ranks


def frame(rows):
    """rows: (user, item, rating, timestamp[, review]) in file order."""
    df = pd.DataFrame(
        [r if len(r) == 5 else (*r, "") for r in rows],
        columns=["user_id", "item_id", "rating", "timestamp", "review_text"],
    )
    df["rating"] = df["rating"].astype(float)
    df["summary"] = ""
    df["source_order"] = np.arange(len(df))
    return df


# --------------------------------------------------------------------------- dedup and ties
def test_dedup_keep_last_first_all():
    inter = frame([("u", "a", 1, 10), ("u", "b", 4, 20), ("u", "a", 5, 30), ("u", "a", 5, 30)])
    last, s = P.deduplicate(inter, "keep_last")
    assert sorted(zip(last["item_id"], last["rating"])) == [("a", 5.0), ("b", 4.0)]
    assert s["duplicate_pairs"] == 1 and s["duplicate_rows_extra"] == 2 and s["exact_duplicate_rows"] == 1
    assert s["pairs_with_conflicting_ratings"] == 1 and s["rows_removed"] == 2
    first, _ = P.deduplicate(inter, "keep_first")
    assert sorted(zip(first["item_id"], first["rating"])) == [("a", 1.0), ("b", 4.0)]
    keep, s = P.deduplicate(inter, "keep_all")
    assert len(keep) == 4 and s["rows_removed"] == 0


def test_dedup_keep_last_is_by_time_not_file_order():
    inter = frame([("u", "a", 5, 30), ("u", "a", 1, 10)])  # the later row in the file is older
    out, _ = P.deduplicate(inter, "keep_last")
    assert out["rating"].tolist() == [5.0]


def test_tie_order_file_vs_item():
    inter = frame([("u", "z", 5, 10), ("u", "b", 5, 10), ("u", "m", 5, 5)])
    by_file = P.order_interactions(inter, "file")
    assert by_file["item_id"].tolist() == ["m", "z", "b"] and by_file["position"].tolist() == [0, 1, 2]
    by_item = P.order_interactions(inter, "item")
    assert by_item["item_id"].tolist() == ["m", "b", "z"]
    assert P.tie_stats(by_file) == {"interactions_sharing_a_timestamp": 2, "users_with_ties": 1}


# --------------------------------------------------------------------------- k-core, binarize, figure 2
def test_user_kcore_and_figure2():
    inter = frame(
        [("a", str(i), 5, i) for i in range(5)] + [("b", str(i), 5, i) for i in range(3)] + [("c", "1", 5, 1)]
    )
    assert set(P.user_kcore(inter, 3)["user_id"]) == {"a", "b"}
    assert set(P.user_kcore(inter, 5)["user_id"]) == {"a"}
    fig = P.users_with_at_least(inter, range(1, 7))
    assert fig["users"].tolist() == [3, 2, 2, 1, 1, 0]


def test_binarize_threshold_is_strict():
    out = P.binarize(frame([("u", "a", 3, 1), ("u", "b", 3.5, 2), ("u", "c", 4, 3)]), 3.0)
    assert out["liked"].tolist() == [False, True, True]


# --------------------------------------------------------------------------- split, history, profile
def seq_user(n, user="u", rating=lambda i: 5 if i % 2 else 2):
    inter = frame([(user, f"i{i}", rating(i), 100 + i) for i in range(n)])
    return P.binarize(P.order_interactions(inter, "file"), 3.0)


def test_split_targets_and_histories():
    ex, stats = P.build_examples(seq_user(8), history_len=3)
    ex = ex.set_index("split")
    assert ex.loc["test", "target_item_id"] == "i7" and ex.loc["valid", "target_item_id"] == "i6"
    assert ex.loc["train", "target_item_id"] == "i5"
    assert ex.loc["test", "history_item_ids"] == ["i4", "i5", "i6"]
    assert ex.loc["train", "history_item_ids"] == ["i2", "i3", "i4"]
    assert ex.loc["test", "history_liked"] == [False, True, False]
    assert ex.loc["test", "label"] == 1 and ex.loc["valid", "label"] == 0
    assert ex.loc["test", "example_id"] == "test:u"
    assert stats["dropped_empty_history"] == {"test": 0, "valid": 0, "train": 0}


def test_short_user_history_truncated_and_empty_history_dropped():
    ex, stats = P.build_examples(seq_user(3), history_len=10)
    assert set(ex["split"]) == {"valid", "test"}  # the train target is the first interaction
    assert stats["dropped_empty_history"]["train"] == 1
    assert ex.set_index("split").loc["test", "history_item_ids"] == ["i0", "i1"]


def test_mark_targets():
    out = P.mark_targets(seq_user(5))
    assert out["target_of"].tolist() == ["", "", "train", "valid", "test"]


def test_profile_items_before_test_window():
    inter = seq_user(30)
    ex, _ = P.build_examples(inter, history_len=10)
    users = P.profile_items(inter, ex, m=15)
    row = users.iloc[0]
    # test window = positions 19..29: profile = first 15 of positions 0..18
    assert row["profile_item_ids"] == [f"i{i}" for i in range(15)]
    assert row["profile_positions"] == list(range(15))
    short = P.profile_items(seq_user(14), P.build_examples(seq_user(14), 10)[0], m=15).iloc[0]
    assert short["profile_item_ids"] == ["i0", "i1", "i2"]  # window = positions 3..13


def test_profile_excludes_items_of_the_test_window_and_targets():
    # keep_all data: item 'x' occurs early and again inside the test window
    inter = frame(
        [("u", "x", 5, 1), ("u", "a", 5, 2), ("u", "b", 5, 3), ("u", "x", 5, 4), ("u", "c", 5, 5), ("u", "d", 5, 6)]
    )
    inter = P.binarize(P.order_interactions(inter, "file"), 3.0)
    ex, _ = P.build_examples(inter, history_len=2)
    users = P.profile_items(inter, ex, m=15)
    assert users.iloc[0]["profile_item_ids"] == ["a", "b"]  # 'x' is in the test window


def test_examples_from_windows_exact_realigned_and_missing():
    inter = frame(
        [
            ("u", "a", 5, 1),
            ("u", "b", 1, 2),
            ("u", "c", 5, 3),
            ("u", "c", 5, 3),
            ("u", "d", 2, 4),
            ("v", "p", 5, 1),
            ("v", "q", 5, 2),
            ("v", "r", 5, 3),
            ("v", "s", 5, 4),
        ]
    )
    inter = P.binarize(P.order_interactions(inter, "file"), 3.0)
    windows = {
        "train": {"u": ["a", "b", "c"], "v": ["p", "q"]},
        "valid": {"u": ["a", "b", "c", "c"], "v": ["p", "GONE", "q", "r"]},
        "test": {"u": ["b", "c", "c", "d"], "v": ["q", "r", "s", "MISSING"]},
    }
    ex, stats = P.examples_from_windows(inter, windows)
    e = ex.set_index("example_id")
    assert e.loc["train:u", "target_position"] == 2 and e.loc["valid:u", "target_position"] == 3
    assert e.loc["test:u", "history_item_ids"] == ["b", "c", "c"] and e.loc["test:u", "label"] == 0
    assert e.loc["valid:v", "history_item_ids"] == ["p", "q"]  # unknown id dropped from the history
    assert "test:v" not in e.index  # target absent from the ratings
    assert stats["dropped_target_not_in_ratings"]["test"] == 1 and stats["history_ids_not_in_ratings"] == 1
    assert stats["exact_slices"] == 4 and stats["realigned"] == 2


# --------------------------------------------------------------------------- sampling
def test_stratified_ranks_nested_and_proportional():
    labels = np.array([1] * 70 + [0] * 30)
    ranks = stratified_ranks(labels, 42, "train")
    assert sorted(ranks) == list(range(100))
    for k in range(1, 101):
        n_pos = labels[ranks < k].sum()
        assert abs(n_pos - k * 0.7) <= 1.0, (k, n_pos)
    # nested by construction and seeded
    assert (stratified_ranks(labels, 42, "train") == ranks).all()
    assert not (stratified_ranks(labels, 43, "train") == ranks).all()
    assert not (stratified_ranks(labels, 42, "valid") == ranks).all()


def test_assign_sample_ranks_per_split_and_kshot_nesting():
    from rrlib.data.schema import eval_subset, kshot

    rows = [
        {"split": s, "user_id": f"u{i:03d}", "label": int(i % 4 != 0)}
        for s in ("train", "valid", "test")
        for i in range(200)
    ]
    ex = P.assign_sample_ranks(pd.DataFrame(rows), seed=7)
    for s in ("train", "valid", "test"):
        assert sorted(ex.loc[ex["split"] == s, "sample_rank"]) == list(range(200))
    k64, k128 = kshot(ex, 64), kshot(ex, 128)
    assert set(k64["user_id"]) < set(k128["user_id"])
    assert k64["label"].sum() == 48  # 75% liked in the split
    assert len(eval_subset(ex, "test", 50)) == 50
    # independent of the input row order
    shuffled = P.assign_sample_ranks(pd.DataFrame(rows).sample(frac=1, random_state=1), seed=7)
    pd.testing.assert_frame_equal(ex, shuffled)


def test_sample_users_seeded_subset():
    users = [f"u{i}" for i in range(100)]
    a = sample_users(users, 10, 1)
    assert len(a) == 10 and a == sample_users(users, 10, 1) and set(a) <= set(users)
    assert sample_users(users, 0, 1) == users and sample_users(users, 500, 1) == users


# --------------------------------------------------------------------------- whole build on synthetic data
def test_build_tables_synthetic_end_to_end():
    rows = []
    for u in range(40):
        for i in range(8):
            rows.append((f"u{u}", f"i{(u + i) % 12}", 5 if (u + i) % 3 else 2, 1000 + 10 * i, f"review {u}-{i}"))
    inter = frame(rows)
    inter["summary"] = "Nice"
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(12)],
            "title": "",
            "title_source": "",
            "attributes": "",
            "metadata_description": "",
        }
    )
    raw = RawDataset("toy", inter, items, {"dataset": "toy"})
    p = defaults() | {
        "KCORE": 5,
        "HISTORY_LEN": 3,
        "PROFILE_ITEMS": 2,
        "KSHOT_SIZES": [8, 16],
        "N_VALID": 10,
        "N_TEST": 10,
        "REVIEWS_PER_ITEM": 4,
    }
    b = P.build_tables(raw, p, progress=False)
    assert len(b.examples) == 120 and set(b.examples["split"]) == {"train", "valid", "test"}
    assert b.users["profile_item_ids"].map(len).tolist() == [2] * 40  # 8 - (3 + 1) = 4 candidates
    assert (b.items["sampled_reviews"].map(len) == 4).all()
    assert (b.items["title_source"] == "review_summary").all()
    assert b.stats["reviews"]["eval_target_reviews_excluded"] == 80
    assert b.figure2.set_index("k").loc[8, "users"] == 40
    assert (b.interactions["target_of"] != "").sum() == 120
