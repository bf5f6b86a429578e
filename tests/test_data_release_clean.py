"""RELEASE_WINDOWS=clean on a synthetic release with known answers: exact duplicate rows dropped,
the target's own item removed from its window, a train example sharing its target row with the
valid example dropped, and every deviation counted."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rrlib.data import processing as P


def _inter(rows):
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    df["rating"] = df["rating"].astype(float)
    df["review_text"] = ""
    df["summary"] = ""
    df["source_order"] = np.arange(len(df))
    return P.binarize(P.order_interactions(df, "file"), 3.0)


def test_clean_release_windows_known_answer():
    inter = _inter(
        [
            # u: a b c c' d d' e b2   (c' and d' exact duplicates; b2 = b again, later, another rating)
            ("u", "a", 5, 1),
            ("u", "b", 2, 2),
            ("u", "c", 5, 3),
            ("u", "c", 5, 3),
            ("u", "d", 4, 4),
            ("u", "d", 4, 4),
            ("u", "e", 5, 5),
            ("u", "b", 5, 6),
            # v: p q r r' s            (the authors' train target r is the valid target r')
            ("v", "p", 5, 1),
            ("v", "q", 5, 2),
            ("v", "r", 1, 3),
            ("v", "r", 1, 3),
            ("v", "s", 5, 4),
        ]
    )
    windows = {
        "test": {"u": ["b", "c", "c", "d", "d", "e", "b"], "v": ["q", "r", "r", "s"]},
        "valid": {"u": ["d", "d", "e"], "v": ["p", "q", "r", "r"]},
        "train": {"u": ["c", "c", "d", "d"], "v": ["p", "q", "r"]},
    }
    ex, located = P.examples_from_windows(inter, windows)
    assert located["exact_slices"] == 6  # the windows are where the authors put them
    cleaned, out, s = P.clean_release_windows(inter, ex)
    assert cleaned.groupby("user_id")["item_id"].agg(list).to_dict() == {
        "u": ["a", "b", "c", "d", "e", "b"],
        "v": ["p", "q", "r", "s"],
    }
    assert cleaned.groupby("user_id")["position"].agg(list).to_dict() == {"u": list(range(6)), "v": list(range(4))}
    e = out.set_index("example_id")
    assert e.loc["test:u", "history_item_ids"] == ["c", "d", "e"] and e.loc["test:u", "target_position"] == 5
    assert e.loc["test:u", "target_rating"] == 5.0  # the later b, not the earlier 2-star one
    assert e.loc["valid:u", "history_item_ids"] == ["d"] and e.loc["valid:u", "target_item_id"] == "e"
    assert e.loc["train:u", "history_item_ids"] == ["c"] and e.loc["train:u", "target_item_id"] == "d"
    assert "train:v" not in e.index and e.loc["valid:v", "history_item_ids"] == ["p", "q"]
    assert e.loc["test:v", "history_item_ids"] == ["q", "r"]
    assert s["exact_duplicate_rows_dropped"] == 3
    assert s["authors_windows_with_target_item_in_history"] == {"test": 1, "valid": 1, "train": 1}
    # test:u: c', d' repeated, b = target; valid:u: d' repeated; train:u: c' repeated, d = target;
    # test:v: r' repeated; valid:v: r' -> r = target item
    assert s["history_entries_removed"] == {"repeated_row": 5, "target_item": 3, "at_or_after_target": 0}
    assert s["examples_dropped_same_target_row_as_a_later_split"] == {"test": 0, "valid": 0, "train": 1}
    for r in out.itertuples():
        assert r.target_item_id not in set(r.history_item_ids)
        assert all(p < r.target_position for p in r.history_positions)
        assert list(r.history_positions) == sorted(set(r.history_positions))
