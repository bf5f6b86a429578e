"""Column contracts of the tables notebook 01 writes and every later step reads.

All ids are strings. Lists are Parquet list columns, oldest first. ``check_columns`` is
called by writers and readers so that a table from an older or foreign run fails with a
message naming the file and the missing column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rrlib.errors import DataError

# One row per kept interaction, in per-user chronological order.
INTERACTIONS = {
    "user_id": "str",
    "item_id": "str",
    "rating": "float",
    "timestamp": "int64 (unix seconds)",
    "liked": "bool (rating > LIKE_THRESHOLD)",
    "position": "int (0-based index in the user's sequence)",
    "review_text": "str ('' when none)",
    "summary": "str ('' when none)",
    "target_of": "str: test | valid | train when this interaction is that split's target, else ''",
    "source_order": "int: row order in the source file (the 'file' tie order)",
}

# One row per item that appears in INTERACTIONS.
ITEMS = {
    "item_id": "str",
    "title": "str (falls back to a generated 'item <id>' label when the source has none; see title_source)",
    "title_source": "str: metadata | review_summary | id",
    "attributes": "str: free-text metadata, 'key: value; ...' (brand, price, category, genres, year)",
    "metadata_description": "str ('' when none)",
    "n_ratings": "int: ratings of the item, validation/test targets excluded",
    "like_rate": "float: share liked among those ratings (NaN when none)",
    "sampled_reviews": "list<struct<rating: float, text: str>> (Algorithm 1, trimmed)",
}

# One row per user that survived the k-core.
USERS = {
    "user_id": "str",
    "n_interactions": "int",
    "profile_item_ids": "list<str>: first PROFILE_ITEMS items before the test target's history window",
    "profile_liked": "list<bool>",
    "profile_positions": "list<int>: positions of the profile items in the user's sequence",
    "attributes": "str: free-text user attributes ('' when none; ML-1M: gender, age, occupation)",
}

# One row per (split, user): the chronological split of the paper.
EXAMPLES = {
    "example_id": "str: '<split>:<user_id>'",
    "split": "str: train (3rd last) | valid (2nd last) | test (last)",
    "user_id": "str",
    "target_item_id": "str",
    "target_rating": "float",
    "target_timestamp": "int64",
    "label": "int: 1 liked, 0 disliked",
    "history_item_ids": "list<str>: up to HISTORY_LEN interactions before the target, oldest first",
    "history_ratings": "list<float>",
    "history_liked": "list<bool>",
    "target_position": "int: the target's position in the user's sequence",
    "history_positions": "list<int>: positions of the history items (all < target_position)",
    "sample_rank": "int: position in the seeded order within the split (train: KSHOT_SAMPLING, "
    "stratified | balanced | random; valid/test: label-stratified); the K-shot training set "
    "is sample_rank < K (so K sets are nested), the valid/test subsample is "
    "sample_rank < N_VALID / N_TEST",
}

TABLES = {"interactions": INTERACTIONS, "items": ITEMS, "users": USERS, "examples": EXAMPLES}


def check_columns(df: pd.DataFrame, table: str, source: str | Path) -> pd.DataFrame:
    missing = [c for c in TABLES[table] if c not in df.columns]
    if missing:
        raise ValueError(
            f"{source}: table '{table}' lacks column(s) {missing}; it was not written by this "
            f"version of notebook 01 — rerun 01_data_prep for this run folder."
        )
    return df


def kshot(
    examples: pd.DataFrame, k: int, seed: int | None = None, base_seed: int | None = None, sampling: str = "stratified"
) -> pd.DataFrame:
    """The K-shot training set (nested in K; ordered as KSHOT_SAMPLING says). With a ``seed`` other
    than the ``base_seed`` notebook 01 ranked with (SEED), the train split is re-ranked with that
    seed by the same sampler (``sampling``: KSHOT_SAMPLING), so SEEDS repeats the K-shot sampling;
    the sets stay nested within each seed."""
    from .sampling import RANKERS

    train = examples[examples["split"] == "train"]
    if k > len(train):
        raise DataError(
            f"K={k} training examples requested (KSHOT_SIZES / TRAIN_KSHOTS), but the train split of this run "
            f"folder holds only {len(train)} (one per user). Lower KSHOT_SIZES and TRAIN_KSHOTS to at most "
            f"{len(train)} (notebook 01's K-shot table marks the sizes the data can hold), or keep more users "
            f"(MAX_USERS, KCORE), then rerun 01_data_prep."
        )
    if seed is not None and seed != base_seed:
        train = train.sort_values("user_id", kind="stable")  # independent of row order, as in notebook 01
        train = train.assign(sample_rank=RANKERS[sampling](train["label"].to_numpy(), int(seed), "train"))
    return train[train["sample_rank"] < k].sort_values("sample_rank")


def eval_subset(examples: pd.DataFrame, split: str, n: int) -> pd.DataFrame:
    """The seeded valid/test subsample (n = 0 means all)."""
    part = examples[examples["split"] == split]
    if n:
        part = part[part["sample_rank"] < n]
    return part.sort_values("sample_rank")


def as_list(value) -> list:
    """A Parquet list cell as a Python list (None / NaN -> [])."""
    if value is None:
        return []
    if isinstance(value, float) and value != value:
        return []
    return list(value)
