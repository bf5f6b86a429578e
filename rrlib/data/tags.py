"""User-written tags (MovieLens ``tags.csv``) as item attributes, applied after the split.

A tag is written by one user on one item at one time. When that (user, item) pair is one of
the user's targets (train, valid or test), the tag says what the user thought of the very item
whose label is to be predicted ("boring", "masterpiece"): it must never reach the item's
attributes, which every prompt shows (including the prompt that predicts that user's label).
So tags are applied here, once the targets are known, and those tags are dropped and counted.
Other tags of the item, by other users or written by a user on a non-target item, describe the
item and are kept, at any time (as the review pool of Algorithm 1 does).

An item shows its ``MAX_TAGS`` most used tags (by distinct users, then first use), compared
case-insensitively and shown in their most common spelling; bookkeeping tags that say nothing
about the item (``in netflix queue``) are left out.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

MAX_TAGS = 10
BOOKKEEPING_TAGS = frozenset({"in netflix queue"})
_SPACE = re.compile(r"\s+")


def target_pairs(inter: pd.DataFrame) -> pd.DataFrame:
    """user_id, item_id, split of every target interaction (``target_of`` set by processing)."""
    t = inter.loc[inter["target_of"].astype(str) != "", ["user_id", "item_id", "target_of"]]
    return t.rename(columns={"target_of": "split"}).drop_duplicates(["user_id", "item_id"])


def _top_tags(kept: pd.DataFrame, max_tags: int) -> pd.Series:
    """item_id -> "tag, tag, ..." (most users first, then first use)."""
    if kept.empty:
        return pd.Series(dtype=object)
    by_tag = (
        kept.groupby(["item_id", "key"], sort=False)
        .agg(users=("user_id", "nunique"), first=("order", "min"), shown=("text", lambda s: s.value_counts().index[0]))
        .reset_index()
    )
    by_tag = by_tag.sort_values(["item_id", "users", "first"], ascending=[True, False, True])
    return by_tag.groupby("item_id", sort=False).head(max_tags).groupby("item_id", sort=False)["shown"].agg(", ".join)


def apply_tags(
    items: pd.DataFrame,
    tags: pd.DataFrame | None,
    inter: pd.DataFrame,
    notes: list[str] | None = None,
    max_tags: int = MAX_TAGS,
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """``items`` with ``"tags: a, b, ..."`` appended to their attributes, from ``tags`` minus
    those written by a user on one of their own targets in ``inter``; and the counts (also
    added to ``notes`` when given). ``tags`` None: items unchanged, no counts."""
    if tags is None:
        return items, None
    t = tags.copy()
    t["text"] = t["tag"].astype(str).map(lambda s: _SPACE.sub(" ", s).strip())
    t["key"] = t["text"].str.lower()
    t = t[(t["key"] != "") & ~t["key"].isin(BOOKKEEPING_TAGS)]
    pairs = target_pairs(inter)
    t = t.merge(pairs, on=["user_id", "item_id"], how="left")
    on_target = t["split"].notna()
    excluded = t[on_target]
    kept = t[~on_target & t["item_id"].isin(set(items["item_id"]))].copy()
    kept["order"] = range(len(kept))
    shown = _top_tags(kept, max_tags)
    out = items.copy()
    extra = out["item_id"].map(shown).fillna("")
    base = out["attributes"].fillna("").astype(str)
    out["attributes"] = [f"{a}; tags: {x}" if a and x else (f"tags: {x}" if x else a) for a, x in zip(base, extra)]
    stats: dict[str, Any] = {
        "tags_in_file": int(len(tags)),
        "excluded_on_own_target": {s: int((excluded["split"] == s).sum()) for s in ("train", "valid", "test")},
        "excluded_on_own_target_total": int(len(excluded)),
        "bookkeeping_or_blank_dropped": int(len(tags) - len(t)),
        "on_kept_items": int(len(kept)),
        "items_with_tags": int((extra != "").sum()),
        "max_tags_per_item": int(max_tags),
    }
    if notes is not None:
        ex = stats["excluded_on_own_target"]
        notes.append(
            f"user tags: {stats['items_with_tags']:,} items show up to {max_tags} tags from "
            f"{stats['on_kept_items']:,} tag applications; {stats['excluded_on_own_target_total']:,} tags "
            f"written by a user on their own target were excluded (test {ex['test']}, valid "
            f"{ex['valid']}, train {ex['train']})"
        )
    return out, stats
