"""Copy collapse (COLLAPSE_COPIES): one review of one user copied onto several listings becomes one
interaction. Synthetic cases with known answers, then the real All_Beauty 5-core file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from audit_example import EMBEDDED_BEAUTY

from rrlib.config.params import defaults
from rrlib.data import LeakageError, load_dataset
from rrlib.data import processing as P
from rrlib.data.collapse import collapse_copies, find_copy_sets, normalise_text

DAY = 86400


def frame(rows):
    """rows: (user, item, rating, timestamp, review) in file order."""
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp", "review_text"])
    df["rating"] = df["rating"].astype(float)
    df["summary"] = ""
    df["source_order"] = np.arange(len(df))
    return df


def test_copy_set_becomes_one_row_on_the_lowest_id():
    inter = frame(
        [
            ("u", "B3", 5, 10 * DAY, "great  gel"),
            ("u", "B1", 5, 10 * DAY, "great gel "),
            ("u", "B2", 5, 10 * DAY, "great gel"),
            ("u", "B9", 4, 11 * DAY, "other text"),
        ]
    )
    out, s = collapse_copies(inter)
    assert sorted(out["item_id"]) == ["B1", "B9"]
    assert s["copy_sets"] == 1 and s["rows_in_copy_sets"] == 3 and s["rows_removed"] == 2
    assert s["users_affected"] == 1 and s["items_in_copy_sets"] == 3 and s["largest_listing_set"] == 3
    assert s["items_left_without_rows"] == 2 and s["rows_out"] == 2
    assert out.loc[out["item_id"] == "B1", "source_order"].item() == 1  # the kept row itself


def test_what_is_not_a_copy():
    inter = frame(
        [
            ("u", "a", 5, DAY, "same text"),
            ("u", "b", 4, DAY, "same text"),  # different rating
            ("u", "c", 5, DAY, ""),
            ("u", "d", 5, DAY, "  "),  # no text
            ("v", "a", 5, DAY, "shared"),
            ("w", "b", 5, DAY, "shared"),  # different users
            ("x", "a", 5, DAY, "again"),
            ("x", "a", 5, DAY, "again"),  # same item: DEDUP's job
        ]
    )
    out, s = collapse_copies(inter)
    assert len(out) == len(inter) and s["copy_sets"] == 0 and s["rows_removed"] == 0


def test_numeric_ids_sort_as_numbers_and_the_earliest_row_wins_across_days():
    inter = frame([("u", "10", 5, 5 * DAY, "t"), ("u", "9", 5, 5 * DAY, "t")])
    assert collapse_copies(inter)[0]["item_id"].tolist() == ["9"]
    # re-posted four days later on another listing: the same review, kept once (the earliest)
    inter = frame([("u", "a", 5, 9 * DAY, "long review"), ("u", "z", 5, 5 * DAY, "long review")])
    out, s = collapse_copies(inter)
    assert out["item_id"].tolist() == ["z"] and s["copy_sets_spanning_days"] == 1


def test_disabled_counts_without_removing():
    inter = frame([("u", "a", 5, DAY, "t"), ("u", "b", 5, DAY, "t")])
    out, s = collapse_copies(inter, enabled=False)
    assert len(out) == 2 and s["rows_removed"] == 0 and s["rows_that_would_be_removed"] == 1
    assert s["policy"].startswith("off")


def test_no_text_dataset_is_untouched_and_says_so():
    inter = frame([("u", "a", 5, DAY, ""), ("u", "b", 5, DAY, "")])
    out, s = collapse_copies(inter)
    assert len(out) == 2 and "no review text" in s["note"] and find_copy_sets(inter).empty


def test_collapse_runs_before_dedup_in_build_tables():
    """Each user posts one review on listings a, b, c, then reviews two more items: without the
    collapse every test target is a copy of an item in its own history."""
    rows = []
    for u in range(8):
        for item in ["a", "b", "c"]:
            rows.append((f"u{u}", item, 5 if u % 2 else 2, 100 * DAY, f"one review by {u}"))
        rows += [
            (f"u{u}", f"x{u}", 4, 101 * DAY, f"x {u}"),
            (f"u{u}", f"y{u}", 2, 102 * DAY, f"y {u}"),
            (f"u{u}", f"z{u}", 5, 103 * DAY, f"z {u}"),
            (f"u{u}", f"w{u}", 1, 104 * DAY, f"w {u}"),
        ]
    inter = frame(rows)
    items = pd.DataFrame(
        {
            "item_id": sorted(set(inter["item_id"])),
            "title": "t",
            "title_source": "metadata",
            "attributes": "",
            "metadata_description": "",
        }
    )
    from rrlib.data.loaders import RawDataset

    raw = RawDataset("toy", inter, items, {"dataset": "toy"})
    p = defaults() | EMBEDDED_BEAUTY | {"KCORE": 3, "HISTORY_LEN": 3, "KSHOT_SIZES": [2], "N_VALID": 4, "N_TEST": 4}
    b = P.build_tables(raw, p, progress=False)
    assert b.stats["copies"]["rows_removed"] == 16 and b.stats["copies"]["listing_sets"] == 1
    assert set(b.interactions["item_id"]) >= {"a"} and not {"b", "c"} & set(b.interactions["item_id"])
    assert b.interactions.groupby("user_id").size().eq(5).all()


# --------------------------------------------------------------------------- the real file
@pytest.fixture(scope="module")
def beauty_raw():
    return load_dataset("embedded_beauty").interactions


def test_all_beauty_copies_measured(beauty_raw):
    out, s = collapse_copies(beauty_raw)
    assert s["rows_in"] == 5269 and normalise_text(beauty_raw["review_text"]).nunique() < 1400
    assert s["copy_sets"] == 968 and s["rows_removed"] == 3772 and s["rows_out"] == 5269 - 3772
    # after the collapse no user has one text + rating on two different items
    key = pd.DataFrame(
        {"u": out["user_id"], "t": normalise_text(out["review_text"]), "r": out["rating"], "i": out["item_id"]}
    )
    key = key[key["t"] != ""]
    assert key.groupby(["u", "t", "r"])["i"].nunique().max() == 1


def test_all_beauty_without_collapse_is_refused_naming_the_policy(tmp_path):
    from rrlib.config.paths import RunPaths
    from rrlib.data import prepare

    paths = RunPaths.of(tmp_path)
    with pytest.raises(LeakageError, match="COLLAPSE_COPIES=true") as e:
        prepare(EMBEDDED_BEAUTY | {"COLLAPSE_COPIES": False}, paths, progress=False)
    assert "test targets" in str(e.value) and "identical review" in str(e.value)
    assert paths.data_card_json.is_file() and not paths.examples.exists()
