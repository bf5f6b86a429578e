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
    # what reading changed in the values (counted on the data card, "input_cleaning"):
    # "ids_stripped" (records of :func:`id_changes`), "titles_rewritten" (:func:`rewrite_count`)
    cleaning: dict[str, Any] = field(default_factory=dict)


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


def ids(df: pd.DataFrame, column: str, rows: Rows, changed: list[dict[str, Any]] | None = None) -> pd.Series:
    """An id column as strings with surrounding whitespace stripped (``' x '`` is the user
    ``x``; ``007`` and ``7`` stay two ids); an empty id is an error naming its line. ``changed``:
    a record of what the stripping changed (:func:`id_changes`) is appended there, if anything."""
    s = df[column]
    raw = s.astype(str)
    text = raw.str.strip()
    blank = np.flatnonzero(s.isna().to_numpy() | text.eq("").to_numpy())
    if len(blank):
        raise DataError(
            f"{rows.at(int(blank[0]))}: column '{column}' is empty ({len(blank):,} empty value(s)). "
            f"Fill it or delete the row."
        )
    if changed is not None:
        record = id_changes(raw, text, column, rows)
        if record is not None:
            changed.append(record)
    return text.reset_index(drop=True)


def id_changes(raw: pd.Series, stripped: pd.Series, column: str, rows: Rows) -> dict[str, Any] | None:
    """What stripping surrounding whitespace changed in an id column (None: nothing): the rows
    and distinct ids changed, the ids that now equal another spelling (``' x '`` and ``x``: one
    merge, the two are one user from then on), and the first change with its line."""
    diff = (raw != stripped).to_numpy()
    if not diff.any():
        return None
    spellings = pd.DataFrame({"raw": raw.to_numpy(), "id": stripped.to_numpy()}).drop_duplicates()
    per_id = spellings.groupby("id").size()
    merged = per_id[per_id > 1]
    i = int(np.flatnonzero(diff)[0])
    return {
        "file": rows.path.name,
        "column": column,
        "rows_changed": int(diff.sum()),
        "ids_changed": int(raw[diff].nunique()),
        "ids_merged": int(len(merged)),
        "first_merged": sorted(map(str, merged.index), key=lambda s: (len(s), s))[:5],
        "first_change": f"{rows.at(i)}: {raw.iloc[i]!r} -> {stripped.iloc[i]!r}",
    }


def id_change_note(record: dict[str, Any]) -> str:
    """The data card's note for one :func:`id_changes` record."""
    merged = (
        f"; {record['ids_merged']:,} of them then equal another id and were merged with it "
        f"(first: {record['first_merged']})"
        if record["ids_merged"]
        else "; none equals another id"
    )
    return (
        f"{record['file']}, column '{record['column']}': surrounding whitespace stripped from "
        f"{record['ids_changed']:,} id(s) in {record['rows_changed']:,} row(s) (first: {record['first_change']})"
        f"{merged}"
    )


def rewrite_count(raw: Any, cleaned: Any, ids: Any) -> dict[str, Any]:
    """How many texts :func:`clean_text` rewrote beyond spacing (HTML entities decoded, tags
    removed: ``<script>alert(1)</script>`` became ``alert(1)``), with the first ids."""
    changed = [
        str(i)
        for r, c, i in zip(raw, cleaned, ids)
        if isinstance(r, str) and c != _SPACE.sub(" ", r).strip()  # lists and numbers are not rewritten text
    ]
    return {"count": len(changed), "first": changed[:5]}


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
