"""Algorithm 1 (stratified review sampling) and the title fallback, with known answers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from rrlib.data import reviews as R


def test_allocate_largest_remainder_known_answer():
    # quotas 7.14, 2.38, 0.48 -> floors 7, 2, 0 (9); the one left goes to the largest remainder (1 star)
    assert R.allocate({5.0: 30, 4.0: 10, 1.0: 2}, 10) == {5.0: 7, 4.0: 2, 1.0: 1}
    # exact quotas need no adjustment
    assert R.allocate({5.0: 50, 1.0: 50}, 10) == {5.0: 5, 1.0: 5}
    # remainder ties: more reviews first, then the higher rating
    assert R.allocate({5.0: 1, 4.0: 1, 3.0: 1, 2.0: 1}, 3) == {5.0: 1, 4.0: 1, 3.0: 1, 2.0: 0}


@pytest.mark.parametrize(
    "counts",
    [{5.0: 13, 4.0: 7, 3.0: 3, 1.0: 1}, {5.0: 100, 2.0: 1}, {5.0: 11}, {1.0: 4, 2.0: 4, 3.0: 4, 4.0: 4, 5.0: 4}],
)
def test_allocate_totals_exactly_p_and_never_exceeds_a_level(counts):
    for p in (1, 5, 10):
        if sum(counts.values()) <= p:
            continue
        alloc = R.allocate(counts, p)
        assert sum(alloc.values()) == p
        assert all(0 <= alloc[r] <= counts[r] for r in counts)
        total = sum(counts.values())
        assert all(abs(alloc[r] - counts[r] * p / total) < 1 for r in counts)


def test_select_reviews_stratified_seeded_and_trimmed():
    ratings = [5.0] * 30 + [4.0] * 10 + [1.0] * 2
    texts = [f"r{i} " + " ".join(["w"] * 80) for i in range(42)]
    out = R.select_reviews(ratings, texts, p=10, n_words=50, rng=R.item_rng(42, "item"))
    assert Counter(r["rating"] for r in out) == {5.0: 7, 4.0: 2, 1.0: 1}
    assert all(len(r["text"].split()) == 50 for r in out)
    again = R.select_reviews(ratings, texts, p=10, n_words=50, rng=R.item_rng(42, "item"))
    assert out == again
    other = R.select_reviews(ratings, texts, p=10, n_words=50, rng=R.item_rng(43, "item"))
    assert [r["text"] for r in other] != [r["text"] for r in out]
    # output keeps input (chronological) order
    idx = [int(r["text"].split()[0][1:]) for r in out]
    assert idx == sorted(idx)


def test_select_reviews_takes_all_when_at_most_p():
    out = R.select_reviews([5.0, 1.0], ["a  b\nc", "d"], p=10, n_words=2, rng=R.item_rng(0, "x"))
    assert out == [{"rating": 5.0, "text": "a b"}, {"rating": 1.0, "text": "d"}]
    assert R.select_reviews([5.0], ["a"], p=0, n_words=5, rng=R.item_rng(0, "x")) == []


def test_sample_item_reviews_skips_empty_text_and_is_order_independent():
    pool = pd.DataFrame(
        {
            "item_id": ["a"] * 12 + ["b"],
            "rating": [5.0] * 6 + [2.0] * 6 + [4.0],
            "review_text": [f"t{i}" for i in range(11)] + ["", "only"],
            "timestamp": range(13),
            "source_order": range(13),
        }
    )
    out = R.sample_item_reviews(pool, ["a", "b", "c"], p=4, n_words=50, seed=1, progress=False)
    assert len(out["a"]) == 4 and Counter(r["rating"] for r in out["a"]) == {5.0: 2, 2.0: 2}
    assert out["b"] == [{"rating": 4.0, "text": "only"}] and out["c"] == []
    shuffled = R.sample_item_reviews(
        pool.sample(frac=1, random_state=3), ["c", "b", "a"], p=4, n_words=50, seed=1, progress=False
    )
    assert shuffled == out


def test_headline_title_and_fallback():
    assert R.headline_title(["Five Stars", "Great shampoo", "great  shampoo", "Nice", "4 stars"]) == "Great shampoo"
    assert R.headline_title(["Five Stars", "", "ONE STAR"]) == ""
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "title": ["Real title", "", ""],
            "title_source": ["metadata", "", ""],
            "attributes": "",
            "metadata_description": "",
        }
    )
    pool = pd.DataFrame(
        {
            "item_id": ["b", "b", "c"],
            "summary": ["Soft towel", "Five Stars", "Five Stars"],
            "timestamp": [1, 2, 3],
            "source_order": [0, 1, 2],
        }
    )
    out = R.fallback_titles(items, pool).set_index("item_id")
    assert out.loc["a", "title"] == "Real title" and out.loc["a", "title_source"] == "metadata"
    assert out.loc["b", "title"] == "Soft towel [b]" and out.loc["b", "title_source"] == "review_summary"
    assert out.loc["c", "title"] == "item c" and out.loc["c", "title_source"] == "id"


def test_item_rng_differs_per_item_and_seed():
    a = R.item_rng(1, "x").random()
    assert a == R.item_rng(1, "x").random()
    assert a != R.item_rng(1, "y").random() and a != R.item_rng(2, "x").random()
    assert np.isfinite(a)
