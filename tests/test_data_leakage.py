"""Leakage guard: no validation/test target, its label, or anything at/after it in the user's
sequence appears in that example's history or in the user's profile items; held-out reviews
never reach item descriptions or titles. Checked on the real embedded data, the ML-1M prefix,
the released Beauty split, and a synthetic case with marked reviews."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from audit_example import EMBEDDED_BEAUTY

from rrlib.config.params import defaults
from rrlib.config.paths import RunPaths
from rrlib.data import load_dataset, load_tables, prepare
from rrlib.data import processing as P
from rrlib.data.loaders import RawDataset
from rrlib.data.reviews import trim_words


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    paths = RunPaths.of(tmp_path_factory.mktemp("emb"))
    prepare(EMBEDDED_BEAUTY | {"HISTORY_LEN": 3}, paths, progress=False)  # short window: profiles exist for some users
    return load_tables(paths)


@pytest.fixture(scope="module")
def ml1m(tmp_path_factory, shared_data):
    paths = RunPaths.of(tmp_path_factory.mktemp("ml1m"))
    prepare(
        {"DATASET": "ml1m", "DATA_DIR": str(shared_data / "ml-1m"), "KCORE": 20, "MAX_USERS": 600, "PROFILE_ITEMS": 15},
        paths,
        progress=False,
    )
    return load_tables(paths)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    paths = RunPaths.of(tmp_path_factory.mktemp("rel"))
    prepare(EMBEDDED_BEAUTY | {"DATASET": "release_beauty"}, paths, progress=False)
    return load_tables(paths)


def _sequences(interactions: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for u, g in interactions.sort_values(["user_id", "position"]).groupby("user_id", sort=False):
        assert g["position"].tolist() == list(range(len(g)))
        out[u] = {c: g[c].to_numpy() for c in ("item_id", "rating", "liked", "timestamp", "target_of")}
    return out


def assert_no_leakage(t, unique_pairs: bool):
    seqs = _sequences(t.interactions)
    for ex in t.examples.itertuples(index=False):
        s, tp = seqs[ex.user_id], ex.target_position
        assert s["item_id"][tp] == ex.target_item_id and s["rating"][tp] == ex.target_rating
        assert bool(s["liked"][tp]) == bool(ex.label) and s["target_of"][tp] == ex.split
        hp = np.asarray(ex.history_positions, dtype=int)
        assert (hp < tp).all(), ex.example_id  # nothing at or after the target
        assert (np.diff(hp) > 0).all()
        assert s["item_id"][hp].tolist() == list(ex.history_item_ids)
        assert s["rating"][hp].tolist() == list(ex.history_ratings)
        assert s["liked"][hp].tolist() == list(ex.history_liked)
        assert (s["timestamp"][hp] <= ex.target_timestamp).all()
        if unique_pairs:
            assert ex.target_item_id not in set(ex.history_item_ids)
    by_user = {u: g for u, g in t.examples.groupby("user_id")}
    for row in t.users.itertuples(index=False):
        ex = by_user.get(row.user_id)
        pp = np.asarray(row.profile_positions, dtype=int)
        if ex is None:
            assert len(pp) == 0
            continue
        test = ex[ex["split"] == "test"]
        anchor = test.iloc[0] if len(test) else ex.sort_values("target_position").iloc[-1]
        window_start = min(list(anchor["history_positions"]) + [anchor["target_position"]])
        assert (pp < window_start).all(), row.user_id
        assert (pp < ex["target_position"].min()).all()
        banned = set(ex["target_item_id"]) | set(anchor["history_item_ids"])
        assert not banned & set(row.profile_item_ids), row.user_id
        s = seqs[row.user_id]
        assert s["item_id"][pp].tolist() == list(row.profile_item_ids)
        assert s["liked"][pp].tolist() == list(row.profile_liked)
        eval_ts = ex.loc[ex["split"].isin(["valid", "test"]), "target_timestamp"]
        if len(eval_ts):
            assert (s["timestamp"][pp] <= eval_ts.min()).all()


def test_no_leakage_embedded(embedded):
    assert (embedded.users["profile_item_ids"].map(len) > 0).any()
    assert_no_leakage(embedded, unique_pairs=True)


def test_no_leakage_ml1m_prefix(ml1m):
    assert (ml1m.users["profile_item_ids"].map(len) == 15).mean() > 0.9
    assert_no_leakage(ml1m, unique_pairs=True)


def test_no_leakage_release_windows(release):
    # the release keeps repeated ids (its windows contain them), so a target may recur in its history
    assert_no_leakage(release, unique_pairs=False)


def test_heldout_reviews_absent_from_sampled_reviews_on_real_data(embedded):
    """A review written only at a valid/test target (its text occurs nowhere else in the raw
    file for that item) must not be among the item's sampled reviews."""
    raw = load_dataset("embedded_beauty").interactions
    raw_counts = raw.assign(t=raw["review_text"].map(lambda s: trim_words(s, 50))).groupby(["item_id", "t"]).size()
    inter = embedded.interactions
    held = inter[inter["target_of"].isin(["valid", "test"]) & (inter["review_text"].str.strip() != "")]
    sampled = {r.item_id: {x["text"] for x in r.sampled_reviews} for r in embedded.items.itertuples()}
    checked = 0
    for row in held.itertuples(index=False):
        text = trim_words(row.review_text, 50)
        if raw_counts.get((row.item_id, text), 0) == 1:
            assert text not in sampled[row.item_id]
            checked += 1
    assert checked >= 30  # 20 users x 2 held-out targets remain once the copies are collapsed


def test_heldout_reviews_and_headlines_never_used_synthetic():
    rows = []
    for u in range(6):
        for i in range(6):
            split = {5: "test", 4: "valid", 3: "train"}.get(i, "")
            marker = f"LEAK{split.upper()}" if split in ("valid", "test") else "ok"
            rows.append((f"u{u}", f"i{i}", 5.0 if u % 2 else 1.0, 100 + i, f"{marker} review {u} {i}", marker))
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
    b = P.build_tables(
        RawDataset("toy", inter, items, {"dataset": "toy"}),
        defaults() | EMBEDDED_BEAUTY | {"KSHOT_SIZES": [2], "N_VALID": 2, "N_TEST": 2},
        progress=False,
    )
    texts = [r["text"] for reviews in b.items["sampled_reviews"] for r in reviews]
    assert texts and not any("LEAK" in t for t in texts)
    assert not b.items["title"].str.contains("LEAK").any()
    # items i4/i5 are only ever valid/test targets: no reviews, id titles
    tail = b.items.set_index("item_id").loc[["i4", "i5"]]
    assert (tail["sampled_reviews"].map(len) == 0).all() and (tail["title_source"] == "id").all()
    # like rates and counts are computed without valid/test targets
    assert b.items.set_index("item_id").loc["i5", "n_ratings"] == 0
    assert np.isnan(b.items.set_index("item_id").loc["i5", "like_rate"])


def test_guard_catches_a_leaking_history_and_profile(embedded):
    """The guard is not vacuous: planting the target in a history, or a test-window item in a
    profile, makes it fail."""
    from dataclasses import replace

    ex = embedded.examples.copy()
    i = ex.index[ex["split"] == "test"][0]
    ex.at[i, "history_positions"] = list(ex.at[i, "history_positions"]) + [ex.at[i, "target_position"]]
    ex.at[i, "history_item_ids"] = list(ex.at[i, "history_item_ids"]) + [ex.at[i, "target_item_id"]]
    with pytest.raises(AssertionError):
        assert_no_leakage(replace(embedded, examples=ex), unique_pairs=True)
    users = embedded.users.copy()
    j = users.index[0]
    test = embedded.examples[
        (embedded.examples["user_id"] == users.at[j, "user_id"]) & (embedded.examples["split"] == "test")
    ].iloc[0]
    users.at[j, "profile_positions"] = [test["target_position"] - 1]
    users.at[j, "profile_item_ids"] = [test["history_item_ids"][-1]]
    with pytest.raises(AssertionError):
        assert_no_leakage(replace(embedded, users=users), unique_pairs=True)
