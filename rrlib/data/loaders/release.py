"""The data released with the ReasoningRec code (MIT): the Beauty split, and the 25-word ML-1M
movie summaries (both shipped in ``rrlib/resources/reasoningrec_release`` with the LICENSE)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataError
from .base import (
    AMAZON_CITATION,
    RAW_ITEM_COLUMNS,
    RELEASE_CITATION,
    RESOURCES,
    RawDataset,
    clean_text,
    file_record,
    ids,
    interactions_frame,
    items_frame,
    read_bytes,
    require_columns,
    require_file,
)
from .generic import read_table
from .values import RatingScale, check_ratings, parse_timestamps

RELEASE_ROOT = RESOURCES / "reasoningrec_release"
RELEASE_SCALE = RatingScale(1.0, 5.0, 1.0, "Amazon star")
RELEASE_SPLIT_FILES = {"train": "user_train.json", "valid": "user_valid.json", "test": "user_test.json"}
ML1M_SUMMARIES = "movie_summary_25_words.csv"


def release_files(root: str | Path | None = None) -> dict[str, Path]:
    """Paths of the ReasoningRec release files. ``root`` is a release folder (holding
    ``beauty/`` and maybe ``ml1m/``) or a ``beauty`` folder itself; default: the shipped copy.

    Keys: ratings, items (processed_item_information.json: title, brand, price, LLM description),
    profiles (user_profile_summary.json: LLM profiles), train, valid, test (windows), license,
    and ml1m_summaries (ml1m/movie_summary_25_words.csv: 25-word LLM summaries of ML-1M movies,
    keyed by MovieLens movie id) when that file is under ``root`` (the shipped copy has it).
    """
    root = Path(root) if root else RELEASE_ROOT
    beauty = root / "beauty" if (root / "beauty").is_dir() else root
    out = {
        "ratings": beauty / "ratings.csv",
        "items": beauty / "processed_item_information.json",
        "profiles": beauty / "user_profile_summary.json",
        **{s: beauty / f for s, f in RELEASE_SPLIT_FILES.items()},
    }
    for lic in (root / "LICENSE", beauty.parent / "LICENSE", RELEASE_ROOT / "LICENSE"):
        if lic.is_file():
            out["license"] = lic
            break
    for csv in (root / "ml1m" / ML1M_SUMMARIES, root / ML1M_SUMMARIES):
        if csv.is_file():
            out["ml1m_summaries"] = csv
            break
    return out


def _read_json(path: Path, what: str) -> Any:
    path = require_file(path, what, "Copy it from the ReasoningRec release (beauty/ folder).")
    try:
        return json.loads(read_bytes(path).decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: byte {e.start} is not valid UTF-8; the released JSON is UTF-8. Replace it with the released file."
        ) from None
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}, line {e.lineno}, column {e.colno}: not valid JSON ({e.msg}). Replace it with the released file."
        ) from e


def load_release(
    root: str | Path | None = None, encoding: str = "utf-8", rating_scale: RatingScale | None = None
) -> RawDataset:
    files = release_files(root)
    ratings_path = require_file(
        files["ratings"], "release ratings", "Copy ratings.csv from the ReasoningRec release (beauty/)."
    )
    df, rows, info = read_table(ratings_path, encoding)
    require_columns(df, ratings_path, ("item", "user", "rating", "timestamp"), "Expected item,user,rating,timestamp.")
    secs, info["timestamp_format"] = parse_timestamps(df["timestamp"], rows)
    inter = interactions_frame(
        ids(df, "user", rows),
        ids(df, "item", rows),
        check_ratings(df["rating"], rows, rating_scale or RELEASE_SCALE),
        secs,
    )
    info_json = _read_json(files["items"], "release item information")
    if not isinstance(info_json, dict):
        raise DataError(f"{files['items']}: expected an object mapping item id to its fields.")
    rows_items = []
    for item_id, rec in info_json.items():
        if not isinstance(rec, dict):
            raise DataError(f"{files['items']}: entry {item_id!r} must be an object with title, brand, price.")
        title = clean_text(rec.get("title"))
        attrs = "; ".join(f"{k}: {clean_text(rec.get(k))}" for k in ("brand", "price") if clean_text(rec.get(k)))
        rows_items.append(
            {
                "item_id": str(item_id),
                "title": title,
                "title_source": "metadata" if title else "",
                "attributes": attrs,
                "metadata_description": "",
            }
        )
    items = items_frame(inter["item_id"], pd.DataFrame(rows_items, columns=RAW_ITEM_COLUMNS))
    windows: dict[str, dict[str, list[str]]] = {}
    users = set(inter["user_id"])
    for split in ("train", "valid", "test"):
        data = _read_json(files[split], f"release {split} windows")
        if not isinstance(data, dict):
            raise DataError(f"{files[split]}: expected an object mapping user id to a list of item ids.")
        win = {}
        for u, item_ids in data.items():
            if not isinstance(item_ids, list) or not item_ids:
                raise DataError(
                    f"{files[split]}: user {u!r} must map to a non-empty list of item ids, got {item_ids!r}."
                )
            win[str(u)] = [str(i) for i in item_ids]
        stray = sorted(set(win) - users, key=lambda s: (len(s), s))
        if stray:
            raise DataError(
                f"{files[split]}: user id(s) {stray[:5]} have no rows in {ratings_path}; the "
                f"files come from different releases."
            )
        windows[split] = win
    src_files = [
        file_record(ratings_path, "ratings", rows=len(inter), **info),
        file_record(files["items"], "items", rows=len(info_json)),
    ]
    src_files += [file_record(files[s], f"{s} windows", users=len(windows[s])) for s in windows]
    source = {
        "dataset": "release_beauty",
        "description": "Beauty split released with the ReasoningRec code (Bismay et al. 2024)",
        "files": src_files,
        "license": "MIT (release); Amazon data: research use",
        "citation": RELEASE_CITATION + " Data: " + AMAZON_CITATION,
    }
    return RawDataset("release_beauty", inter, items, source, windows=windows)
