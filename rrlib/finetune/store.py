"""The adapter store: trained adapters shared by runs, keyed by their configuration hash
(``CACHE_DIR/adapters/<config_hash>``)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rrlib.config.params import Config
from rrlib.config.paths import resolve_path
from rrlib.io import read_json_or_none, write_json_atomic
from rrlib.student import (
    ADAPTER_FILES,
    ADAPTER_SUBDIR,
)

log = logging.getLogger(__name__)


#: what a finished run leaves in its adapter folder and what the store keeps of it
_RUN_OUTPUTS = ("train_config.json", "trainer_state.json", "curves.csv", "curves.png", "training_summary.json")


def store_dir(cfg: Config, config_hash: str) -> Path:
    """``CACHE_DIR/adapters/<config_hash>``: the trained adapter of one configuration."""
    return resolve_path(cfg.common.cache_dir) / "adapters" / config_hash


def _complete(folder: Path, config_hash: str) -> bool:
    summary = read_json_or_none(folder / "training_summary.json") or {}
    return summary.get("config_hash") == config_hash and all(
        (folder / ADAPTER_SUBDIR / f).is_file() for f in ADAPTER_FILES
    )


def publish_adapter(out_dir: Path, target: Path) -> Path:
    """Copy a finished run's adapter and records into the store, atomically: a folder built
    beside ``target`` and renamed onto it, so the store never holds half an adapter. A target
    that already exists (another run published the same configuration) is kept."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / ADAPTER_SUBDIR).mkdir(parents=True)
    for f in ADAPTER_FILES:
        shutil.copy2(out_dir / ADAPTER_SUBDIR / f, tmp / ADAPTER_SUBDIR / f)
    for f in _RUN_OUTPUTS:
        if (out_dir / f).is_file():
            shutil.copy2(out_dir / f, tmp / f)
    try:
        os.rename(tmp, target)
    except OSError:  # published meanwhile by another process
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def reuse_adapter(source: Path, out_dir: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """Copy a stored adapter into this run's folder (the summary last: it marks the run
    finished) and return its summary, pointing at this run's folder."""
    summary = read_json_or_none(source / "training_summary.json") or {}
    target = out_dir / ADAPTER_SUBDIR
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for f in ADAPTER_FILES:
        shutil.copy2(source / ADAPTER_SUBDIR / f, target / f)  # copy2 keeps mtimes: the hash memo still applies
    for f in _RUN_OUTPUTS[:-1]:
        if (source / f).is_file():
            shutil.copy2(source / f, out_dir / f)
    write_json_atomic(out_dir / "train_config.json", config)
    summary = {
        **summary,
        "status": "reused",
        "reused_from": str(source),
        "adapter_dir": str(out_dir),
        "adapter_path": str(target),
        "curves_png": str(out_dir / "curves.png"),
    }
    write_json_atomic(out_dir / "training_summary.json", summary)
    return summary
