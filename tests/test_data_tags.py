"""User tags join the item attributes after the split, never from a user's own target."""

from __future__ import annotations

import pandas as pd

from rrlib.config.params import defaults
from rrlib.data import load_dataset
from rrlib.data import processing as P
from rrlib.data.tags import BOOKKEEPING_TAGS, apply_tags, target_pairs


def _inter():
    # u1's targets: i3 (train), i4 (valid), i5 (test); u2's: i1 (test)
    return pd.DataFrame(
        {
            "user_id": ["u1"] * 5 + ["u2"] * 2,
            "item_id": ["i1", "i2", "i3", "i4", "i5", "i2", "i1"],
            "target_of": ["", "", "train", "valid", "test", "", "test"],
        }
    )


def _items():
    return pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3", "i4", "i5"],
            "title": list("ABCDE"),
            "attributes": ["year: 1999", "", "", "", ""],
        }
    )


def _tags(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "tag", "timestamp"])


def test_tags_on_a_users_own_target_never_reach_the_item():
    tags = _tags(
        [
            ("u1", "i5", "boring", 1),
            ("u2", "i5", "slow", 2),  # u1's test target: only u2's tag
            ("u1", "i4", "loved it", 3),
            ("u1", "i3", "meh", 4),  # u1's valid/train targets
            ("u2", "i1", "classic", 5),
            ("u1", "i1", "classic", 6),  # u2's test target; u1's own history
            ("u1", "i2", "funny", 7),
            ("u2", "i2", " Funny ", 8),
            ("u3", "i2", "quirky", 9),
            ("u3", "i2", "in Netflix queue", 10),
        ]
    )
    notes: list[str] = []
    out, stats = apply_tags(_items(), tags, _inter(), notes)
    attrs = out.set_index("item_id")["attributes"]
    assert attrs["i5"] == "tags: slow"
    assert attrs["i4"] == "" and attrs["i3"] == ""
    assert attrs["i1"] == "year: 1999; tags: classic"  # u1's tag on i1 (not u1's target) is kept
    assert attrs["i2"] == "tags: funny, quirky"  # case-insensitive, most users first, bookkeeping dropped
    assert stats["excluded_on_own_target"] == {"train": 1, "valid": 1, "test": 2}
    assert stats["excluded_on_own_target_total"] == 4 and stats["bookkeeping_or_blank_dropped"] == 1
    assert "4 tags written by a user on their own target were excluded (test 2, valid 1, train 1)" in notes[0]


def test_tags_are_capped_and_absent_tags_change_nothing():
    tags = _tags([(f"u{k}", "i2", f"t{k}", k) for k in range(12)] + [("x", "i2", "t11", 99)])
    out, stats = apply_tags(_items(), tags, _inter(), max_tags=3)
    assert out.set_index("item_id").loc["i2", "attributes"] == "tags: t11, t0, t1"
    same, none = apply_tags(_items(), None, _inter())
    assert none is None and same.equals(_items())
    assert target_pairs(_inter())["split"].tolist() == ["train", "valid", "test", "test"]


def test_ml_latest_small_tags_after_the_split():
    raw = load_dataset("ml_latest_small")
    p = {**defaults(), "KCORE": 20, "MAX_USERS": 0, "HISTORY_LEN": 10, "N_TEST": 0, "N_VALID": 0, "REVIEWS_PER_ITEM": 0}
    built = P.build_tables(raw, p, progress=False)
    shown = {
        i: {t.lower() for t in a.split("tags: ", 1)[1].split(", ")}
        for i, a in zip(built.items["item_id"], built.items["attributes"])
        if "tags: " in a
    }
    targets = built.interactions.loc[built.interactions["target_of"] != "", ["user_id", "item_id"]]
    own = raw.tags.merge(targets, on=["user_id", "item_id"])
    assert len(own) > 0
    others = raw.tags.merge(targets, on=["user_id", "item_id"], how="left", indicator=True)
    others = others[others["_merge"] == "left_only"]
    for _, t in own.iterrows():  # a target user's tag shows only if someone else wrote it there too
        if t["tag"].strip().lower() in shown.get(t["item_id"], set()):
            same = others[(others["item_id"] == t["item_id"]) & (others["tag"].str.lower() == t["tag"].lower())]
            assert len(same), (t["user_id"], t["item_id"], t["tag"])
    counted = own[~own["tag"].str.strip().str.lower().isin(BOOKKEEPING_TAGS)]
    assert built.stats["tags"]["excluded_on_own_target_total"] == len(counted)
    assert any(n.startswith("user tags:") for n in built.stats["notes"])
    assert len(shown) == built.stats["tags"]["items_with_tags"] > 1000
