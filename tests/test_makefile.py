"""`make demo` builds only the llama.cpp parts its engine uses (the C++ llama-server); the Python
bindings stay a target of their own, and `make test` builds both (the engine tests use both)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _dry_run(target: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # -B: print every recipe, even where the venv stamp is up to date
    out = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_demo_builds_the_cpp_server_only():
    recipe = _dry_run("demo")
    assert "build_llama.sh" in recipe and "--what cpp" in recipe
    assert "--what python" not in recipe and "--what all" not in recipe


def test_server_and_test_build_both_parts():
    for target in ("server", "test"):
        recipe = _dry_run(target)
        assert "--what cpp" in recipe and "--what python" in recipe, target
