"""Provenance: every results file carries its parameters, seeds, git commit and package versions,
and is never overwritten (``results/<step>-<UTC timestamp>.json``)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from rrlib.config.paths import PROJECT_ROOT, RunPaths
from rrlib.io import write_json_atomic

KEY_PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "bert-score",
    "gguf",
    "scikit-learn",
    "pandas",
    "numpy",
    "pyarrow",
    "papermill",
    "llama_cpp_python",
)


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def git_commit(repo: str | Path | None = None) -> dict[str, Any]:
    repo = Path(repo) if repo else PROJECT_ROOT
    try:
        sha = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=repo,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        sha, dirty = None, None
    return {"commit": sha, "dirty": dirty}


def environment_info() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_commit(),
        "cpu_count": os.cpu_count(),
    }


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_results(paths: RunPaths, step: str, results: Mapping[str, Any], params: Mapping[str, Any]) -> Path:
    """Record a notebook's results as ``results/<step>-<timestamp>.json``; never overwrites."""
    if not isinstance(paths, RunPaths):
        raise TypeError(
            f"write_results takes the run's RunPaths (RunPaths.of(RUN_DIR)), got {type(paths).__name__}: "
            f"a raw RUN_DIR would be resolved against the notebook's working folder."
        )
    folder = paths.results
    folder.mkdir(parents=True, exist_ok=True)
    stamp = utc_now().replace(":", "").replace("-", "")
    path = folder / f"{step}-{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{step}-{stamp}-{n}.json"
    payload = {
        "step": step,
        "written_at": utc_now(),
        "params": dict(params),
        "seed": params.get("SEED"),
        "environment": environment_info(),
        "results": dict(results),
    }
    return write_json_atomic(path, payload)


def latest_results(paths: RunPaths, step: str) -> dict[str, Any]:
    files = sorted(paths.results.glob(f"{step}-*.json"))
    if not files:
        raise FileNotFoundError(f"no results recorded for {step} in {paths.results}")
    return json.loads(files[-1].read_text())


__all__ = [
    "KEY_PACKAGES",
    "environment_info",
    "git_commit",
    "latest_results",
    "package_versions",
    "utc_now",
    "write_results",
]
