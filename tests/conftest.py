"""Shared fixtures. Keep this file small; fixtures for one area live in its test module."""

from __future__ import annotations

from pathlib import Path

import pytest

import rrlib


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data kept next to the project (``../shared/data``; see its README), or where
    RRLIB_SHARED_DATA points (a git worktree elsewhere)."""
    import os

    path = Path(os.environ.get("RRLIB_SHARED_DATA") or Path(rrlib.__file__).resolve().parents[2] / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"real-data folder {path} is absent (expected ../shared/data next to the project root)")
    return path


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The whole pipeline 01 -> 07 through the runner on params/smoke.yaml, run ONCE per test
    session; the notebook tests of 02-07 check its artifacts instead of re-running the model.
    Returns (run_dir, manifest, wall_seconds, runner log lines)."""
    import os
    import time

    from rrlib.workbook.runner import run_pipeline

    root = Path(rrlib.__file__).resolve().parents[1]
    base = tmp_path_factory.mktemp("smoke")
    # A fresh cache makes this a cold run (de-quantize the embedded model, generate everything);
    # RRLIB_SMOKE_CACHE reuses a cache between local runs.
    cache = os.environ.get("RRLIB_SMOKE_CACHE") or str(base / "cache")
    logs: list[str] = []
    start = time.monotonic()
    manifest = run_pipeline(
        [root / "params" / "smoke.yaml"],
        {"CACHE_DIR": cache},
        run_id="smoke",
        outputs_dir=base / "outputs",
        log=logs.append,
        progress_bar=False,
    )
    return base / "outputs" / "smoke", manifest, time.monotonic() - start, logs
