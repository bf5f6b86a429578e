"""No example's own target review shapes its own input: reviews written at ANY target (train,
valid, test) and the same user's copies of them never reach an item's Algorithm 1 sample or its
review-headline title. Synthetic marked reviews, then every example of the embedded data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from audit_example import EMBEDDED_BEAUTY

from rrlib.config.params import defaults
from rrlib.config.paths import RunPaths
from rrlib.data import load_dataset, load_tables, prepare
from rrlib.data import processing as P
from rrlib.data.collapse import collapse_copies
from rrlib.data.loaders import RawDataset
from rrlib.data.reviews import trim_words


def _toy(copy_of_train_target: bool = False):
    rows = []
    for u in range(6):
        for i in range(6):
            split = {5: "test", 4: "valid", 3: "train"}.get(i, "")
            marker = f"LEAK{split.upper()}" if split else "ok"
            rows.append((f"u{u}", f"i{i}", 5.0 if u % 2 else 1.0, 100 + i, f"{marker} review {u} {i}", marker))
        if copy_of_train_target:  # the same user re-posts the train target's review on item i0, earlier
            rows.append((f"u{u}", "i0", 5.0 if u % 2 else 1.0, 50, f"LEAKTRAIN review {u} 3", "LEAKTRAIN"))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp", "review_text", "summary"])
    inter["source_order"] = np.arange(len(inter))
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(6)],
            "title": "",
            "title_source": "",
            "attributes": "",
            "metadata_description": "",
        }
    )
    return RawDataset("toy", inter, items, {"dataset": "toy"})


PARAMS = defaults() | EMBEDDED_BEAUTY | {"KSHOT_SIZES": [2], "N_VALID": 2, "N_TEST": 2, "LEAKAGE_THRESHOLD": 1.0}


def test_no_target_review_or_headline_reaches_descriptions_or_titles():
    b = P.build_tables(_toy(), PARAMS, progress=False)
    texts = [r["text"] for reviews in b.items["sampled_reviews"] for r in reviews]
    assert texts and all(t.startswith("ok") for t in texts)
    assert not b.items["title"].str.contains("LEAK").any()
    # i3 is only ever a train target (and i4/i5 valid/test ones): no reviews, id titles
    tail = b.items.set_index("item_id").loc[["i3", "i4", "i5"]]
    assert (tail["sampled_reviews"].map(len) == 0).all() and (tail["title_source"] == "id").all()
    r = b.stats["reviews"]
    assert (r["train_target_reviews_excluded"], r["eval_target_reviews_excluded"]) == (6, 12)
    assert r["copies_of_target_reviews_excluded"] == 0 and r["pool_reviews_with_text"] == 18


def test_same_user_copy_of_a_target_review_is_excluded_too():
    """With the collapse off and every row kept, a target's review re-posted by the same user on
    another item must still stay out of the pool."""
    p = PARAMS | {"COLLAPSE_COPIES": False, "DEDUP": "keep_all"}
    b = P.build_tables(_toy(copy_of_train_target=True), p, progress=False)
    texts = [r["text"] for reviews in b.items["sampled_reviews"] for r in reviews]
    assert texts and not any("LEAK" in t for t in texts)
    assert b.stats["reviews"]["copies_of_target_reviews_excluded"] == 6


def test_the_guard_can_fail():
    """Without the exclusion rule the marked reviews do reach the sample (the test above is not vacuous)."""
    raw = _toy()
    inter = raw.interactions
    pool = P.order_interactions(inter, "file")
    from rrlib.data.reviews import sample_item_reviews

    reviews = sample_item_reviews(pool, ["i3"], 10, 50, 42, progress=False)
    assert any("LEAKTRAIN" in r["text"] for r in reviews["i3"])


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    paths = RunPaths.of(tmp_path_factory.mktemp("emb"))
    card = prepare(EMBEDDED_BEAUTY | {"HISTORY_LEN": 3}, paths, progress=False)
    return card, load_tables(paths), paths


def test_no_example_sees_its_own_target_review_on_real_data(embedded):
    """For every example of every split: its target's review is not among the sampled reviews of
    its target item, unless another row of the (collapsed, deduplicated) file carries the same
    text for that item."""
    card, t, paths = embedded
    raw, _ = collapse_copies(load_dataset("embedded_beauty").interactions)
    counts = raw.assign(t=raw["review_text"].map(lambda s: trim_words(s, 50))).groupby(["item_id", "t"]).size()
    sampled = {r.item_id: {x["text"] for x in r.sampled_reviews} for r in t.items.itertuples()}
    inter = t.interactions
    targets = inter[(inter["target_of"] != "") & (inter["review_text"].str.strip() != "")]
    checked = {"train": 0, "valid": 0, "test": 0}
    for row in targets.itertuples(index=False):
        text = trim_words(row.review_text, 50)
        if counts.get((row.item_id, text), 0) == 1:
            assert text not in sampled[row.item_id], (row.user_id, row.target_of)
            checked[row.target_of] += 1
    assert min(checked.values()) >= 15
    assert card["reviews"]["train_target_reviews_excluded"] == 20
    assert "40 written at validation/test targets, 20 at training targets" in paths.data_card_md.read_text()
