"""The run's record: ``outputs/<run-id>/manifest.json`` and ``metrics.json``.

The runner (:mod:`rrlib.run`) creates the manifest before the first notebook and refreshes it
after each one, atomically (write a temporary file, then rename), so a crash never leaves a
half-written manifest. It holds:

- ``params`` (the merged, validated parameters), ``param_files``, ``overrides``, ``seeds``;
- ``git`` (commit and dirty flag) and ``environment`` (Python, platform, package versions);
- ``notebooks``: per notebook ``status`` (pending | running | completed | failed | interrupted),
  start/finish time, seconds, peak RSS memory of the kernel, tokens, the results file and, for a
  failure, the notebook cell and error;
- ``models``: teacher / student / BERTScore identities (what the parameters name, what the steps
  recorded in their results files, and the SHA-256 of the embedded GGUF);
- ``data``: SHA-256 of the raw input files and of every Parquet table the run produced.

``metrics.json`` holds the final figures: notebook 06's metrics, composed by
:func:`compose_metrics`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from rrlib.artifacts import STEPS, RunPaths, environment_info, git_commit, resolve_path, utc_now

MANIFEST_VERSION = 1
STATUSES = ("pending", "running", "completed", "failed", "interrupted")
# Steps (by number) whose model is the teacher, and those whose model is the student.
TEACHER_STEPS = ("02", "03", "04")
STUDENT_STEPS = ("05", "06")
# Keys under which a results file may report tokens (see :func:`tokens_of`).
TOKEN_KEYS = ("tokens", "generation_stats", "generation", "llm")
_TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "generated", "cached", "truncated_prompts")


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    """Write JSON via a temporary sibling and ``os.replace`` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, default=str, ensure_ascii=False))
    os.replace(tmp, path)
    return path


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = RunPaths.of(run_dir, create=False).manifest
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a run folder made by "
                                f"`python -m rrlib run`.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the run record is damaged.") from e


def write_manifest(run_dir: str | Path, manifest: Mapping[str, Any]) -> Path:
    manifest = dict(manifest)
    manifest["updated_at"] = utc_now()
    return write_json_atomic(RunPaths.of(run_dir, create=False).manifest, manifest)


# ---------------------------------------------------------------------------------------
# The manifest
# ---------------------------------------------------------------------------------------
def new_manifest(run_id: str, params: Mapping[str, Any], steps: Iterable[str], *,
                 param_files: Iterable[str] = (), overrides: Mapping[str, Any] | None = None,
                 command: list[str] | None = None, kernel: str = "") -> dict[str, Any]:
    env = environment_info()
    return {
        "manifest_version": MANIFEST_VERSION,
        "run_id": run_id,
        "created_at": utc_now(),
        "updated_at": utc_now(),
        "status": "pending",
        "command": command or [],
        "kernel": kernel,
        "param_files": [str(f) for f in param_files],
        "overrides": dict(overrides or {}),
        "params": dict(params),
        "seeds": {k: v for k, v in params.items() if k == "SEED" or k.endswith("_SEED")},
        "git": env.get("git") or git_commit(),
        "environment": {k: v for k, v in env.items() if k != "git"},
        "notebooks": {s: {"status": "pending"} for s in steps},
        "attempts": [],
        "models": {},
        "data": {},
    }


def set_step(manifest: dict[str, Any], step: str, **fields: Any) -> dict[str, Any]:
    """Update one notebook's record (``status`` must be one of :data:`STATUSES`)."""
    if "status" in fields and fields["status"] not in STATUSES:
        raise ValueError(f"unknown notebook status {fields['status']!r}; expected one of {STATUSES}")
    record = manifest.setdefault("notebooks", {}).setdefault(step, {"status": "pending"})
    record.update(fields)
    return record


def latest_step_results(run_dir: str | Path, step: str) -> tuple[Path | None, dict[str, Any]]:
    """The newest results file of a step and its payload (``(None, {})`` when there is none)."""
    folder = RunPaths.of(run_dir, create=False).results
    files = sorted(folder.glob(f"{step}-*.json")) if folder.is_dir() else []
    if not files:
        return None, {}
    try:
        return files[-1], json.loads(files[-1].read_text())
    except (OSError, json.JSONDecodeError):
        return files[-1], {}


def tokens_of(results: Mapping[str, Any]) -> dict[str, int] | None:
    """Token counts reported in a step's ``results`` dict.

    Accepted shapes: ``results["tokens"]`` as an int (total) or a dict, and
    ``results["generation_stats"]`` (also read under ``generation`` and ``llm``) as a :class:`rrlib.llm.CachedGenerator` ``stats`` dict or a
    dict of such dicts (one per generation job) -- numeric fields are summed."""
    found = False
    totals: dict[str, int] = {}

    def add(stats: Any) -> None:
        nonlocal found
        if isinstance(stats, bool):
            return
        if isinstance(stats, (int, float)):
            totals["total_tokens"] = totals.get("total_tokens", 0) + int(stats)
            found = True
        elif isinstance(stats, Mapping):
            direct = {k: v for k, v in stats.items() if k in _TOKEN_FIELDS or k == "total_tokens"}
            if direct:
                for k, v in direct.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        totals[k] = totals.get(k, 0) + int(v)
                        found = True
            else:
                for v in stats.values():
                    if isinstance(v, Mapping):
                        add(v)

    for key in TOKEN_KEYS:
        if key in results:
            add(results[key])
    if not found:
        return None
    if "total_tokens" not in totals and ("prompt_tokens" in totals or "completion_tokens" in totals):
        totals["total_tokens"] = totals.get("prompt_tokens", 0) + totals.get("completion_tokens", 0)
    return totals


def identities_in(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Every ``*identity`` entry (a model identity as :class:`rrlib.llm.base.ChatBackend`
    reports it) found anywhere in a results dict, keyed by its dotted path."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if str(k).lower().endswith("identity") and v:
                out[path] = v
            else:
                out.update(identities_in(v, path))
    return out


def step_summary(run_dir: str | Path, step: str) -> dict[str, Any]:
    """What the runner copies into a notebook's manifest record from its results file."""
    path, payload = latest_step_results(run_dir, step)
    if path is None:
        return {}
    results = payload.get("results", {}) if isinstance(payload, Mapping) else {}
    summary: dict[str, Any] = {"results_file": str(Path("results") / path.name)}
    tokens = tokens_of(results) if isinstance(results, Mapping) else None
    if tokens is not None:
        summary["tokens"] = tokens
    return summary


def _embedded_model_info(kind: str, cache_dir: Path) -> dict[str, Any]:
    """Where the embedded model comes from and its hash (never imports the model packages)."""
    from rrlib.llm import embedded
    try:
        if kind == "llm":
            gguf = embedded.embedded_gguf()
            return {"package": embedded.SMOLLM2_PIP, "file": gguf.name,
                    "sha256": embedded.file_sha256(gguf, cache_dir)}
        folder = embedded.embedded_bertscore_model()
        weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
        return {"package": embedded.MINILM_PIP, "folder": folder.name,
                "sha256": {p.name: embedded.file_sha256(p, cache_dir) for p in weights}}
    except Exception as e:  # a missing package is reported, not fatal for the record
        return {"error": str(e)}


def _recorded_steps(run_dir: str | Path, numbers: Iterable[str]) -> list[str]:
    """Names of the steps with results files whose number is in ``numbers``."""
    folder = RunPaths.of(run_dir, create=False).results
    if not folder.is_dir():
        return []
    names = {p.name.split("-")[0] for p in folder.glob("*.json")}
    return sorted(n for n in names if n[:2] in tuple(numbers))


def adapter_hashes(run_dir: str | Path) -> dict[str, str]:
    """SHA-256 of each finished LoRA adapter (``finetune/<method>_K<k>/adapter_model.*``;
    intermediate trainer checkpoints are not included)."""
    folder = RunPaths.of(run_dir, create=False).finetune
    out = {}
    for weights in sorted(folder.glob("*/adapter_model.*")) if folder.is_dir() else []:
        if weights.suffix in (".safetensors", ".bin"):
            out[weights.parent.name] = sha256_file(weights)
    return out


def model_identities(run_dir: str | Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Teacher, student and BERTScore models: what the parameters ask for, the identities the
    steps recorded in their results files, and hashes of embedded model files."""
    cache_dir = resolve_path(params.get("CACHE_DIR", "outputs/cache"))
    out: dict[str, Any] = {}
    for role, steps in (("teacher", TEACHER_STEPS), ("student", STUDENT_STEPS)):
        prefix = role.upper()
        entry: dict[str, Any] = {
            "requested": {k: params.get(f"{prefix}_{k}") for k in ("MODEL", "REVISION", "QUANTIZATION")
                          if f"{prefix}_{k}" in params}}
        if role == "teacher":
            entry["requested"]["BACKEND"] = params.get("TEACHER_BACKEND")
            if params.get("TEACHER_BACKEND") == "server":
                entry["requested"].update(SERVER_URL=params.get("SERVER_URL"),
                                          SERVER_MODEL=params.get("SERVER_MODEL"))
        recorded = {}
        for step in _recorded_steps(run_dir, steps):
            _, payload = latest_step_results(run_dir, step)
            found = identities_in(payload.get("results", {})) if payload else {}
            if found:
                recorded[step] = found
        if recorded:
            entry["recorded"] = recorded
        if params.get(f"{prefix}_MODEL") == "embedded" and (role == "student" or
                                                            params.get("TEACHER_BACKEND") != "server"):
            entry["embedded"] = _embedded_model_info("llm", cache_dir)
        if role == "student":
            adapters = adapter_hashes(run_dir)
            if adapters:
                entry["adapters"] = adapters
        out[role] = entry
    bert = {"requested": {"MODEL": params.get("BERTSCORE_MODEL"),
                          "NUM_LAYERS": params.get("BERTSCORE_NUM_LAYERS")}}
    if params.get("BERTSCORE_MODEL") == "embedded":
        bert["embedded"] = _embedded_model_info("bertscore", cache_dir)
    out["bertscore"] = bert
    return out


# ---------------------------------------------------------------------------------------
# Data checksums
# ---------------------------------------------------------------------------------------
_SOURCE_KEYS = ("source_files", "raw_files", "input_files", "sources", "files")


def _source_files_in(obj: Any) -> list[str]:
    """Raw input paths a data card or results dict lists under one of :data:`_SOURCE_KEYS`
    (a list of paths, a dict keyed by path, or a list of dicts with a ``path``)."""
    out: list[str] = []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if k in _SOURCE_KEYS:
                items = v.keys() if isinstance(v, Mapping) else v if isinstance(v, list) else [v]
                for item in items:
                    if isinstance(item, Mapping):
                        item = item.get("path") or item.get("file")
                    if isinstance(item, str):
                        out.append(item)
            else:
                out.extend(_source_files_in(v))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(_source_files_in(v))
    return out


def raw_input_files(run_dir: str | Path, params: Mapping[str, Any]) -> list[Path]:
    """The raw files the data step read: as listed by its data card / results file, else every
    file in DATA_DIR, plus the import files named by DESCRIPTIONS_IMPORT / PROFILES_IMPORT /
    PLOTS_CSV."""
    paths = RunPaths.of(run_dir, create=False)
    listed: list[str] = []
    if paths.data_card_json.is_file():
        try:
            listed += _source_files_in(json.loads(paths.data_card_json.read_text()))
        except (OSError, json.JSONDecodeError):
            pass
    _, payload = latest_step_results(run_dir, "01_data_prep")
    listed += _source_files_in(payload.get("results", {})) if payload else []
    files = [resolve_path(p) for p in listed]
    if not files and params.get("DATA_DIR"):
        data_dir = resolve_path(params["DATA_DIR"])
        if data_dir.is_dir():
            files = sorted(p for p in data_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    for key in ("DESCRIPTIONS_IMPORT", "PROFILES_IMPORT", "PLOTS_CSV"):
        if params.get(key):
            files.append(resolve_path(params[key]))
    run_root = Path(run_dir).resolve()
    seen, out = set(), []
    for f in files:
        if run_root in f.resolve().parents:
            continue  # a product of the run, not an input
        if f not in seen and f.is_file():
            seen.add(f)
            out.append(f)
    return out


def data_checksums(run_dir: str | Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """SHA-256 of the raw inputs and of every Parquet table under the run folder."""
    root = Path(run_dir)
    tables = {str(p.relative_to(root)): sha256_file(p)
              for p in sorted(root.rglob("*.parquet"))
              if "notebooks" not in p.relative_to(root).parts}
    raw = {str(p): sha256_file(p) for p in raw_input_files(run_dir, params)}
    return {"raw_inputs": raw, "tables": tables}


def refresh(manifest: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Recompute the parts of the manifest that steps produce (models, data)."""
    params = manifest.get("params", {})
    manifest["models"] = model_identities(run_dir, params)
    manifest["data"] = data_checksums(run_dir, params)
    return manifest


# ---------------------------------------------------------------------------------------
# metrics.json
# ---------------------------------------------------------------------------------------
EVALUATE_STEP = "06_evaluate"
#: keys of 06's results record that point at files rather than hold figures
_NOT_FIGURES = ("files", "predictions", "table", "plots")


def compose_metrics(run_dir: str | Path, manifest: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The final figures of a run: notebook 06's metrics (``results["metrics"]`` of its newest
    results file, or the whole results dict when it has no ``metrics`` key), with what they
    were computed on. Raises FileNotFoundError when 06 has not recorded results."""
    path, payload = latest_step_results(run_dir, EVALUATE_STEP)
    if path is None:
        raise FileNotFoundError(f"no results of {EVALUATE_STEP} in {Path(run_dir) / 'results'}: run "
                                f"notebook 06 for this run first.")
    results = payload.get("results", {})
    if isinstance(results, Mapping) and "metrics" in results:
        metrics = results["metrics"]
    elif isinstance(results, Mapping):  # the record is the metrics, plus pointers to files
        metrics = {k: v for k, v in results.items() if k not in _NOT_FIGURES}
    else:
        metrics = results
    params = (manifest or {}).get("params") or payload.get("params", {})
    return {
        "run_id": (manifest or {}).get("run_id", Path(run_dir).name),
        "written_at": utc_now(),
        "source": str(Path("results") / path.name),
        "dataset": params.get("DATASET"),
        "teacher_model": params.get("TEACHER_MODEL"),
        "student_model": params.get("STUDENT_MODEL"),
        "train_kshots": params.get("TRAIN_KSHOTS"),
        "n_test": params.get("N_TEST"),
        "seed": params.get("SEED"),
        "metrics": metrics,
    }


def write_metrics(run_dir: str | Path, manifest: Mapping[str, Any] | None = None) -> Path:
    """Write metrics.json; keys that steps already put there (e.g. a per-step summary merged by
    notebook 06) are kept unless :func:`compose_metrics` has the same key."""
    path = RunPaths.of(run_dir, create=False).metrics
    existing: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text())
            existing = loaded if isinstance(loaded, dict) else {}
        except json.JSONDecodeError:
            existing = {}  # replaced by a complete file below
    return write_json_atomic(path, {**existing, **compose_metrics(run_dir, manifest)})


__all__ = ["STEPS", "compose_metrics", "data_checksums", "model_identities", "new_manifest",
           "read_manifest", "refresh", "set_step", "sha256_file", "step_summary", "tokens_of",
           "write_json_atomic", "write_manifest", "write_metrics"]
