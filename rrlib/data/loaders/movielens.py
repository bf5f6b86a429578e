"""MovieLens readers: ML-1M (``::``-separated ``.dat`` files, never shipped) and
ml-latest-small (CSV, shipped in ``rrlib/resources/ml_latest_small`` under its README's terms)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import download as dl
from ..errors import DataError
from .base import (
    ML1M_CITATION,
    RAW_ITEM_COLUMNS,
    RAW_TAG_COLUMNS,
    RESOURCES,
    RawDataset,
    file_record,
    git_blob_of,
    ids,
    read_bytes,
    read_csv_file,
    require_columns,
    require_file,
)
from .values import RatingScale, Rows, check_ratings, decode, parse_timestamps

ML1M_SCALE = RatingScale(1.0, 5.0, 1.0, "MovieLens-1M")
ML_SMALL_SCALE = RatingScale(0.5, 5.0, 0.5, "MovieLens half-star")


# ---------------------------------------------------------------------------------------
# titles
# ---------------------------------------------------------------------------------------
_ML_TITLE = re.compile(r"^(?P<name>.*?)\s*\((?P<year>\d{4})\)\s*$")
_ARTICLE = re.compile(
    r"^(?P<rest>.*?), (?P<art>The|A|An|Les|La|Le|L'|Il|Das|Der|Die|El|Lo)"
    r"(?P<alt> \(.*\))?$"
)


def movielens_title(raw: str) -> tuple[str, str]:
    """``"Shawshank Redemption, The (1994)"`` -> (``"The Shawshank Redemption"``, ``"1994"``)."""
    m = _ML_TITLE.match(raw.strip())
    name, year = (m["name"], m["year"]) if m else (raw.strip(), "")
    a = _ARTICLE.match(name)
    if a:
        sep = "" if a["art"].endswith("'") else " "
        name = f"{a['art']}{sep}{a['rest']}{a['alt'] or ''}"
    return name, year


def _movie_items(item_ids: pd.Series, raw_titles, genres) -> pd.DataFrame:
    titles = [movielens_title(t) for t in raw_titles]
    attributes = []
    for (_, year), g in zip(titles, genres):
        names = [x for x in str(g).split("|") if x.strip() and x.strip() != "(no genres listed)"]
        parts = ([f"year: {year}"] if year else []) + (["genres: " + ", ".join(names)] if names else [])
        attributes.append("; ".join(parts))
    return pd.DataFrame(
        {
            "item_id": item_ids.to_numpy(),
            "title": [t for t, _ in titles],
            "title_source": "metadata",
            "attributes": attributes,
            "metadata_description": "",
        },
        columns=RAW_ITEM_COLUMNS,
    )


# ---------------------------------------------------------------------------------------
# MovieLens-1M
# ---------------------------------------------------------------------------------------
def _split_dat(path: Path, n_fields: int, names: list[str]) -> tuple[pd.DataFrame, str]:
    """Parse a ``::``-separated file, checking every line has ``n_fields`` fields."""
    text, encoding = decode(read_bytes(path), path, "auto")
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    counts = pd.Series(lines, dtype=object).str.count("::").to_numpy()
    bad = np.flatnonzero(counts != n_fields - 1)
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{path}, line {i + 1}: expected {n_fields} fields separated by '::' "
            f"({'::'.join(names)}), got {counts[i] + 1}: {lines[i][:120]!r}. "
            f"Fix or delete that line ({len(bad)} malformed line(s) in total)."
        )
    rows = [line.split("::") for line in lines]
    return pd.DataFrame(rows, columns=names, dtype=object), encoding


def read_ml1m_ratings(path: Path, rating_scale: RatingScale | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    path = require_file(path, "MovieLens-1M ratings", "Put ratings.dat from ml-1m.zip there.")
    df, _ = _split_dat(path, 4, ["user_id", "item_id", "rating", "timestamp"])
    rows = Rows.numbered(path, len(df))
    secs, fmt = parse_timestamps(df["timestamp"], rows)
    out = pd.DataFrame(
        {
            "user_id": df["user_id"].astype(str).str.strip(),
            "item_id": df["item_id"].astype(str).str.strip(),
            "rating": check_ratings(df["rating"], rows, rating_scale or ML1M_SCALE),
            "timestamp": secs,
        }
    )
    out["review_text"] = ""
    out["summary"] = ""
    out["source_order"] = np.arange(len(out), dtype="int64")
    blob = git_blob_of(read_bytes(path))
    if blob == dl.ML1M_RATINGS_GIT_BLOB:
        status = f"verified: git blob id {blob} equals the published id of the full ratings.dat"
    else:
        status = (
            f"NOT the official full ratings.dat: its git blob id is {blob}, the published one is "
            f"{dl.ML1M_RATINGS_GIT_BLOB} ({len(out):,} of 1,000,209 lines); figures will differ "
            f"from the paper"
        )
    return out, file_record(path, "ratings", status, git_blob_sha1=blob, rows=len(out), timestamp_format=fmt)


def read_ml1m_movies(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    path = require_file(path, "MovieLens-1M movies", "Put movies.dat from ml-1m.zip there.")
    df, encoding = _split_dat(path, 3, ["item_id", "title", "genres"])
    items = _movie_items(df["item_id"].astype(str).str.strip(), df["title"], df["genres"])
    return items, file_record(path, "movies", encoding=encoding, rows=len(items))


_ML_AGES = {"1": "under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55", "56": "56+"}
_ML_JOBS = [
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
]


def read_ml1m_users(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    path = require_file(path, "MovieLens-1M users", "Put users.dat from ml-1m.zip there.")
    df, _ = _split_dat(path, 5, ["user_id", "gender", "age", "occupation", "zip"])
    jobs = pd.to_numeric(df["occupation"], errors="coerce")
    bad = np.flatnonzero(jobs.isna().to_numpy())
    if len(bad):
        raise DataError(
            f"{path}, line {int(bad[0]) + 1}: column 'occupation' must be a number, got "
            f"{df['occupation'].iloc[int(bad[0])]!r}. Fix that line."
        )
    attrs = [
        f"gender: {g}; age: {_ML_AGES.get(a, a)}; occupation: {_ML_JOBS[j] if 0 <= j < len(_ML_JOBS) else j}"
        for g, a, j in zip(df["gender"], df["age"], jobs.astype("int64"))
    ]
    users = pd.DataFrame({"user_id": df["user_id"].astype(str).str.strip(), "attributes": attrs})
    return users, file_record(path, "users", rows=len(users))


def ml1m_ratings_file(folder: Path) -> Path | None:
    for name in ("ratings.dat", "ratings.dat.gz"):
        if (folder / name).is_file():
            return folder / name
    others = sorted(p for p in folder.glob("ratings*.dat*") if p.suffix in (".dat", ".gz"))
    return others[0] if others else None


def load_movielens(folder: Path, rating_scale: RatingScale | None = None) -> RawDataset:
    folder = Path(folder)
    ratings_path = ml1m_ratings_file(folder)
    if ratings_path is None:
        raise DataError(
            f"{folder} has no ratings.dat (or ratings.dat.gz). Put the MovieLens-1M files "
            f"ratings.dat, movies.dat, users.dat from {dl.ML1M_URL} there."
        )
    ratings, r_rec = read_ml1m_ratings(ratings_path, rating_scale)
    movies_path = next(
        (folder / n for n in ("movies.dat", "movies.dat.gz") if (folder / n).is_file()), folder / "movies.dat"
    )
    items, m_rec = read_ml1m_movies(movies_path)
    files = [r_rec, m_rec]
    users = None
    notes = []
    if (folder / "users.dat").is_file():
        users, u_rec = read_ml1m_users(folder / "users.dat")
        files.append(u_rec)
    unknown = sorted(set(ratings["item_id"]) - set(items["item_id"]))
    if unknown:
        raise DataError(
            f"{ratings_path}: {len(unknown)} movie id(s) are not in {movies_path} (first: "
            f"{unknown[:5]}). The two files come from different releases: use the "
            f"ratings.dat and movies.dat of the same ml-1m.zip."
        )
    if "NOT the official" in r_rec["checksum_status"]:
        notes.append(
            f"{ratings_path.name} is not the official full ratings.dat (see checksum); "
            f"figures will differ from the paper."
        )
    source = {
        "dataset": "ml1m",
        "description": "MovieLens 1M (GroupLens)",
        "url": dl.ML1M_URL,
        "files": files,
        "license": "GroupLens research-use terms (no redistribution; see README of ml-1m.zip)",
        "citation": ML1M_CITATION,
    }
    return RawDataset("ml1m", ratings, items, source, users, notes=notes)


# ---------------------------------------------------------------------------------------
# ml-latest-small (2018-09 release)
# ---------------------------------------------------------------------------------------
ML_SMALL_DIR = RESOURCES / "ml_latest_small"
ML_SMALL_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
# `git hash-object` of each unzipped CSV of the 2018-09 release (the shipped .gz files hold them)
ML_SMALL_BLOBS = {
    "ratings.csv": "ca23ddf4479457d3e617a983b1424b1af610bdc7",
    "movies.csv": "07dfb5fd04add8191e3b35feb87683dd72543f68",
    "tags.csv": "b0453d04dda7c71f612003f00e0b9d8719af75e3",
    "links.csv": "654a3e0c020bbc0542aeb92491d8fdc623a8a4ff",
}
ML_SMALL_LICENSE = (
    "GroupLens usage license (README.txt beside the data): research use, no commercial use, "
    "cite Harper & Konstan 2015; redistribution allowed under the same terms"
)


def _ml_small_file(folder: Path, name: str) -> Path | None:
    return next((folder / f"{name}{ext}" for ext in ("", ".gz") if (folder / f"{name}{ext}").is_file()), None)


def has_ml_small(folder: Path) -> bool:
    return _ml_small_file(folder, "ratings.csv") is not None


def _read_ml_small(
    folder: Path, name: str, shipped: bool, encoding: str, needed: tuple[str, ...]
) -> tuple[pd.DataFrame, Rows, dict[str, Any]]:
    path = _ml_small_file(folder, name)
    if path is None:
        raise DataError(
            f"{folder} has no {name} (or {name}.gz). Put the files of ml-latest-small.zip "
            f"({ML_SMALL_URL}) there, or set DATA_DIR to '' to use the shipped copy."
        )
    data = read_bytes(path)
    blob = git_blob_of(data)
    if blob == ML_SMALL_BLOBS[name]:
        status = f"verified: git blob id {blob} equals the 2018-09 release's {name}"
    elif shipped:
        raise DataError(
            f"{path}: its content (git blob id {blob}) is not the shipped 2018-09 {name} "
            f"({ML_SMALL_BLOBS[name]}); the shipped copy was modified. Restore it from git "
            f"(git checkout -- {path})."
        )
    else:
        status = (
            f"differs from the 2018-09 release's {name} (git blob id {blob}, release "
            f"{ML_SMALL_BLOBS[name]}): another release or an edited copy"
        )
    df, rows, used = read_csv_file(path, f"ml-latest-small {name}", "utf-8" if shipped else encoding, data=data)
    require_columns(df, path, needed, f"ml-latest-small's {name} has columns {list(needed)}.")
    return (
        df,
        rows,
        file_record(path, name.removesuffix(".csv"), status, git_blob_sha1=blob, rows=len(df), encoding=used),
    )


def load_ml_latest_small(
    folder: Path | None = None,
    encoding: str = "utf-8",
    date_order: str = "auto",
    rating_scale: RatingScale | None = None,
) -> RawDataset:
    """ml-latest-small from ``folder`` (``ratings.csv``, ``movies.csv``, optional ``tags.csv``
    and ``links.csv``, plain or .gz), else the shipped copy (checked against the release)."""
    shipped = folder is None
    folder = ML_SMALL_DIR if folder is None else Path(folder)
    r, r_rows, r_rec = _read_ml_small(
        folder, "ratings.csv", shipped, encoding, ("userId", "movieId", "rating", "timestamp")
    )
    secs, fmt = parse_timestamps(r["timestamp"], r_rows, date_order=date_order)
    r_rec["timestamp_format"] = fmt
    inter = pd.DataFrame(
        {
            "user_id": ids(r, "userId", r_rows),
            "item_id": ids(r, "movieId", r_rows),
            "rating": check_ratings(r["rating"], r_rows, rating_scale or ML_SMALL_SCALE),
            "timestamp": secs,
            "review_text": "",
            "summary": "",
        }
    )
    inter["source_order"] = np.arange(len(inter), dtype="int64")
    m, m_rows, m_rec = _read_ml_small(folder, "movies.csv", shipped, encoding, ("movieId", "title", "genres"))
    items = _movie_items(ids(m, "movieId", m_rows), m["title"], m["genres"])
    dup = items["item_id"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(f"{m_rows.at(i)}: movieId {items['item_id'].iloc[i]} appears twice in movies.csv.")
    unknown = sorted(set(inter["item_id"]) - set(items["item_id"]), key=lambda s: (len(s), s))
    if unknown:
        raise DataError(
            f"{r_rec['path']}: {len(unknown)} movie id(s) are not in {m_rec['path']} (first: "
            f"{unknown[:5]}). Use the ratings.csv and movies.csv of the same release."
        )
    files, tags, notes = [r_rec, m_rec], None, []
    if _ml_small_file(folder, "tags.csv") is not None:
        t, t_rows, t_rec = _read_ml_small(
            folder, "tags.csv", shipped, encoding, ("userId", "movieId", "tag", "timestamp")
        )
        t_secs, t_rec["timestamp_format"] = parse_timestamps(t["timestamp"], t_rows, date_order=date_order)
        tags = pd.DataFrame(
            {
                "user_id": ids(t, "userId", t_rows),
                "item_id": ids(t, "movieId", t_rows),
                "tag": t["tag"].astype(str).to_numpy(),
                "timestamp": t_secs,
            },
            columns=RAW_TAG_COLUMNS,
        )
        files.append(t_rec)
    else:
        notes.append("no tags.csv: items have titles, years and genres only")
    if _ml_small_file(folder, "links.csv") is not None:
        files.append(_read_ml_small(folder, "links.csv", shipped, encoding, ("movieId", "imdbId", "tmdbId"))[2])
    bad = [f["path"] for f in files if f.get("checksum_status", "").startswith("differs")]
    if bad:
        notes.append(
            f"{len(bad)} file(s) differ from the 2018-09 ml-latest-small release (see checksums): "
            f"figures will differ from the shipped copy's"
        )
    source = {
        "dataset": "ml_latest_small",
        "description": "MovieLens ml-latest-small, 2018-09 release (GroupLens)"
        + (" (shipped copy)" if shipped else ""),
        "url": ML_SMALL_URL,
        "files": files,
        "license": ML_SMALL_LICENSE,
        "citation": ML1M_CITATION,
        "provenance": str(ML_SMALL_DIR / "PROVENANCE.md"),
    }
    return RawDataset("ml_latest_small", inter, items, source, notes=notes, tags=tags)
