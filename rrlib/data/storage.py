"""Parquet writing and reading of the four data tables, with explicit Arrow types (so an
all-empty list column keeps its element type) and column checks on both sides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rrlib.config.paths import RunPaths
from rrlib.io import atomic_path

from . import schema

_S, _F, _I, _B = pa.string(), pa.float64(), pa.int64(), pa.bool_()
ARROW = {
    "interactions": {
        "user_id": _S,
        "item_id": _S,
        "rating": _F,
        "timestamp": _I,
        "liked": _B,
        "position": _I,
        "review_text": _S,
        "summary": _S,
        "target_of": _S,
        "source_order": _I,
    },
    "items": {
        "item_id": _S,
        "title": _S,
        "title_source": _S,
        "attributes": _S,
        "metadata_description": _S,
        "n_ratings": _I,
        "like_rate": _F,
        "sampled_reviews": pa.list_(pa.struct([("rating", _F), ("text", _S)])),
    },
    "users": {
        "user_id": _S,
        "n_interactions": _I,
        "profile_item_ids": pa.list_(_S),
        "profile_liked": pa.list_(_B),
        "profile_positions": pa.list_(_I),
        "attributes": _S,
    },
    "examples": {
        "example_id": _S,
        "split": _S,
        "user_id": _S,
        "target_item_id": _S,
        "target_rating": _F,
        "target_timestamp": _I,
        "label": _I,
        "history_item_ids": pa.list_(_S),
        "history_ratings": pa.list_(_F),
        "history_liked": pa.list_(_B),
        "sample_rank": _I,
        "target_position": _I,
        "history_positions": pa.list_(_I),
    },
}


@dataclass
class Tables:
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    examples: pd.DataFrame


def table_path(paths: RunPaths, name: str) -> Path:
    return getattr(paths, name)


def write_table(df: pd.DataFrame, name: str, path: Path) -> Path:
    schema.check_columns(df, name, f"{name} table being written to {path}")
    fields = ARROW[name]
    table = pa.Table.from_pandas(df[list(fields)], schema=pa.schema(list(fields.items())), preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_table(name: str, path: Path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    return schema.check_columns(df, name, path)


def write_tables(tables: Tables, paths: RunPaths) -> dict[str, str]:
    return {n: str(write_table(getattr(tables, n), n, table_path(paths, n))) for n in ARROW}


def load_tables(paths: RunPaths) -> Tables:
    """The tables notebook 01 wrote into this run folder (each column-checked)."""
    out = {}
    for name in ARROW:
        out[name] = read_table(name, paths.require(table_path(paths, name), "01_data_prep"))
    return Tables(**out)
