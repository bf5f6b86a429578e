"""Durable cache of a fitted baseline's prediction rows (SASRec, Caser): a rerun on the same
data with the same settings and seed reads the rows and the fit's record instead of refitting.

The key holds the method, its settings, the seed, a fingerprint of every table the fit reads
(interactions, examples with their splits and labels) and the evaluated example ids, so any
change to them refits. A folder is complete only once both files are written (each atomically);
a kill mid-fit leaves nothing to reuse."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rrlib.io import read_json, stable_hash, write_json_atomic, write_parquet_atomic

#: bump when a fit's code changes what it predicts, so that older entries are not reused
FIT_CACHE_VERSION = 1
FIT_CACHE_DIR = "fitted"


def frame_fingerprint(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """SHA-256 of a table's values (list cells as text), independent of its index."""
    cols = list(columns) if columns is not None else list(df.columns)
    view = df[cols].copy()
    for c in cols:
        if view[c].dtype == object:
            view[c] = view[c].map(repr)
    hashed = pd.util.hash_pandas_object(view, index=False).to_numpy()
    return stable_hash({"columns": cols, "rows": len(view), "hash": stable_hash(hashed.tobytes().hex())})


def cached_fit(
    cache_dir: str | Path,
    method: str,
    payload: Mapping[str, Any],
    fit: Callable[[], tuple[pd.DataFrame, dict[str, Any]]],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``fit()``'s (rows, info), computed once per key: ``payload`` is everything besides the
    method that changes the answer. ``info['fit_cache']`` says 'fitted' or 'reused'."""
    key = stable_hash({"version": FIT_CACHE_VERSION, "method": method, **dict(payload)}, 16)
    folder = Path(cache_dir) / FIT_CACHE_DIR / f"{method}-{key}"
    rows_path, info_path = folder / "rows.parquet", folder / "info.json"
    if rows_path.is_file() and info_path.is_file():
        info = dict(read_json(info_path, f"fitted {method}"))
        return pd.read_parquet(rows_path), {**info, "fit_cache": "reused", "fit_cache_key": key}
    rows, info = fit()
    write_json_atomic(info_path, info)
    write_parquet_atomic(rows, rows_path)  # written last: its presence marks a complete entry
    return rows, {**info, "fit_cache": "fitted", "fit_cache_key": key}


__all__ = ["FIT_CACHE_DIR", "FIT_CACHE_VERSION", "cached_fit", "frame_fingerprint"]
