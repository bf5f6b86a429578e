"""What notebook 01 will need, checked before a run starts (``rrlib validate`` / ``rrlib run``).

:func:`check_data_params` looks only at names and files (no file is parsed, nothing is
downloaded), so it takes well under a second; the loaders still check every file's content
when notebook 01 reads it. It raises the :class:`DataError` that notebook 01 would raise, with
the same fix, instead of letting the run fail there.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rrlib.config.paths import resolve_path

from . import download as dl
from .errors import DataError
from .loaders import DATASETS, release_files
from .loaders.dispatch import amazon_files, detect_amazon_category
from .loaders.generic import find_table
from .loaders.movielens import ml1m_ratings_file
from .pipeline import domain_of


def check_data_params(params: Mapping[str, Any], *, online: bool | None = None) -> list[str]:
    """Raise :class:`DataError` when notebook 01 cannot run with ``params`` (merged, validated);
    return notes worth printing (e.g. a paper dataset that will be downloaded).

    ``online``: whether the dataset host answers (None: ask it, 3 s at most, only when a
    download would be needed)."""
    p = dict(params)
    dataset = p.get("DATASET", "embedded_beauty")
    if dataset not in DATASETS:
        raise DataError(
            f"parameter DATASET={dataset!r} has no loader yet; choose one of {list(DATASETS)} "
            f"(generic: your own interactions.csv/items.csv in DATA_DIR)."
        )
    domain_of(p)  # DataError: a dataset that implies no prompt domain needs DOMAIN
    data_dir = _data_dir(p.get("DATA_DIR", ""))
    cache = resolve_path(p.get("CACHE_DIR", "outputs/cache")) / "downloads"
    notes: list[str] = []
    if dataset == "embedded_beauty":
        if data_dir is not None:
            notes.append(f"DATA_DIR={p['DATA_DIR']!r} is ignored: embedded_beauty reads the shipped copy.")
        return notes
    if dataset in ("ml_latest_small", "amazon_instruments"):
        return notes  # shipped; a DATA_DIR copy is checked when notebook 01 reads it
    if dataset == "generic":
        if data_dir is None:
            raise DataError(
                "parameter DATA_DIR: DATASET=generic needs DATA_DIR, the folder holding "
                "interactions.csv (or .parquet) and optionally items.csv."
            )
        if find_table(data_dir, "interactions") is None:
            raise DataError(
                f"parameter DATA_DIR: {data_dir} has no interactions.csv or interactions.parquet, "
                f"which DATASET=generic reads (columns user, item, rating, timestamp)."
            )
        return notes
    if dataset == "release_beauty":
        ratings = release_files(data_dir)["ratings"]
        if not ratings.is_file():
            raise DataError(
                f"parameter DATA_DIR: {ratings} does not exist; DATASET=release_beauty reads the "
                f"ReasoningRec release files (ratings.csv, ...) from DATA_DIR, or the shipped copy "
                f"when DATA_DIR is ''."
            )
        return notes
    # paper datasets: DATA_DIR, then the download cache, then a download
    places = [d for d in (data_dir, cache / ("ml-1m" if dataset == "ml1m" else "amazon")) if d is not None]
    if dataset == "ml1m":
        found = any(ml1m_ratings_file(d) is not None for d in places if d.is_dir())
        url, files = dl.ML1M_URL, "ratings.dat, movies.dat and users.dat"
    else:
        category = dl.AMAZON_CATEGORIES.get(dataset) or p.get("AMAZON_CATEGORY") or detect_amazon_category(data_dir)
        found = any(amazon_files(d, category)[0] is not None for d in places if d.is_dir())
        url, files = dl.amazon_urls(category, meta=False)[0], f"{category}.json.gz (and meta_{category}.json.gz)"
    if found:
        return notes
    put = f"put {files} into {' or '.join(str(d) for d in places)}"
    if not p.get("ALLOW_DOWNLOAD", True):
        raise DataError(
            f"parameter DATASET={dataset!r}: its files are not on this machine and ALLOW_DOWNLOAD "
            f"is false: {put}, or set ALLOW_DOWNLOAD: true."
        )
    if online is None:
        online = dl.is_online(url)
    if not online:
        raise DataError(
            f"parameter DATASET={dataset!r}: its files are not on this machine and {url} cannot "
            f"be reached (offline): {put}."
        )
    notes.append(f"DATASET={dataset!r} is not on this machine: notebook 01 will download it from {url}.")
    return notes


def _data_dir(value: str) -> Path | None:
    if not value:
        return None
    path = resolve_path(value)
    if not path.is_dir():
        raise DataError(
            f"parameter DATA_DIR={value!r}: {path} "
            f"{'is a file' if path.exists() else 'does not exist'}; point it at the folder holding "
            f"the dataset files, or set it to '' for the shipped copy or the download cache."
        )
    return path


__all__ = ["check_data_params"]
