"""What every reader returns (:class:`RawDataset`) and the helpers they share."""

from __future__ import annotations

import gzip
import hashlib
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import download as dl
from ..errors import DataError
from .values import Rows, decode, read_csv_text

RESOURCES = Path(__file__).resolve().parent.parent.parent / "resources"

# Columns of RawDataset.interactions / .items / .tags (before processing).
RAW_INTERACTION_COLUMNS = ["user_id", "item_id", "rating", "timestamp", "review_text", "summary", "source_order"]
RAW_ITEM_COLUMNS = ["item_id", "title", "title_source", "attributes", "metadata_description"]
RAW_TAG_COLUMNS = ["user_id", "item_id", "tag", "timestamp"]

AMAZON_CITATION = (
    "Jianmo Ni, Jiacheng Li, Julian McAuley. Justifying recommendations using "
    "distantly-labeled reviews and fine-grained aspects. EMNLP 2019."
)
AMAZON_2014_CITATION = (
    "Julian McAuley, Christopher Targett, Qinfeng Shi, Anton van den Hengel. Image-based "
    "recommendations on styles and substitutes. SIGIR 2015. Ruining He, Julian McAuley. Ups "
    "and downs: Modeling the visual evolution of fashion trends with one-class collaborative "
    "filtering. WWW 2016."
)
ML1M_CITATION = (
    "F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and "
    "Context. ACM TiiS 5, 4, Article 19."
)
RELEASE_CITATION = (
    "Millennium Bismay, Xiangjue Dong, James Caverlee. ReasoningRec: Bridging "
    "Personalized Recommendations and Human-Interpretable Explanations through LLM "
    "Reasoning. 2024."
)


@dataclass
class RawDataset:
    """A dataset as read from its files, before dedup, k-core and split."""

    name: str
    interactions: pd.DataFrame  # RAW_INTERACTION_COLUMNS; source_order = file order
    items: pd.DataFrame  # RAW_ITEM_COLUMNS; title '' where the source has none
    source: dict[str, Any]  # files + checksums, license, citation, notes
    user_attributes: pd.DataFrame | None = None  # user_id, attributes (free text)
    windows: dict[str, dict[str, list[str]]] | None = None  # release: split -> user -> ids
    notes: list[str] = field(default_factory=list)
    # user-written item tags (MovieLens), RAW_TAG_COLUMNS. They join the item attributes only
    # after the split (rrlib.data.tags), so a tag a user wrote on their own target never shows.
    tags: pd.DataFrame | None = None


def require_file(path: Path, what: str, fix: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist ({what}). {fix}")
    if not path.is_file():
        raise DataError(f"{path} is not a file ({what}). {fix}")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty ({what}). Replace it with a complete copy.")
    return path


def read_bytes(path: Path) -> bytes:
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataError(
            f"{path}: cannot be read as {'gzip' if path.suffix == '.gz' else 'a file'} "
            f"({e}); the file is damaged or truncated. Replace it with a complete copy."
        ) from e
    if not data.strip():
        raise DataError(f"{path} has no content. Replace it with a complete copy.")
    return data


def git_blob_of(content: bytes) -> str:
    """What ``git hash-object`` prints for a file with this content."""
    return hashlib.sha1(f"blob {len(content)}\0".encode() + content).hexdigest()


def file_record(path: Path, role: str, status: str = "", **extra) -> dict[str, Any]:
    rec = {"role": role, "path": str(path), "bytes": Path(path).stat().st_size, "sha256": dl.sha256_file(path)}
    if status:
        rec["checksum_status"] = status
    rec.update(extra)
    return rec


def read_csv_file(
    path: Path, what: str, encoding: str = "utf-8", fix: str = "", data: bytes | None = None
) -> tuple[pd.DataFrame, Rows, str]:
    """A CSV file (plain or .gz) as strings, the rows' physical lines and the encoding used."""
    path = require_file(path, what, fix)
    text, used = decode(read_bytes(path) if data is None else data, path, encoding)
    df, rows = read_csv_text(text, path)
    if df.empty:
        raise DataError(f"{path} has a header but no rows. Add the data rows.")
    return df, rows, used


def require_columns(df: pd.DataFrame, path: Path, needed, hint: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{path}: column(s) {missing} missing (found {list(df.columns)}). {hint}")


def ids(df: pd.DataFrame, column: str, rows: Rows) -> pd.Series:
    """An id column as stripped strings; an empty id is an error naming its line."""
    s = df[column]
    text = s.astype(str).str.strip()
    blank = np.flatnonzero(s.isna().to_numpy() | text.eq("").to_numpy())
    if len(blank):
        raise DataError(
            f"{rows.at(int(blank[0]))}: column '{column}' is empty ({len(blank):,} empty value(s)). "
            f"Fill it or delete the row."
        )
    return text.reset_index(drop=True)


_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def clean_text(value: Any) -> str:
    """Plain text from a metadata field: HTML entities decoded, tags removed, spaces collapsed."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (list, tuple)):
        value = " ".join(clean_text(v) for v in value)
    text = html.unescape(str(value))
    text = _TAG.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def items_frame(item_ids, known: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per item id; metadata where known, empty title otherwise (filled later)."""
    frame = pd.DataFrame({"item_id": pd.unique(pd.Series(list(item_ids), dtype=str))})
    if known is None or known.empty:
        out = frame.assign(title="", title_source="", attributes="", metadata_description="")
    else:
        out = frame.merge(known, on="item_id", how="left")
        for c in RAW_ITEM_COLUMNS[1:]:
            out[c] = out[c].fillna("").astype(str)
    return out[RAW_ITEM_COLUMNS]


def interactions_frame(users, items, ratings, timestamps, reviews="", summaries="") -> pd.DataFrame:
    def text(v):
        return v if isinstance(v, str) else pd.Series(list(v), dtype=object).fillna("").astype(str).to_numpy()

    out = pd.DataFrame(
        {
            "user_id": pd.Series(list(users), dtype=object).astype(str),
            "item_id": pd.Series(list(items), dtype=object).astype(str),
            "rating": np.asarray(ratings, dtype=float),
            "timestamp": np.asarray(timestamps, dtype="int64"),
        }
    )
    out["review_text"] = text(reviews)
    out["summary"] = text(summaries)
    out["source_order"] = np.arange(len(out), dtype="int64")
    return out[RAW_INTERACTION_COLUMNS]
