"""Amazon readers: Review Data (2018) JSON lines (any category, full or 5-core, with optional
metadata), the shipped All_Beauty 5-core copy, and the 2014 Musical Instruments 5-core
(shipped; CSV, or the original 2014 JSON lines)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import download as dl
from ..errors import DataError
from .base import (
    AMAZON_2014_CITATION,
    AMAZON_CITATION,
    RAW_ITEM_COLUMNS,
    RESOURCES,
    RawDataset,
    clean_text,
    file_record,
    ids,
    interactions_frame,
    items_frame,
    read_csv_file,
    require_columns,
    require_file,
)
from .values import RatingScale, Rows, check_ratings, parse_timestamps

AMAZON_SCALE = RatingScale(1.0, 5.0, 1.0, "Amazon star")
AMAZON_REQUIRED = ("reviewerID", "asin", "overall", "unixReviewTime")

EMBEDDED_BEAUTY = RESOURCES / "embedded_beauty" / "All_Beauty_5.json.gz"
EMBEDDED_BEAUTY_SHA256 = "8e49737fefaec9290187c69bf92889452df8be0ab5e36c9476520d6639683279"

INSTRUMENTS_DIR = RESOURCES / "amazon_instruments_2014"
INSTRUMENTS_CSV = "Musical_instruments_reviews.csv.gz"
INSTRUMENTS_SHA256 = "f74b2a24073de512f8b2ca357be83244b6fc002219ac140df6aa99777661535a"
# the shipped CSV, or the 2014 release's own JSON lines (the 2018 Musical_Instruments_5 file is amazon2018's)
INSTRUMENTS_FILES = (
    "Musical_instruments_reviews.csv.gz",
    "Musical_instruments_reviews.csv",
    "reviews_Musical_Instruments_5.json.gz",
    "reviews_Musical_Instruments_5.json",
)
INSTRUMENTS_URL = "https://jmcauley.ucsd.edu/data/amazon/ (2014 release, 5-core Musical Instruments)"


class _Lines:
    """JSON-lines records of a (gzipped) file, streamed; counts lines with bytes that are not UTF-8."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.bad_utf8: list[int] = []

    def __iter__(self):
        opener = gzip.open if self.path.suffix == ".gz" else open
        i = 0
        try:
            with opener(self.path, "rb") as f:
                for i, raw in enumerate(f, start=1):
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError:  # keep the record, say so in the notes
                        self.bad_utf8.append(i)
                        line = raw.decode("utf-8", errors="replace")
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataError(
                            f"{self.path}, line {i}: not valid JSON ({e.msg} at column {e.colno}): "
                            f"{line[:120]!r}. Fix or delete that line."
                        ) from e
                    if not isinstance(rec, dict):
                        raise DataError(
                            f"{self.path}, line {i}: expected a JSON object, got "
                            f"{type(rec).__name__}. Each line must be one record."
                        )
                    yield i, rec
        except (OSError, EOFError) as e:
            raise DataError(
                f"{self.path}: cannot be read after line {i} ({e}); the file is damaged or truncated. "
                f"Replace it with a complete copy."
            ) from e

    def note(self) -> list[str]:
        if not self.bad_utf8:
            return []
        return [
            f"{self.path.name}: {len(self.bad_utf8):,} line(s) hold bytes that are not UTF-8 (first: line "
            f"{self.bad_utf8[0]}); they were replaced by U+FFFD in the text"
        ]


def read_amazon_reviews(
    path: Path, rating_scale: RatingScale | None = None, notes: list[str] | None = None, fmt: dict | None = None
) -> pd.DataFrame:
    """Amazon review JSON lines (2018 or 2014 field names; plain or gzipped)."""
    path = require_file(path, "Amazon review JSON lines", "Put the category file there.")
    lines = _Lines(path)
    users, items, ratings, times, texts, summaries, where = [], [], [], [], [], [], []
    for i, rec in lines:
        missing = [k for k in AMAZON_REQUIRED if rec.get(k) in (None, "")]
        if missing:
            raise DataError(
                f"{path}, line {i}: field(s) {missing} missing; every review needs "
                f"{list(AMAZON_REQUIRED)}. Fix or delete that line."
            )
        users.append(str(rec["reviewerID"]))
        items.append(str(rec["asin"]))
        ratings.append(rec["overall"])
        times.append(rec["unixReviewTime"])
        texts.append(str(rec.get("reviewText") or ""))
        summaries.append(str(rec.get("summary") or ""))
        where.append(i)
    if not users:
        raise DataError(f"{path} holds no reviews. Replace it with a complete copy.")
    rows = Rows(path, np.asarray(where, dtype="int64"))
    secs, ts_fmt = parse_timestamps(pd.Series(times), rows, "unixReviewTime")
    stars = check_ratings(pd.Series(ratings), rows, rating_scale or AMAZON_SCALE, "overall")
    if notes is not None:
        notes += lines.note()
    if fmt is not None:
        fmt["timestamp_format"] = ts_fmt
    return interactions_frame(users, items, stars, secs, texts, summaries)


def read_amazon_meta(path: Path) -> pd.DataFrame:
    """Amazon 2018 metadata JSON lines -> items (first record wins for a repeated asin)."""
    path = require_file(
        path, "Amazon metadata JSON lines", "Put meta_<Category>.json.gz there or remove it (metadata is optional)."
    )
    rows, seen = [], set()
    for i, rec in _Lines(path):
        asin = rec.get("asin")
        if not asin:
            raise DataError(f"{path}, line {i}: field 'asin' missing. Fix or delete that line.")
        if asin in seen:
            continue
        seen.add(asin)
        title = clean_text(rec.get("title"))
        attrs = []
        for key in ("brand", "price"):
            v = clean_text(rec.get(key))
            if v and len(v) < 80:  # long values are scraping noise (HTML/JS), not a brand or price
                attrs.append(f"{key}: {v}")
        cats = [clean_text(c) for c in (rec.get("category") or []) if clean_text(c)]
        if cats:
            attrs.append("category: " + " > ".join(cats))
        rows.append(
            {
                "item_id": str(asin),
                "title": title,
                "title_source": "metadata" if title else "",
                "attributes": "; ".join(attrs),
                "metadata_description": clean_text(rec.get("description")),
            }
        )
    if not rows:
        raise DataError(f"{path} holds no item records. Replace it with a complete copy.")
    return pd.DataFrame(rows, columns=RAW_ITEM_COLUMNS)


def load_amazon(
    reviews_path: Path,
    meta_path: Path | None = None,
    name: str = "amazon",
    description: str = "Amazon Review Data (2018)",
    checksum_status: str = "",
    rating_scale: RatingScale | None = None,
) -> RawDataset:
    notes: list[str] = []
    fmt: dict = {}
    reviews = read_amazon_reviews(reviews_path, rating_scale, notes, fmt)
    files = [file_record(reviews_path, "reviews", checksum_status, rows=len(reviews), **fmt)]
    meta = None
    if meta_path is not None:
        meta = read_amazon_meta(meta_path)
        files.append(file_record(meta_path, "metadata", rows=len(meta)))
    items = items_frame(reviews["item_id"], meta)
    source = {
        "dataset": name,
        "description": description,
        "files": files,
        "license": "research use (Amazon Review Data 2018, UCSD)",
        "citation": AMAZON_CITATION,
    }
    if meta_path is None:
        notes.append("no metadata file: titles fall back to review headlines")
    return RawDataset(name, reviews, items, source, notes=notes)


def load_embedded_beauty(rating_scale: RatingScale | None = None) -> RawDataset:
    path = require_file(
        EMBEDDED_BEAUTY, "the shipped embedded dataset", "The package is incomplete: reinstall it (pip install -e .)."
    )
    digest = dl.sha256_file(path)
    if digest != EMBEDDED_BEAUTY_SHA256:
        raise DataError(
            f"{path}: sha256 {digest} is not the shipped {EMBEDDED_BEAUTY_SHA256}; the "
            f"embedded copy was modified. Restore it from git (git checkout -- {path.name})."
        )
    raw = load_amazon(
        path,
        None,
        "embedded_beauty",
        "Amazon Review Data (2018), All_Beauty official 5-core file (shipped copy)",
        checksum_status="verified: sha256 equals the shipped copy's",
        rating_scale=rating_scale,
    )
    raw.source["provenance"] = str(path.parent / "PROVENANCE.md")
    return raw


# ---------------------------------------------------------------------------------------
# Amazon product data (2014), Musical Instruments 5-core
# ---------------------------------------------------------------------------------------
INSTRUMENTS_CSV_COLUMNS = ("reviewerID", "asin", "overall", "unixReviewTime")


def read_amazon_2014_csv(
    path: Path, encoding: str = "utf-8", rating_scale: RatingScale | None = None
) -> tuple[pd.DataFrame, dict]:
    """The 2014 reviews as CSV (reviewerID, asin, reviewerName, helpful, reviewText, overall,
    summary, unixReviewTime, reviewTime)."""
    df, rows, used = read_csv_file(path, "Amazon 2014 reviews CSV", encoding)
    require_columns(
        df,
        Path(path),
        INSTRUMENTS_CSV_COLUMNS,
        "The 2014 Amazon review CSV needs reviewerID, asin, overall, unixReviewTime "
        "(and optionally reviewText, summary).",
    )
    secs, fmt = parse_timestamps(df["unixReviewTime"], rows, "unixReviewTime")
    stars = check_ratings(df["overall"], rows, rating_scale or AMAZON_SCALE, "overall")
    inter = interactions_frame(
        ids(df, "reviewerID", rows),
        ids(df, "asin", rows),
        stars,
        secs,
        df["reviewText"] if "reviewText" in df else "",
        df["summary"] if "summary" in df else "",
    )
    return inter, {"encoding": used, "timestamp_format": fmt}


def instruments_file(folder: Path) -> Path | None:
    return next((folder / n for n in INSTRUMENTS_FILES if (folder / n).is_file()), None)


def load_amazon_instruments(
    folder: Path | None = None, encoding: str = "utf-8", rating_scale: RatingScale | None = None
) -> RawDataset:
    """Amazon 2014 Musical Instruments 5-core: from ``folder`` when it holds one of
    :data:`INSTRUMENTS_FILES`, else the shipped CSV (sha256-checked)."""
    shipped = folder is None
    path: Path | None
    if folder is None:
        path = require_file(
            INSTRUMENTS_DIR / INSTRUMENTS_CSV,
            "the shipped Musical Instruments reviews",
            "The package is incomplete: reinstall it (pip install -e .).",
        )
        digest = dl.sha256_file(path)
        if digest != INSTRUMENTS_SHA256:
            raise DataError(
                f"{path}: sha256 {digest} is not the shipped {INSTRUMENTS_SHA256}; the shipped copy "
                f"was modified. Restore it from git (git checkout -- {path})."
            )
        status = "verified: sha256 equals the shipped copy's"
    else:
        path = instruments_file(Path(folder))
        if path is None:
            raise DataError(
                f"{folder} holds none of {list(INSTRUMENTS_FILES)}. Put the 2014 Musical Instruments "
                f"5-core reviews there, or set DATA_DIR to '' to use the shipped copy."
            )
        status = "matches the shipped copy" if dl.sha256_file(path) == INSTRUMENTS_SHA256 else ""
    notes: list[str] = []
    if ".csv" in path.suffixes:
        inter, extra = read_amazon_2014_csv(path, "utf-8" if shipped else encoding, rating_scale)
    else:
        extra = {}
        inter = read_amazon_reviews(path, rating_scale, notes, extra)
    notes.append("no metadata file: titles fall back to review headlines")
    source = {
        "dataset": "amazon_instruments",
        "description": "Amazon product data (2014), Musical Instruments 5-core"
        + (" (shipped copy)" if shipped else ""),
        "url": INSTRUMENTS_URL,
        "files": [file_record(path, "reviews", status, rows=len(inter), **extra)],
        "license": "research use (Amazon product data 2014, UCSD; see PROVENANCE.md)",
        "citation": AMAZON_2014_CITATION,
        "provenance": str(INSTRUMENTS_DIR / "PROVENANCE.md"),
    }
    return RawDataset("amazon_instruments", inter, items_frame(inter["item_id"]), source, notes=notes)
