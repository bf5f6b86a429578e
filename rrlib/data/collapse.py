"""Copy collapse (``COLLAPSE_COPIES``): one review copied onto several listings is one interaction.

Amazon 2018 files show the review pool of a product's variant listings on every listing, so the
same review (same user, same text, same rating, same day) appears under several item ids. Kept
as separate interactions, a user's test target is often a copy of an item in its own history
window and every method copies the label from the history (All_Beauty 5-core: 5,269 rows, 1,364
distinct texts; 146 of 181 test targets had a copy in their 3-item history).

Rule: rows of one user with the same non-empty review text (whitespace-normalised) and the same
rating on two or more different item ids form a *copy set* and become ONE row: the earliest
(by timestamp; at equal timestamps the lowest item id, ids compared by length then text so
numeric ids sort as numbers; for Amazon ASINs the lowest id is the oldest listing). Rows without text are
never collapsed (MovieLens and the ReasoningRec release have none, so nothing changes there).
Repeats on the SAME item id are left to ``DEDUP``, which runs after.

The day is not part of the rule: an identical review re-posted later on another listing carries
the same label just as well (Musical Instruments 2014: one 130-word review posted on two pick
listings four days apart), and with the day in the rule the leakage audit, which counts any
identical review and rating in a target's input, could not be zero by construction. The cost:
one user's identical short texts ("Love it!", same stars) on two products also merge; the data
card counts the copy sets that span more than one day, so the cost is visible (All_Beauty: 1).

Why keep one row instead of merging listings into item groups (union-find over copy links): the
copy links chain unrelated products through "hub" listings that carry several review pools. In
All_Beauty two listings carry both a shampoo's and a shower gel range's reviews, so union-find
fuses 24 of the 85 listings (a third of all rows) into one "item" whose description mixes
shampoo and shower gel. Keeping one row per copy set removes exactly what the copy adds (one
review shown N times), asserts nothing about which listings are one product, and keeps the two
families apart (in All_Beauty both rules leave 20 users with 5+ interactions once ``DEDUP`` has
run). The price: two users' copies of one product can land on different ids of that product
(the data card counts the distinct listing sets).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

DAY_SECONDS = 86400


def normalise_text(values: pd.Series) -> pd.Series:
    """Review text with runs of whitespace collapsed and ends stripped ('' for missing)."""
    return values.fillna("").astype(str).str.split().str.join(" ")


def _id_key(ids: pd.Series) -> pd.Series:
    """Sort key of item ids: shorter first, then lexicographic (numeric ids sort as numbers)."""
    return ids.str.len().astype("int64").astype(str).str.zfill(6) + "\x00" + ids


def find_copy_sets(inter: pd.DataFrame) -> pd.DataFrame:
    """One row per input row that belongs to a copy set: its index, ``set_id``, ``day`` and
    whether it is the row kept (``keep``: the earliest, then the lowest item id, then file order)."""
    text = normalise_text(inter["review_text"])
    has_text = text != ""
    df = pd.DataFrame(
        {
            "user_id": inter["user_id"].astype(str),
            "text": text,
            "rating": inter["rating"],
            "timestamp": inter["timestamp"].astype("int64"),
            "day": inter["timestamp"].astype("int64") // DAY_SECONDS,
            "item_id": inter["item_id"].astype(str),
            "source_order": inter["source_order"],
        },
        index=inter.index,
    )[has_text]
    key = ["user_id", "text", "rating"]
    n_items = df.groupby(key, sort=False)["item_id"].transform("nunique")
    df = df[n_items > 1].copy()
    if df.empty:
        return pd.DataFrame(
            {
                "set_id": pd.Series(dtype="int64"),
                "item_id": pd.Series(dtype=str),
                "user_id": pd.Series(dtype=str),
                "day": pd.Series(dtype="int64"),
                "keep": pd.Series(dtype=bool),
            }
        )
    df["set_id"] = df.groupby(key, sort=False).ngroup().astype("int64")
    df["id_key"] = _id_key(df["item_id"])
    first = df.sort_values(["set_id", "timestamp", "id_key", "source_order"], kind="stable").groupby("set_id").head(1)
    df["keep"] = df.index.isin(first.index)
    return df[["set_id", "item_id", "user_id", "day", "keep"]]


def collapse_copies(inter: pd.DataFrame, enabled: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Collapse copy sets (module docstring). With ``enabled=False`` nothing is removed but the
    statistics still say what would be, so the data card shows the hazard either way."""
    sets = find_copy_sets(inter)
    drop = sets.index[~sets["keep"]]
    members = sets.groupby("set_id")["item_id"].agg(lambda s: tuple(sorted(set(s))))
    has_text = bool((normalise_text(inter["review_text"]) != "").any())
    stats: dict[str, Any] = {
        "policy": "collapse" if enabled else "off (copies kept)",
        "rows_in": int(len(inter)),
        "copy_sets": int(len(members)),
        "rows_in_copy_sets": int(len(sets)),
        "users_affected": int(sets["user_id"].nunique()),
        "items_in_copy_sets": int(sets["item_id"].nunique()),
        "listing_sets": int(members.nunique()),
        "largest_listing_set": int(members.map(len).max()) if len(members) else 0,
        "copy_sets_spanning_days": int((sets.groupby("set_id")["day"].nunique() > 1).sum()),
        "rows_removed": int(len(drop)) if enabled else 0,
        "rows_that_would_be_removed": int(len(drop)),
    }
    out = inter.drop(index=drop) if enabled else inter
    kept_items = set(out["item_id"].astype(str))
    stats["items_left_without_rows"] = int(len(set(inter["item_id"].astype(str)) - kept_items))
    stats["rows_out"] = int(len(out))
    if not has_text:
        stats["note"] = "no review text in this dataset: nothing can be collapsed"
    return out.reset_index(drop=True), stats
