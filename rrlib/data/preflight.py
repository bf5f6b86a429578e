"""What notebook 01 will need, checked before a run starts (``rrlib validate`` / ``rrlib run``).

:func:`check_data_params` looks only at names and files (no file is parsed, nothing is
downloaded), so it takes well under a second; the loaders still check every file's content
when notebook 01 reads it. It raises the :class:`DataError` that notebook 01 would raise, with
the same fix, instead of letting the run fail there.
"""

from __future__ import annotations

import json
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


#: datasets whose files are read for :func:`check_kshot_sizes` (shipped or user tables: a second at
#: most); the paper datasets (ML-1M, Amazon 2018) are not read twice
KSHOT_CHECKED = ("embedded_beauty", "ml_latest_small", "amazon_instruments", "release_beauty", "generic")
#: a user's table larger than this is not read ahead of notebook 01
KSHOT_CHECK_MAX_BYTES = 50 * 1024 * 1024


def check_kshot_sizes(params: Mapping[str, Any], *, card_path: Path | None = None) -> list[str]:
    """Raise :class:`DataError` when KSHOT_SIZES (and so TRAIN_KSHOTS, a subset of it) asks for more
    training examples than the data can give, when that is known cheaply; return notes.

    ``card_path``: the run's data card (notebook 01 already ran): its count of training examples
    is exact. Otherwise, when 01 will run on a dataset of :data:`KSHOT_CHECKED`, the dataset is read
    and the count bounded from above: one training example per user with at least max(KCORE, 3)
    rows (the release: its training windows), at most MAX_USERS; deduplication and copy collapse
    only lower it. Data that cannot be read here is left to notebook 01, which names the problem."""
    sizes = sorted({int(k) for k in params.get("KSHOT_SIZES", [])} | {int(k) for k in params.get("TRAIN_KSHOTS", [])})
    if not sizes:
        return []
    if card_path is not None:
        try:
            card = json.loads(Path(card_path).read_text())
            have, exact = int(card["splits"]["train"]["examples"]), True
        except (OSError, ValueError, KeyError, TypeError):
            return []
        how = f"the run's data card ({card_path}) counts {have:,} training examples"
    else:
        found = _train_bound(params)
        if found is None:
            return []
        have, how = found
        exact = False
    too_big = [k for k in sizes if k > have]
    if not too_big:
        return []
    trained = sorted(set(too_big) & {int(k) for k in params.get("TRAIN_KSHOTS", [])})
    raise DataError(
        f"parameter KSHOT_SIZES / TRAIN_KSHOTS: K={', '.join(map(str, too_big))} "
        f"{'needs' if len(too_big) == 1 else 'need'} more training examples than the data "
        f"{'holds' if exact else 'can give'}: {how}"
        + (f" (TRAIN_KSHOTS trains K={', '.join(map(str, trained))})" if trained else "")
        + f". Set KSHOT_SIZES and TRAIN_KSHOTS to at most {have:,}, or keep more users (KCORE, MAX_USERS, a "
        f"larger dataset)."
    )


def _train_bound(params: Mapping[str, Any]) -> tuple[int, str] | None:
    """(upper bound of the training examples, how it was counted), or None when not checked."""
    dataset = params.get("DATASET", "embedded_beauty")
    if dataset not in KSHOT_CHECKED:
        return None
    data_dir = params.get("DATA_DIR", "") if dataset in ("generic", "release_beauty") else ""
    folder = resolve_path(data_dir) if data_dir else None
    if dataset == "generic":
        table = find_table(folder, "interactions") if folder is not None and folder.is_dir() else None
        if table is None:
            return None
        stat = table.stat()
        if stat.st_size > KSHOT_CHECK_MAX_BYTES:
            return None
        stamp: tuple[Any, ...] = (str(table), stat.st_size, stat.st_mtime_ns)
    else:
        stamp = (str(folder),)
    key = tuple(
        json.dumps(params.get(k), sort_keys=True, default=str)
        for k in ("DATASET", "ENCODING", "DATE_ORDER", "RATING_SCALE", "KCORE", "MAX_USERS")
    )
    return _cached_bound(key + stamp, dict(params))


_BOUNDS: dict[tuple[Any, ...], tuple[int, str] | None] = {}


def _cached_bound(key: tuple[Any, ...], params: dict[str, Any]) -> tuple[int, str] | None:
    """The bound of :func:`_train_bound`, read once per process for the same files and parameters."""
    if key not in _BOUNDS:
        _BOUNDS[key] = _read_bound(params)
    return _BOUNDS[key]


def _read_bound(params: dict[str, Any]) -> tuple[int, str] | None:
    from .pipeline import load_raw

    try:
        raw = load_raw(params)
    except Exception:  # unreadable, or parameters notebook 01 refuses: it names the problem itself
        return None
    dataset = params.get("DATASET", "embedded_beauty")
    if raw.windows is not None:  # the release: one training example per user of its train windows
        users = len(raw.windows.get("train", {}))
        how = f"{dataset} has training windows for {users:,} users"
    else:
        k = max(int(params.get("KCORE", 3) or 3), 3)
        per_user = raw.interactions.groupby("user_id").size()
        users = int((per_user >= k).sum())
        how = f"{dataset} has {users:,} users with at least {k} interactions (KCORE), one training example each"
    if users == 0:
        return None  # the k-core leaves no one: notebook 01 refuses that with its own fix (lower KCORE)
    max_users = int(params.get("MAX_USERS", 0) or 0)
    if 0 < max_users < users:
        users = max_users
        how += f", and MAX_USERS={max_users} keeps {max_users:,}"
    return users, how


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


__all__ = ["check_data_params", "check_kshot_sizes"]
