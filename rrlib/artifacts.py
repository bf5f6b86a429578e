"""Where every artifact of a run lives. Notebooks and modules ask here instead of
building paths themselves, so that data flows one way through one layout:

    RUN_DIR/
      data/        01: interactions, items (with sampled reviews), users, examples, data card, plots
      enrich/      02-03: item_descriptions.parquet, user_profiles.parquet
      reasoning/   04: reasoning.parquet (ground truth for training examples)
                   and test_references.parquet (test subsample; BERTScore references only)
      finetune/    05: <method>_K<k>/ adapters, trainer state, curves
      evaluate/    06: predictions.parquet, results table, plots
      inspect/     07: report.html
      notebooks/   executed notebooks
      results/     one JSON per notebook execution (never overwritten)
      manifest.json, metrics.json
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

STEPS = ("01_data_prep", "02_item_descriptions", "03_user_profiles", "04_reasoning_generation",
         "05_finetune", "06_evaluate", "07_inspect_outputs")


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @classmethod
    def of(cls, run_dir: str | Path, create: bool = True) -> "RunPaths":
        paths = cls(Path(run_dir))
        if create:
            for sub in ("data", "enrich", "reasoning", "finetune", "evaluate", "inspect", "notebooks",
                        "results"):
                (paths.root / sub).mkdir(parents=True, exist_ok=True)
        return paths

    # 01 data
    @property
    def data(self) -> Path: return self.root / "data"
    @property
    def interactions(self) -> Path: return self.data / "interactions.parquet"
    @property
    def items(self) -> Path: return self.data / "items.parquet"
    @property
    def users(self) -> Path: return self.data / "users.parquet"
    @property
    def examples(self) -> Path: return self.data / "examples.parquet"
    @property
    def data_card_json(self) -> Path: return self.data / "data_card.json"
    @property
    def data_card_md(self) -> Path: return self.data / "data_card.md"
    # 02-04 enrichment and reasoning
    @property
    def item_descriptions(self) -> Path: return self.root / "enrich" / "item_descriptions.parquet"
    @property
    def user_profiles(self) -> Path: return self.root / "enrich" / "user_profiles.parquet"
    @property
    def reasoning(self) -> Path: return self.root / "reasoning" / "reasoning.parquet"
    @property
    def reference_reasoning(self) -> Path:
        """Label-conditioned reasoning for the TEST subsample: BERTScore references only, never
        shown to the student (kept in its own file so training cannot read it by accident)."""
        return self.root / "reasoning" / "test_references.parquet"
    # 05-07
    @property
    def finetune(self) -> Path: return self.root / "finetune"
    def adapter_dir(self, method: str, k: int) -> Path: return self.finetune / f"{method}_K{k}"
    @property
    def evaluate(self) -> Path: return self.root / "evaluate"
    @property
    def predictions(self) -> Path: return self.evaluate / "predictions.parquet"
    @property
    def inspect(self) -> Path: return self.root / "inspect"
    @property
    def manifest(self) -> Path: return self.root / "manifest.json"
    @property
    def metrics(self) -> Path: return self.root / "metrics.json"
    @property
    def results(self) -> Path: return self.root / "results"

    def require(self, path: Path, made_by: str) -> Path:
        """Fail clearly when an upstream artifact is missing."""
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run notebook {made_by} for this run folder "
                                    f"({self.root}) first.")
        return path


# ---------------------------------------------------------------------------------------
# Provenance: every results file carries config, seeds, git commit and versions.
# ---------------------------------------------------------------------------------------
KEY_PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "bert-score", "gguf",
                "scikit-learn", "pandas", "numpy", "pyarrow", "papermill")


def package_versions(names=KEY_PACKAGES) -> dict[str, str | None]:
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def git_commit(repo: str | Path | None = None) -> dict[str, Any]:
    repo = Path(repo) if repo else Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        sha, dirty = None, None
    return {"commit": sha, "dirty": dirty}


def environment_info() -> dict[str, Any]:
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "packages": package_versions(), "git": git_commit(),
            "cpu_count": os.cpu_count()}


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_results(run_dir: str | Path, step: str, results: dict[str, Any], params: dict[str, Any]
                  ) -> Path:
    """Record a notebook's results as ``results/<step>-<timestamp>.json``; never overwrites."""
    folder = RunPaths.of(run_dir).results
    stamp = utc_now().replace(":", "").replace("-", "")
    path = folder / f"{step}-{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{step}-{stamp}-{n}.json"
    payload = {"step": step, "written_at": utc_now(), "params": params,
               "seed": params.get("SEED"), "environment": environment_info(), "results": results}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.rename(path)
    return path


def latest_results(run_dir: str | Path, step: str) -> dict[str, Any]:
    files = sorted(RunPaths.of(run_dir, create=False).results.glob(f"{step}-*.json"))
    if not files:
        raise FileNotFoundError(f"no results recorded for {step} in {run_dir}/results")
    return json.loads(files[-1].read_text())


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve_path(path: str | Path) -> Path:
    """Relative paths in parameters are relative to the project root (where pyproject.toml
    is), so a notebook opened from notebooks/ and a papermill run agree on RUN_DIR."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    root = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").exists() else Path.cwd()
    return root / p
