"""K-shot sampling (KSHOT_SAMPLING): stratified (proportional), balanced (50/50, the ReasoningRec
authors) or random (the TALLRec authors); always nested, one order shared by every method."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from audit_example import EMBEDDED_BEAUTY

from rrlib.config.paths import RunPaths
from rrlib.data import DataError, load_tables, prepare
from rrlib.data import processing as P
from rrlib.data.sampling import balanced_limit, balanced_ranks, random_ranks, stratified_ranks
from rrlib.data.schema import kshot


def test_balanced_ranks_every_even_prefix_is_half_and_half_until_the_minority_runs_out():
    labels = np.array([1] * 70 + [0] * 30)
    ranks = balanced_ranks(labels, 42, "train")
    assert sorted(ranks) == list(range(100))
    assert balanced_limit(labels) == 60
    for k in range(2, 61, 2):
        assert labels[ranks < k].sum() == k // 2, k
    for k in range(1, 61, 2):
        assert abs(labels[ranks < k].sum() - k / 2) == 0.5
    assert labels[ranks >= 60].all()  # the rest is the majority label
    assert (balanced_ranks(labels, 42, "train") == ranks).all()
    assert not (balanced_ranks(labels, 43, "train") == ranks).all()


def test_random_ranks_is_a_seeded_permutation_ignoring_labels():
    labels = np.array([1] * 50 + [0] * 50)
    r = random_ranks(labels, 1, "train")
    assert sorted(r) == list(range(100)) and (random_ranks(labels, 1, "train") == r).all()
    assert (random_ranks(np.zeros(100), 1, "train") == r).all()  # labels play no part
    assert not (r == stratified_ranks(labels, 1, "train")).all()


def _examples(n_pos, n_neg):
    rows = [
        {"split": s, "user_id": f"u{i:03d}", "label": int(i < n_pos)}
        for s in ("train", "valid", "test")
        for i in range(n_pos + n_neg)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("how", ["stratified", "balanced", "random"])
def test_assign_sample_ranks_changes_only_the_train_split(how):
    ex = _examples(150, 80)
    a = P.assign_sample_ranks(ex, 7, how)
    base = P.assign_sample_ranks(ex, 7, "stratified")
    for split in ("valid", "test"):
        pd.testing.assert_frame_equal(a[a["split"] == split], base[base["split"] == split])
    k64, k128 = kshot(a, 64), kshot(a, 128)
    assert set(k64["user_id"]) < set(k128["user_id"])  # nested whatever the sampling
    if how == "balanced":
        assert k64["label"].sum() == 32 and k128["label"].sum() == 64
    if how == "stratified":
        assert abs(k64["label"].sum() - 64 * 150 / 230) <= 1


def test_balanced_impossible_says_so_with_the_counts():
    ex = P.assign_sample_ranks(_examples(90, 10), 7, "balanced")
    P.check_kshot_balance(ex, [8, 20], "balanced")  # 2 x 10 dislikes: K up to 20 works
    with pytest.raises(DataError, match=r"K=\[64\].*90 liked and 10 disliked.*stop at K=20"):
        P.check_kshot_balance(ex, [8, 64, 500], "balanced")  # 500 > split: only 'unavailable'
    P.check_kshot_balance(ex, [64], "stratified")  # no demand on balance
    with pytest.raises(DataError, match="KSHOT_SAMPLING='sorted'"):
        P.assign_sample_ranks(_examples(5, 5), 7, "sorted")


def test_card_reports_sampling_and_class_counts_per_k(tmp_path):
    """Release Beauty (462 training examples, 46 disliked after cleaning): balanced K=64 is 32/32."""
    paths = RunPaths.of(tmp_path / "bal")
    card = prepare(
        EMBEDDED_BEAUTY | {"DATASET": "release_beauty", "KSHOT_SIZES": [16, 64], "KSHOT_SAMPLING": "balanced"},
        paths,
        progress=False,
    )
    assert card["kshot_sampling"] == "balanced"
    assert card["kshot"]["64"] | {} == {
        "available": True,
        "sampling": "balanced",
        "like_rate": 0.5,
        "liked": 32,
        "disliked": 32,
    }
    assert card["audit"]["eval_sets"]["kshot_16"]["disliked"] == 8
    ex = load_tables(paths).examples
    assert set(kshot(ex, 16)["example_id"]) < set(kshot(ex, 64)["example_id"])
    assert "K-shot sampling: `balanced`" in paths.data_card_md.read_text()
    with pytest.raises(DataError, match="balanced sets stop at K=92"):
        prepare(
            EMBEDDED_BEAUTY | {"DATASET": "release_beauty", "KSHOT_SIZES": [64, 128], "KSHOT_SAMPLING": "balanced"},
            RunPaths.of(tmp_path / "too_many"),
            progress=False,
        )
