"""Shared fixtures. Keep this file small; fixtures for one area live in its test module."""
from __future__ import annotations

from pathlib import Path

import pytest

import rrlib


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data kept next to the project (``../shared/data``; see its README)."""
    path = Path(rrlib.__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real-data folder {path} is absent (expected ../shared/data next to the project root)")
    return path
