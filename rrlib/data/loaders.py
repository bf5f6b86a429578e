"""Readers for every supported dataset, each returning one :class:`RawDataset`.

Datasets by name (parameter ``DATASET``):

``embedded_beauty``
    Amazon Review Data (2018) All_Beauty official 5-core file, shipped inside the package
    (``rrlib/resources/embedded_beauty``, see its PROVENANCE.md). Runs offline; no metadata file,
    so titles fall back to review headlines (below).
``beauty`` / ``fashion``
    The paper's datasets: the FULL Amazon 2018 category files ``All_Beauty.json[.gz]`` /
    ``AMAZON_FASHION.json[.gz]`` plus the optional ``meta_<Category>.json[.gz]``, read from
    ``DATA_DIR``; the user k-core is applied later. ``beauty`` also accepts the 5-core file
    ``All_Beauty_5.json[.gz]`` when the full file is absent (noted in the data card).
``ml1m``
    MovieLens-1M ``ratings.dat`` (plain or ``.gz``; a file named ``ratings*.dat[.gz]`` is also
    accepted), ``movies.dat`` and optional ``users.dat`` from ``DATA_DIR`` (``::``-separated;
    UTF-8 when the bytes decode as UTF-8, else latin-1 as GroupLens ships them). Titles
    ``"Name, The (1995)"`` become title ``"The Name"`` with ``year: 1995; genres: ...``
    attributes. Never committed to this project (GroupLens terms).
``release_beauty``
    The Beauty split released with the ReasoningRec code (MIT): ``ratings.csv``
    (item,user,rating,timestamp), ``processed_item_information.json`` (title, brand, price)
    and ``user_{train,valid,test}.json`` (per user, an item-id window whose LAST id is the
    target and whose other ids are the history). The shipped copy is used unless ``DATA_DIR``
    holds these files (directly or in ``beauty/``).
``generic``
    Bring your own data: ``DATA_DIR`` holds

    * ``interactions.csv`` or ``interactions.parquet`` with columns ``user``, ``item``,
      ``rating`` (number), ``timestamp`` (unix seconds, or a date/time string such as
      ``2019-03-01`` or ``2019-03-01T12:30:00``) and optionally ``review`` (free text) and
      ``summary`` (review headline);
    * optionally ``items.csv`` or ``items.parquet`` with column ``item``, optional ``title``
      and ``description``, and any further columns (brand, price, genre, ...), which become
      free-text attributes ``"column: value; ..."``.

    Set ``DOMAIN`` (movies, beauty or fashion) to choose the prompt wording.

Paper datasets are looked up in ``DATA_DIR``, then in ``CACHE_DIR/downloads``; when absent
and ``ALLOW_DOWNLOAD`` is true and the official host answers, they are downloaded there
and checksummed (see :mod:`rrlib.data.download`); otherwise a :class:`DataError` says which
files to put where.

Titles of items without metadata: the item's most frequent review headline (``summary``),
ignoring star boilerplate such as "Five Stars", followed by the item id in brackets
(``title_source = review_summary``); with no usable headline, ``"item <id>"``
(``title_source = id``). Headlines written at validation/test targets are never used, so
a held-out rating cannot leak through a title; the fallback is therefore filled in by
:mod:`rrlib.data.processing` once the split is known, not here.
"""
from __future__ import annotations

import gzip
import hashlib
import html
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import download as dl
from .errors import DataError

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
EMBEDDED_BEAUTY = RESOURCES / "embedded_beauty" / "All_Beauty_5.json.gz"
EMBEDDED_BEAUTY_SHA256 = "8e49737fefaec9290187c69bf92889452df8be0ab5e36c9476520d6639683279"
RELEASE_ROOT = RESOURCES / "reasoningrec_release"

DATASETS = ("embedded_beauty", "beauty", "fashion", "ml1m", "release_beauty", "generic")

# Columns of RawDataset.interactions / .items (before processing).
RAW_INTERACTION_COLUMNS = ["user_id", "item_id", "rating", "timestamp", "review_text", "summary",
                           "source_order"]
RAW_ITEM_COLUMNS = ["item_id", "title", "title_source", "attributes", "metadata_description"]

AMAZON_CITATION = ("Jianmo Ni, Jiacheng Li, Julian McAuley. Justifying recommendations using "
                   "distantly-labeled reviews and fine-grained aspects. EMNLP 2019.")
ML1M_CITATION = ("F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and "
                 "Context. ACM TiiS 5, 4, Article 19.")
RELEASE_CITATION = ("Millennium Bismay, Xiangjue Dong, James Caverlee. ReasoningRec: Bridging "
                    "Personalized Recommendations and Human-Interpretable Explanations through LLM "
                    "Reasoning. 2024.")


@dataclass
class RawDataset:
    """A dataset as read from its files, before dedup, k-core and split."""
    name: str
    interactions: pd.DataFrame           # RAW_INTERACTION_COLUMNS; source_order = file order
    items: pd.DataFrame                  # RAW_ITEM_COLUMNS; title '' where the source has none
    source: dict[str, Any]               # files + checksums, license, citation, notes
    user_attributes: pd.DataFrame | None = None   # user_id, attributes (free text)
    windows: dict[str, dict[str, list[str]]] | None = None  # release: split -> user -> ids
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------
def _require_file(path: Path, what: str, fix: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist ({what}). {fix}")
    if not path.is_file():
        raise DataError(f"{path} is not a file ({what}). {fix}")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty ({what}). Replace it with a complete copy.")
    return path


def _read_bytes(path: Path) -> bytes:
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot be read as {'gzip' if path.suffix == '.gz' else 'a file'} "
                        f"({e}); the file is damaged or truncated. Replace it with a complete copy.") from e
    if not data.strip():
        raise DataError(f"{path} has no content. Replace it with a complete copy.")
    return data


def _decode(data: bytes) -> tuple[str, str]:
    """UTF-8 when the bytes are valid UTF-8, else latin-1 (the original MovieLens encoding)."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _file_record(path: Path, role: str, status: str = "", **extra) -> dict[str, Any]:
    rec = {"role": role, "path": str(path), "bytes": Path(path).stat().st_size,
           "sha256": dl.sha256_file(path)}
    if status:
        rec["checksum_status"] = status
    rec.update(extra)
    return rec


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


def _first(values: Any) -> Any:
    return values if not isinstance(values, list) else (values[0] if values else None)


# ---------------------------------------------------------------------------------------
# MovieLens-1M
# ---------------------------------------------------------------------------------------
def _split_dat(path: Path, n_fields: int, names: list[str]) -> tuple[pd.DataFrame, str]:
    """Parse a ``::``-separated file, checking every line has ``n_fields`` fields."""
    text, encoding = _decode(_read_bytes(path))
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    counts = pd.Series(lines, dtype=object).str.count("::").to_numpy()
    bad = np.flatnonzero(counts != n_fields - 1)
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{path}, line {i + 1}: expected {n_fields} fields separated by '::' "
                        f"({'::'.join(names)}), got {counts[i] + 1}: {lines[i][:120]!r}. "
                        f"Fix or delete that line ({len(bad)} malformed line(s) in total).")
    rows = [line.split("::") for line in lines]
    return pd.DataFrame(rows, columns=names, dtype=object), encoding


def _numeric(df: pd.DataFrame, column: str, path: Path, kind: str = "float") -> pd.Series:
    values = pd.to_numeric(df[column], errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{path}, line {i + 1}: column '{column}' must be a number, got "
                        f"{df[column].iloc[i]!r}. Fix that line ({len(bad)} bad value(s) in total).")
    return values.astype("int64") if kind == "int" else values.astype(float)


def read_ml1m_ratings(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    path = _require_file(path, "MovieLens-1M ratings", "Put ratings.dat from ml-1m.zip there.")
    df, _ = _split_dat(path, 4, ["user_id", "item_id", "rating", "timestamp"])
    out = pd.DataFrame({
        "user_id": df["user_id"].astype(str).str.strip(),
        "item_id": df["item_id"].astype(str).str.strip(),
        "rating": _numeric(df, "rating", path),
        "timestamp": _numeric(df, "timestamp", path, "int"),
    })
    out["review_text"] = ""
    out["summary"] = ""
    out["source_order"] = np.arange(len(out), dtype="int64")
    content = _read_bytes(path)
    blob = hashlib.sha1(f"blob {len(content)}\0".encode() + content).hexdigest()
    if blob == dl.ML1M_RATINGS_GIT_BLOB:
        status = f"verified: git blob id {blob} equals the published id of the full ratings.dat"
    else:
        status = (f"NOT the official full ratings.dat: its git blob id is {blob}, the published one is "
                  f"{dl.ML1M_RATINGS_GIT_BLOB} ({len(out):,} of 1,000,209 lines); figures will differ "
                  f"from the paper")
    return out, _file_record(path, "ratings", status, git_blob_sha1=blob, rows=len(out))


_ML_TITLE = re.compile(r"^(?P<name>.*?)\s*\((?P<year>\d{4})\)\s*$")
_ARTICLE = re.compile(r"^(?P<rest>.*?), (?P<art>The|A|An|Les|La|Le|L'|Il|Das|Der|Die|El|Lo)"
                      r"(?P<alt> \(.*\))?$")


def movielens_title(raw: str) -> tuple[str, str]:
    """``"Shawshank Redemption, The (1994)"`` -> (``"The Shawshank Redemption"``, ``"1994"``)."""
    m = _ML_TITLE.match(raw.strip())
    name, year = (m["name"], m["year"]) if m else (raw.strip(), "")
    a = _ARTICLE.match(name)
    if a:
        sep = "" if a["art"].endswith("'") else " "
        name = f"{a['art']}{sep}{a['rest']}{a['alt'] or ''}"
    return name, year


def read_ml1m_movies(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    path = _require_file(path, "MovieLens-1M movies", "Put movies.dat from ml-1m.zip there.")
    df, encoding = _split_dat(path, 3, ["item_id", "title", "genres"])
    titles = [movielens_title(t) for t in df["title"]]
    attributes = [
        "; ".join(x for x in (f"year: {y}" if y else "",
                              "genres: " + ", ".join(g.split("|")) if g.strip() else "") if x)
        for (_, y), g in zip(titles, df["genres"])]
    items = pd.DataFrame({
        "item_id": df["item_id"].astype(str).str.strip(),
        "title": [t for t, _ in titles],
        "title_source": "metadata",
        "attributes": attributes,
        "metadata_description": "",
    })
    return items, _file_record(path, "movies", encoding=encoding, rows=len(items))


_ML_AGES = {"1": "under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49",
            "50": "50-55", "56": "56+"}
_ML_JOBS = ["other", "academic/educator", "artist", "clerical/admin", "college/grad student",
            "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
            "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
            "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer"]


def read_ml1m_users(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    path = _require_file(path, "MovieLens-1M users", "Put users.dat from ml-1m.zip there.")
    df, _ = _split_dat(path, 5, ["user_id", "gender", "age", "occupation", "zip"])
    jobs = _numeric(df, "occupation", path, "int")
    attrs = [f"gender: {g}; age: {_ML_AGES.get(a, a)}; occupation: "
             f"{_ML_JOBS[j] if 0 <= j < len(_ML_JOBS) else j}"
             for g, a, j in zip(df["gender"], df["age"], jobs)]
    users = pd.DataFrame({"user_id": df["user_id"].astype(str).str.strip(), "attributes": attrs})
    return users, _file_record(path, "users", rows=len(users))


def _ml1m_ratings_file(folder: Path) -> Path | None:
    for name in ("ratings.dat", "ratings.dat.gz"):
        if (folder / name).is_file():
            return folder / name
    others = sorted(p for p in folder.glob("ratings*.dat*") if p.suffix in (".dat", ".gz"))
    return others[0] if others else None


def load_movielens(folder: Path) -> RawDataset:
    folder = Path(folder)
    ratings_path = _ml1m_ratings_file(folder)
    if ratings_path is None:
        raise DataError(f"{folder} has no ratings.dat (or ratings.dat.gz). Put the MovieLens-1M files "
                        f"ratings.dat, movies.dat, users.dat from {dl.ML1M_URL} there.")
    ratings, r_rec = read_ml1m_ratings(ratings_path)
    movies_path = next((folder / n for n in ("movies.dat", "movies.dat.gz") if (folder / n).is_file()),
                       folder / "movies.dat")
    items, m_rec = read_ml1m_movies(movies_path)
    files = [r_rec, m_rec]
    users = None
    notes = []
    if (folder / "users.dat").is_file():
        users, u_rec = read_ml1m_users(folder / "users.dat")
        files.append(u_rec)
    unknown = sorted(set(ratings["item_id"]) - set(items["item_id"]))
    if unknown:
        raise DataError(f"{ratings_path}: {len(unknown)} movie id(s) are not in {movies_path} (first: "
                        f"{unknown[:5]}). The two files come from different releases: use the "
                        f"ratings.dat and movies.dat of the same ml-1m.zip.")
    if "NOT the official" in r_rec["checksum_status"]:
        notes.append(f"{ratings_path.name} is not the official full ratings.dat (see checksum); "
                     f"figures will differ from the paper.")
    source = {"dataset": "ml1m", "description": "MovieLens 1M (GroupLens)", "url": dl.ML1M_URL,
              "files": files, "license": "GroupLens research-use terms (no redistribution; see README "
              "of ml-1m.zip)", "citation": ML1M_CITATION}
    return RawDataset("ml1m", ratings, items, source, users, notes=notes)


# ---------------------------------------------------------------------------------------
# Amazon Review Data (2018)
# ---------------------------------------------------------------------------------------
AMAZON_REQUIRED = ("reviewerID", "asin", "overall", "unixReviewTime")


def _json_lines(path: Path):
    """Records of a JSON-lines file, streamed (category files reach gigabytes)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    i = 0
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}, line {i}: not valid JSON ({e.msg} at column {e.colno}): "
                                    f"{line[:120]!r}. Fix or delete that line.") from e
                if not isinstance(rec, dict):
                    raise DataError(f"{path}, line {i}: expected a JSON object, got {type(rec).__name__}. "
                                    f"Each line must be one record.")
                yield i, rec
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot be read after line {i} ({e}); the file is damaged or truncated. "
                        f"Replace it with a complete copy.") from e


def read_amazon_reviews(path: Path) -> pd.DataFrame:
    """Amazon 2018 review JSON lines (plain or gzipped)."""
    path = _require_file(path, "Amazon review JSON lines", "Put the category file there.")
    users, items, ratings, times, texts, summaries = [], [], [], [], [], []
    for i, rec in _json_lines(path):
        missing = [k for k in AMAZON_REQUIRED if rec.get(k) in (None, "")]
        if missing:
            raise DataError(f"{path}, line {i}: field(s) {missing} missing; every review needs "
                            f"{list(AMAZON_REQUIRED)}. Fix or delete that line.")
        try:
            rating, ts = float(rec["overall"]), int(rec["unixReviewTime"])
        except (TypeError, ValueError) as e:
            raise DataError(f"{path}, line {i}: 'overall' must be a number and 'unixReviewTime' an "
                            f"integer, got {rec['overall']!r} and {rec['unixReviewTime']!r}.") from e
        users.append(str(rec["reviewerID"]))
        items.append(str(rec["asin"]))
        ratings.append(rating)
        times.append(ts)
        texts.append(str(rec.get("reviewText") or ""))
        summaries.append(str(rec.get("summary") or ""))
    if not users:
        raise DataError(f"{path} holds no reviews. Replace it with a complete copy.")
    return pd.DataFrame({"user_id": users, "item_id": items, "rating": ratings,
                         "timestamp": np.asarray(times, dtype="int64"), "review_text": texts,
                         "summary": summaries, "source_order": np.arange(len(users), dtype="int64")})


def read_amazon_meta(path: Path) -> pd.DataFrame:
    """Amazon 2018 metadata JSON lines -> items (first record wins for a repeated asin)."""
    path = _require_file(path, "Amazon metadata JSON lines", "Put meta_<Category>.json.gz there or "
                         "remove it (metadata is optional).")
    rows, seen = [], set()
    for i, rec in _json_lines(path):
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
        rows.append({"item_id": str(asin), "title": title, "title_source": "metadata" if title else "",
                     "attributes": "; ".join(attrs),
                     "metadata_description": clean_text(rec.get("description"))})
    if not rows:
        raise DataError(f"{path} holds no item records. Replace it with a complete copy.")
    return pd.DataFrame(rows, columns=RAW_ITEM_COLUMNS)


def _items_frame(item_ids, known: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per item id; metadata where known, empty title otherwise (filled later)."""
    ids = pd.DataFrame({"item_id": pd.unique(pd.Series(list(item_ids), dtype=str))})
    if known is None or known.empty:
        out = ids.assign(title="", title_source="", attributes="", metadata_description="")
    else:
        out = ids.merge(known, on="item_id", how="left")
        for c in RAW_ITEM_COLUMNS[1:]:
            out[c] = out[c].fillna("").astype(str)
    return out[RAW_ITEM_COLUMNS]


def load_amazon(reviews_path: Path, meta_path: Path | None = None, name: str = "amazon",
                description: str = "Amazon Review Data (2018)", checksum_status: str = "") -> RawDataset:
    reviews = read_amazon_reviews(reviews_path)
    files = [_file_record(reviews_path, "reviews", checksum_status, rows=len(reviews))]
    meta = None
    if meta_path is not None:
        meta = read_amazon_meta(meta_path)
        files.append(_file_record(meta_path, "metadata", rows=len(meta)))
    items = _items_frame(reviews["item_id"], meta)
    source = {"dataset": name, "description": description, "files": files,
              "license": "research use (Amazon Review Data 2018, UCSD)", "citation": AMAZON_CITATION}
    notes = [] if meta_path else ["no metadata file: titles fall back to review headlines"]
    return RawDataset(name, reviews, items, source, notes=notes)


def load_embedded_beauty() -> RawDataset:
    path = _require_file(EMBEDDED_BEAUTY, "the shipped embedded dataset",
                         "The package is incomplete: reinstall it (pip install -e .).")
    digest = dl.sha256_file(path)
    if digest != EMBEDDED_BEAUTY_SHA256:
        raise DataError(f"{path}: sha256 {digest} is not the shipped {EMBEDDED_BEAUTY_SHA256}; the "
                        f"embedded copy was modified. Restore it from git (git checkout -- {path.name}).")
    raw = load_amazon(path, None, "embedded_beauty",
                      "Amazon Review Data (2018), All_Beauty official 5-core file (shipped copy)",
                      checksum_status=f"verified: sha256 equals the shipped copy's")
    raw.source["provenance"] = str(path.parent / "PROVENANCE.md")
    return raw


# ---------------------------------------------------------------------------------------
# generic CSV / Parquet
# ---------------------------------------------------------------------------------------
GENERIC_REQUIRED = ("user", "item", "rating", "timestamp")


def _read_table(path: Path) -> pd.DataFrame:
    path = _require_file(path, "table", "")
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:  # pandas/pyarrow raise many types; the message names the line
        raise DataError(f"{path}: cannot be parsed ({type(e).__name__}: {e}). Check the file is "
                        f"{'Parquet' if path.suffix == '.parquet' else 'comma-separated with a header row'}.") from e
    if df.empty:
        raise DataError(f"{path} has a header but no rows. Add the data rows.")
    return df


def _find_table(folder: Path, stem: str) -> Path | None:
    for ext in (".parquet", ".csv", ".csv.gz"):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


def _generic_timestamps(values: pd.Series, path: Path) -> np.ndarray:
    num = pd.to_numeric(values, errors="coerce")
    if num.notna().all():
        return num.astype("int64").to_numpy()
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{path}, row {i + 1} (line {i + 2} of a CSV): column 'timestamp' must be unix "
                        f"seconds or a date such as 2019-03-01, got {values.iloc[i]!r}.")
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype("int64").to_numpy()


def load_generic(folder: Path) -> RawDataset:
    folder = Path(folder)
    inter_path = _find_table(folder, "interactions")
    if inter_path is None:
        raise DataError(f"{folder} has no interactions.csv or interactions.parquet. DATASET=generic "
                        f"needs a table with columns {list(GENERIC_REQUIRED)} (+ optional review, summary) "
                        f"there; see rrlib/data/loaders.py.")
    df = _read_table(inter_path)
    missing = [c for c in GENERIC_REQUIRED if c not in df.columns]
    if missing:
        raise DataError(f"{inter_path}: column(s) {missing} missing (found {list(df.columns)}). "
                        f"Rename your columns to {list(GENERIC_REQUIRED)}.")
    for c in ("user", "item"):
        blank = np.flatnonzero(df[c].astype(str).str.strip().eq("").to_numpy() | df[c].isna().to_numpy())
        if len(blank):
            raise DataError(f"{inter_path}, row {int(blank[0]) + 1}: column '{c}' is empty. Fill it or "
                            f"delete the row.")
    inter = pd.DataFrame({
        "user_id": df["user"].astype(str).str.strip(),
        "item_id": df["item"].astype(str).str.strip(),
        "rating": _numeric(df.reset_index(drop=True), "rating", inter_path),
        "timestamp": _generic_timestamps(df["timestamp"].reset_index(drop=True), inter_path),
        "review_text": df["review"].fillna("").astype(str) if "review" in df else "",
        "summary": df["summary"].fillna("").astype(str) if "summary" in df else "",
    })
    inter["source_order"] = np.arange(len(inter), dtype="int64")
    files = [_file_record(inter_path, "interactions", rows=len(inter))]
    known = None
    items_path = _find_table(folder, "items")
    if items_path is not None:
        it = _read_table(items_path)
        if "item" not in it.columns:
            raise DataError(f"{items_path}: column 'item' missing (found {list(it.columns)}). The items "
                            f"table needs 'item' and optionally 'title', 'description' and attributes.")
        it = it.drop_duplicates("item")
        extra = [c for c in it.columns if c not in ("item", "title", "description")]
        attrs = ["; ".join(f"{c}: {clean_text(row[c])}" for c in extra if clean_text(row[c]))
                 for _, row in it.iterrows()]
        titles = it["title"].map(clean_text) if "title" in it else pd.Series([""] * len(it), index=it.index)
        known = pd.DataFrame({
            "item_id": it["item"].astype(str).str.strip().to_numpy(),
            "title": titles.to_numpy(),
            "title_source": np.where(titles.to_numpy() != "", "metadata", ""),
            "attributes": attrs,
            "metadata_description": (it["description"].map(clean_text) if "description" in it
                                     else pd.Series([""] * len(it))).to_numpy(),
        })
        files.append(_file_record(items_path, "items", rows=len(known)))
    items = _items_frame(inter["item_id"], known)
    source = {"dataset": "generic", "description": f"user-provided tables in {folder}", "files": files,
              "license": "as provided by the user", "citation": ""}
    return RawDataset("generic", inter, items, source)


# ---------------------------------------------------------------------------------------
# ReasoningRec release (Beauty)
# ---------------------------------------------------------------------------------------
RELEASE_SPLIT_FILES = {"train": "user_train.json", "valid": "user_valid.json", "test": "user_test.json"}


def release_files(root: str | Path | None = None) -> dict[str, Path]:
    """Paths of the ReasoningRec release files. ``root`` is a release folder (holding
    ``beauty/`` and maybe ``ml1m/``) or a ``beauty`` folder itself; default: the shipped copy.

    Keys: ratings, items (processed_item_information.json: title, brand, price, LLM description),
    profiles (user_profile_summary.json: LLM profiles), train, valid, test (windows), license,
    and ml1m_summaries (movie_summary_25_words.csv) only when that file is under ``root``.
    """
    root = Path(root) if root else RELEASE_ROOT
    beauty = root / "beauty" if (root / "beauty").is_dir() else root
    out = {"ratings": beauty / "ratings.csv", "items": beauty / "processed_item_information.json",
           "profiles": beauty / "user_profile_summary.json",
           **{s: beauty / f for s, f in RELEASE_SPLIT_FILES.items()}}
    for lic in (root / "LICENSE", beauty.parent / "LICENSE", RELEASE_ROOT / "LICENSE"):
        if lic.is_file():
            out["license"] = lic
            break
    for csv in (root / "ml1m" / "movie_summary_25_words.csv", root / "movie_summary_25_words.csv"):
        if csv.is_file():
            out["ml1m_summaries"] = csv
            break
    return out


def _read_json(path: Path, what: str) -> Any:
    path = _require_file(path, what, "Copy it from the ReasoningRec release (beauty/ folder).")
    try:
        return json.loads(_read_bytes(path).decode("utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {e.lineno}, column {e.colno}: not valid JSON ({e.msg}). "
                        f"Replace it with the released file.") from e


def load_release(root: str | Path | None = None) -> RawDataset:
    files = release_files(root)
    ratings_path = _require_file(files["ratings"], "release ratings",
                                 "Copy ratings.csv from the ReasoningRec release (beauty/).")
    df = _read_table(ratings_path)
    missing = [c for c in ("item", "user", "rating", "timestamp") if c not in df.columns]
    if missing:
        raise DataError(f"{ratings_path}: column(s) {missing} missing (found {list(df.columns)}); "
                        f"expected item,user,rating,timestamp.")
    inter = pd.DataFrame({"user_id": df["user"].astype(str).str.strip(),
                          "item_id": df["item"].astype(str).str.strip(),
                          "rating": _numeric(df, "rating", ratings_path),
                          "timestamp": _numeric(df, "timestamp", ratings_path, "int"),
                          "review_text": "", "summary": ""})
    inter["source_order"] = np.arange(len(inter), dtype="int64")
    info = _read_json(files["items"], "release item information")
    if not isinstance(info, dict):
        raise DataError(f"{files['items']}: expected an object mapping item id to its fields.")
    rows = []
    for item_id, rec in info.items():
        if not isinstance(rec, dict):
            raise DataError(f"{files['items']}: entry {item_id!r} must be an object with title, brand, price.")
        title = clean_text(rec.get("title"))
        attrs = "; ".join(f"{k}: {clean_text(rec.get(k))}" for k in ("brand", "price") if clean_text(rec.get(k)))
        rows.append({"item_id": str(item_id), "title": title, "title_source": "metadata" if title else "",
                     "attributes": attrs, "metadata_description": ""})
    items = _items_frame(inter["item_id"], pd.DataFrame(rows, columns=RAW_ITEM_COLUMNS))
    windows: dict[str, dict[str, list[str]]] = {}
    users = set(inter["user_id"])
    for split in ("train", "valid", "test"):
        data = _read_json(files[split], f"release {split} windows")
        if not isinstance(data, dict):
            raise DataError(f"{files[split]}: expected an object mapping user id to a list of item ids.")
        win = {}
        for u, ids in data.items():
            if not isinstance(ids, list) or not ids:
                raise DataError(f"{files[split]}: user {u!r} must map to a non-empty list of item ids, "
                                f"got {ids!r}.")
            win[str(u)] = [str(i) for i in ids]
        stray = sorted(set(win) - users, key=lambda s: (len(s), s))
        if stray:
            raise DataError(f"{files[split]}: user id(s) {stray[:5]} have no rows in {ratings_path}; the "
                            f"files come from different releases.")
        windows[split] = win
    src_files = [_file_record(ratings_path, "ratings", rows=len(inter)),
                 _file_record(files["items"], "items", rows=len(info))]
    src_files += [_file_record(files[s], f"{s} windows", users=len(windows[s])) for s in windows]
    source = {"dataset": "release_beauty",
              "description": "Beauty split released with the ReasoningRec code (Bismay et al. 2024)",
              "files": src_files, "license": "MIT (release); Amazon data: research use",
              "citation": RELEASE_CITATION + " Data: " + AMAZON_CITATION}
    return RawDataset("release_beauty", inter, items, source, windows=windows)


# ---------------------------------------------------------------------------------------
# dispatch by name, local lookup, download
# ---------------------------------------------------------------------------------------
def _existing_dir(data_dir: str | Path) -> Path | None:
    if not data_dir:
        return None
    path = Path(data_dir)
    if not path.exists():
        raise DataError(f"DATA_DIR={str(data_dir)!r}: {path} does not exist. Point DATA_DIR at the folder "
                        f"holding the dataset files, or set it to '' to use the download cache.")
    if not path.is_dir():
        raise DataError(f"DATA_DIR={str(data_dir)!r}: {path} is a file; DATA_DIR must be the folder "
                        f"that holds it.")
    return path


def _amazon_files(folder: Path, category: str, allow_5core: bool) -> tuple[Path | None, Path | None]:
    stems = [category] + ([f"{category}_5"] if allow_5core else [])
    reviews = next((folder / f"{s}{e}" for s in stems for e in (".json.gz", ".json")
                    if (folder / f"{s}{e}").is_file()), None)
    meta = next((folder / f"meta_{category}{e}" for e in (".json.gz", ".json")
                 if (folder / f"meta_{category}{e}").is_file()), None)
    return reviews, meta


def load_dataset(dataset: str, data_dir: str | Path = "", cache_dir: str | Path = "outputs/cache",
                 allow_download: bool = True) -> RawDataset:
    """Read ``dataset`` (one of :data:`DATASETS`) as described in the module docstring."""
    if dataset not in DATASETS:
        raise DataError(f"DATASET={dataset!r} is unknown; choose one of {list(DATASETS)} "
                        f"(generic = your own interactions.csv/items.csv in DATA_DIR).")
    folder = _existing_dir(data_dir)
    downloads = Path(cache_dir) / "downloads"
    if dataset == "embedded_beauty":
        raw = load_embedded_beauty()
        if folder is not None:
            raw.notes.append(f"DATA_DIR={folder} ignored: embedded_beauty always reads the shipped copy")
        return raw
    if dataset == "release_beauty":
        return load_release(folder)
    if dataset == "generic":
        if folder is None:
            raise DataError("DATASET=generic needs DATA_DIR: the folder holding interactions.csv (or "
                            ".parquet) and optionally items.csv.")
        return load_generic(folder)
    if dataset == "ml1m":
        cached = downloads / "ml-1m"
        for place in [p for p in (folder, cached) if p is not None]:
            if _ml1m_ratings_file(place) is not None:
                raw = load_movielens(place)
                if place == cached:
                    ledger = dl.ChecksumLedger(downloads)
                    for rec in raw.source["files"][1:]:
                        rec["checksum_status"] = ledger.verify(Path(rec["path"]))["status"]
                return raw
        where = folder or cached
        if allow_download and dl.is_online(dl.ML1M_URL):
            return load_movielens(dl.fetch_ml1m(downloads))
        raise DataError(
            f"MovieLens-1M not found: put ratings.dat, movies.dat and users.dat (from {dl.ML1M_URL}, "
            f"unzipped) into {where}" + (f" (or into {cached})" if folder else " (or set DATA_DIR to the "
            f"folder that holds them)") + (". Download is off (ALLOW_DOWNLOAD=false)." if not allow_download
            else ". Downloading failed: files.grouplens.org cannot be reached from this machine."))
    # Amazon paper datasets
    category = dl.AMAZON_CATEGORIES[dataset]
    cached = downloads / "amazon"
    for place in [p for p in (folder, cached) if p is not None]:
        reviews, meta = _amazon_files(place, category, allow_5core=dataset == "beauty")
        if reviews is not None:
            status = ""
            if place == cached:
                ledger = dl.ChecksumLedger(downloads)
                status = ledger.verify(reviews)["status"]
                if meta is not None:
                    ledger.verify(meta)
            raw = load_amazon(reviews, meta, dataset, f"Amazon Review Data (2018), {category}",
                              checksum_status=status)
            if reviews.name.startswith(f"{category}_5"):
                raw.notes.append(f"{reviews.name} is the official 5-core file; the paper used the full "
                                 f"{category}.json.gz (user k-core only), so figures will differ")
            return raw
    where = folder or cached
    urls = dl.amazon_urls(category, meta=False)
    if allow_download and any(dl.is_online(u) for u in urls):
        reviews = dl.fetch_amazon(category, downloads, meta=False)
        notes = []
        try:
            meta = dl.fetch_amazon(category, downloads, meta=True)
        except DataError as e:
            meta = None
            notes.append(f"metadata download failed ({e}); titles fall back to review headlines")
        raw = load_amazon(reviews, meta, dataset, f"Amazon Review Data (2018), {category}",
                          checksum_status="sha256 recorded at download (no published checksum)")
        raw.notes += notes
        return raw
    raise DataError(
        f"Amazon {category} not found: put {category}.json.gz (and optionally meta_{category}.json.gz) "
        f"from {urls[0]} (metadata: {dl.amazon_urls(category, meta=True)[0]}) into {where}"
        + (f" (or into {cached})" if folder else " (or set DATA_DIR to the folder that holds them)")
        + (". Download is off (ALLOW_DOWNLOAD=false)." if not allow_download
           else ". Downloading failed: the UCSD hosts cannot be reached from this machine."))
