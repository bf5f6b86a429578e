"""Bring-your-own data: ``interactions.csv|parquet`` and optional ``items.csv|parquet``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from .base import (
    RawDataset,
    clean_text,
    file_record,
    id_change_note,
    ids,
    interactions_frame,
    items_frame,
    read_csv_file,
    require_columns,
    require_file,
    rewrite_count,
)
from .values import GENERIC_SCALE, RatingScale, Rows, check_ratings, parse_timestamps

GENERIC_REQUIRED = ("user", "item", "rating", "timestamp")
TABLE_SUFFIXES = (".parquet", ".csv", ".csv.gz")


def read_table(path: Path, encoding: str = "utf-8") -> tuple[pd.DataFrame, Rows, dict[str, Any]]:
    """A CSV (strings, physical line numbers) or Parquet (typed, row numbers) table."""
    path = require_file(path, "table", "")
    if path.suffix != ".parquet":
        df, rows, used = read_csv_file(path, "table", encoding)
        return df, rows, {"encoding": used}
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises many types; the message says what is wrong
        raise DataError(
            f"{path}: cannot be read as Parquet ({type(e).__name__}: {e}). Check the file is a "
            f"complete Parquet file, or give a CSV instead."
        ) from e
    if df.empty:
        raise DataError(f"{path} has a header but no rows. Add the data rows.")
    return df.reset_index(drop=True), Rows(path, None), {}


def find_table(folder: Path, stem: str) -> Path | None:
    return next((folder / f"{stem}{ext}" for ext in TABLE_SUFFIXES if (folder / f"{stem}{ext}").is_file()), None)


def _text_column(df: pd.DataFrame, name: str) -> Any:
    return df[name].fillna("").astype(str).to_numpy() if name in df else ""


def _first_ids(values, n: int = 5) -> list[str]:
    return sorted(values, key=lambda s: (len(s), s))[:n]


def load_generic(
    folder: Path, encoding: str = "utf-8", date_order: str = "auto", rating_scale: RatingScale | None = None
) -> RawDataset:
    folder = Path(folder)
    inter_path = find_table(folder, "interactions")
    if inter_path is None:
        raise DataError(
            f"{folder} has no interactions.csv or interactions.parquet. DATASET=generic "
            f"needs a table with columns {list(GENERIC_REQUIRED)} (+ optional review, summary) "
            f"there; see rrlib/data/loaders/__init__.py."
        )
    df, rows, info = read_table(inter_path, encoding)
    require_columns(df, inter_path, GENERIC_REQUIRED, f"Rename your columns to {list(GENERIC_REQUIRED)}.")
    scale = rating_scale or GENERIC_SCALE
    secs, info["timestamp_format"] = parse_timestamps(df["timestamp"], rows, date_order=date_order)
    stripped: list[dict[str, Any]] = []  # ids whose surrounding whitespace was stripped
    inter = interactions_frame(
        ids(df, "user", rows, stripped),
        ids(df, "item", rows, stripped),
        check_ratings(
            df["rating"],
            rows,
            scale,
            fix=(
                "Set RATING_SCALE: [lowest, highest] to your data's scale (default "
                "[1, 5]) and a LIKE_THRESHOLD that fits it."
            ),
        ),
        secs,
        _text_column(df, "review"),
        _text_column(df, "summary"),
    )
    info["rating_scale"] = scale.describe()
    files = [file_record(inter_path, "interactions", rows=len(inter), **info)]
    notes: list[str] = []
    cleaning: dict[str, Any] = {}
    known = None
    items_path = find_table(folder, "items")
    if items_path is not None:
        it, it_rows, it_info = read_table(items_path, encoding)
        require_columns(
            it,
            items_path,
            ["item"],
            "The items table needs 'item' and optionally 'title', 'description' and attribute columns.",
        )
        item_ids = ids(it, "item", it_rows, stripped)
        dup = item_ids.duplicated().to_numpy()
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            notes.append(
                f"{items_path.name}: {int(dup.sum()):,} repeated item id(s) (first: {item_ids.iloc[i]!r} "
                f"on {it_rows.at(i).split(', ')[-1]}); the first row of each id is used"
            )
            it, item_ids = it[~dup].reset_index(drop=True), item_ids[~dup].reset_index(drop=True)
        extra = [c for c in it.columns if c not in ("item", "title", "description")]
        cleaned = {c: it[c].map(clean_text).to_numpy() for c in extra}
        attrs = ["; ".join(f"{c}: {cleaned[c][n]}" for c in extra if cleaned[c][n]) for n in range(len(it))]
        titles = it["title"].map(clean_text).to_numpy() if "title" in it else np.full(len(it), "", dtype=object)
        if "title" in it:
            cleaning["titles_rewritten"] = rewritten = rewrite_count(it["title"], titles, item_ids)
            if rewritten["count"]:
                notes.append(
                    f"{items_path.name}: {rewritten['count']:,} title(s) rewritten: HTML entities decoded and "
                    f"tags removed (first items: {rewritten['first']})"
                )
        known = pd.DataFrame(
            {
                "item_id": item_ids.to_numpy(),
                "title": titles,
                "title_source": np.where(titles != "", "metadata", ""),
                "attributes": attrs,
                "metadata_description": (
                    it["description"].map(clean_text).to_numpy()
                    if "description" in it
                    else np.full(len(it), "", dtype=object)
                ),
            }
        )
        files.append(file_record(items_path, "items", rows=len(known), **it_info))
        used = pd.unique(inter["item_id"])
        absent = sorted(set(used) - set(known["item_id"]))
        if absent:
            notes.append(
                f"{items_path.name} lacks {len(absent):,} of the {len(used):,} item ids of "
                f"{inter_path.name} (first: {_first_ids(absent)}); they have no metadata and are named "
                f"by a review headline or 'item <id>'"
            )
    items = items_frame(inter["item_id"], known)
    cleaning["ids_stripped"] = stripped
    notes += [id_change_note(r) for r in stripped]
    source = {
        "dataset": "generic",
        "description": f"user-provided tables in {folder}",
        "files": files,
        "license": "as provided by the user",
        "citation": "",
    }
    return RawDataset("generic", inter, items, source, notes=notes, cleaning=cleaning)
