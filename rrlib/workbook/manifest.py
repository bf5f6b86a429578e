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

``metrics.json`` is written by notebook 07 alone (:func:`rrlib.evaluate.results.write_run_metrics`);
the manifest only points at it.

What a notebook's results record may hold, read by fixed keys (:data:`RESULT_KEYS`):
``generation`` (token counts: a :class:`rrlib.llm.CachedGenerator` ``stats`` dict, or a dict of
such dicts, one per generation job), ``model_identities`` (``{role: identity}``) and
``parse_rates`` (``{job: record}``, each a :func:`rrlib.prompts.grammars.parse_rate` record: how
many teacher answers of a parsed task parse). The parse rates are copied into the notebook's record
and gathered, by step, under the manifest's own ``parse_rates``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rrlib.config.paths import RunPaths, resolve_path
from rrlib.config.provenance import environment_info, git_commit, utc_now
from rrlib.errors import mask_secrets
from rrlib.io import read_json, sha256_file, write_text_atomic
from rrlib.llm import embedded

MANIFEST_VERSION = 1
STATUSES = ("pending", "running", "completed", "failed", "interrupted")
# Steps (by number) whose model is the teacher, and those whose model is the student.
TEACHER_STEPS = ("02", "03", "04", "05")
STUDENT_STEPS = ("06", "07")
#: the keys of a results record the manifest reads
RESULT_KEYS = ("generation", "model_identities", "parse_rates")
_TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "generated", "cached", "truncated_prompts")


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------
def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = RunPaths.of(run_dir, create=False).manifest
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a run folder made by `python -m rrlib run`.")
    return read_json(path, "the run record")


def write_manifest(run_dir: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Write the manifest atomically. The value of the API-key variable (SERVER_API_KEY_ENV) is
    masked wherever it appears, whatever wrote it (an error text, a recorded command line)."""
    manifest = dict(manifest)
    manifest["updated_at"] = utc_now()
    text = json.dumps(manifest, indent=2, default=str, ensure_ascii=False)
    key_env = str((manifest.get("params") or {}).get("SERVER_API_KEY_ENV", ""))
    return write_text_atomic(
        RunPaths.of(run_dir, create=False).manifest, mask_secrets(text, env_names=[key_env], patterns=False)
    )


# ---------------------------------------------------------------------------------------
# The manifest
# ---------------------------------------------------------------------------------------
def new_manifest(
    run_id: str,
    params: Mapping[str, Any],
    steps: Iterable[str],
    *,
    param_files: Iterable[str] = (),
    overrides: Mapping[str, Any] | None = None,
    command: list[str] | None = None,
    kernel: str = "",
) -> dict[str, Any]:
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
    """Token counts in ``results["generation"]``: one :class:`rrlib.llm.CachedGenerator` ``stats``
    dict, or a dict of them (one per generation job); numeric fields are summed."""
    stats = results.get("generation") if isinstance(results, Mapping) else None
    if not isinstance(stats, Mapping):
        return None
    jobs = [stats] if any(k in stats for k in _TOKEN_FIELDS) else [v for v in stats.values() if isinstance(v, Mapping)]
    totals: dict[str, int] = {}
    for job in jobs:
        for k in _TOKEN_FIELDS:
            v = job.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                totals[k] = totals.get(k, 0) + int(v)
    if not totals:
        return None
    totals["total_tokens"] = totals.get("prompt_tokens", 0) + totals.get("completion_tokens", 0)
    return totals


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
    damage = cache_damage_of(results) if isinstance(results, Mapping) else {}
    if damage:
        summary["cache_damaged_lines"] = damage
    rates = parse_rates_of(results) if isinstance(results, Mapping) else None
    if rates:
        summary["parse_rates"] = rates
    return summary


def parse_rates_of(results: Mapping[str, Any]) -> dict[str, Any] | None:
    """``results["parse_rates"]``: ``{job: parse record}`` (records without a ``rate`` are dropped)."""
    rates = results.get("parse_rates")
    if not isinstance(rates, Mapping):
        return None
    return {str(k): dict(v) for k, v in rates.items() if isinstance(v, Mapping) and "rate" in v} or None


def run_parse_rates(run_dir: str | Path) -> dict[str, Any]:
    """Every step's parse rates (``{step: {job: record}}``) from its newest results file."""
    out = {}
    for step in _recorded_steps(run_dir, TEACHER_STEPS):
        _, payload = latest_step_results(run_dir, step)
        results = payload.get("results", {}) if isinstance(payload, Mapping) else {}
        rates = parse_rates_of(results) if isinstance(results, Mapping) else None
        if rates:
            out[step] = rates
    return out


def cache_damage_of(results: Mapping[str, Any]) -> dict[str, int]:
    """``{cache file: damaged lines}`` of the generation caches a step loaded, from the
    ``cache_file`` / ``cache_damaged_lines`` of its ``results["generation"]`` stats (one dict, or
    one per job; a file loaded by several jobs counts once); files without damage are left out."""
    stats = results.get("generation")
    if not isinstance(stats, Mapping):
        return {}
    jobs = [stats] if "cache_damaged_lines" in stats else [v for v in stats.values() if isinstance(v, Mapping)]
    out: dict[str, int] = {}
    for job in jobs:
        n = job.get("cache_damaged_lines")
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            name = str(job.get("cache_file") or "generation cache")
            out[name] = max(out.get(name, 0), n)
    return out


def _embedded_model_info(kind: str, cache_dir: Path) -> dict[str, Any]:
    """Where the embedded model comes from and its hash (never imports the model packages)."""

    try:
        if kind == "llm":
            gguf = embedded.embedded_gguf()
            return {
                "package": embedded.SMOLLM2_PIP,
                "file": gguf.name,
                "sha256": embedded.model_file_sha256(gguf, cache_dir),
            }
        folder = embedded.embedded_bertscore_model()
        weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
        return {
            "package": embedded.MINILM_PIP,
            "folder": folder.name,
            "sha256": {p.name: embedded.model_file_sha256(p, cache_dir) for p in weights},
        }
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
            "requested": {
                k: params.get(f"{prefix}_{k}")
                for k in ("MODEL", "REVISION", "QUANTIZATION")
                if f"{prefix}_{k}" in params
            }
        }
        if role == "teacher":
            entry["requested"]["BACKEND"] = params.get("TEACHER_BACKEND")
            if params.get("TEACHER_BACKEND") == "server":
                entry["requested"].update(SERVER_URL=params.get("SERVER_URL"), SERVER_MODEL=params.get("SERVER_MODEL"))
        recorded = {}
        for step in _recorded_steps(run_dir, steps):
            _, payload = latest_step_results(run_dir, step)
            found = (payload.get("results", {}) or {}).get("model_identities") if payload else None
            if found:
                recorded[step] = found
        if recorded:
            entry["recorded"] = recorded
        if params.get(f"{prefix}_MODEL") in ("embedded", "embedded-tiny") and (  # tiny: its tokenizer's GGUF
            role == "student" or params.get("TEACHER_BACKEND") != "server"
        ):
            entry["embedded"] = _embedded_model_info("llm", cache_dir)
        if role == "student":
            adapters = adapter_hashes(run_dir)
            if adapters:
                entry["adapters"] = adapters
        out[role] = entry
    bert = {"requested": {"MODEL": params.get("BERTSCORE_MODEL"), "NUM_LAYERS": params.get("BERTSCORE_NUM_LAYERS")}}
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
    tables = {
        str(p.relative_to(root)): sha256_file(p)
        for p in sorted(root.rglob("*.parquet"))
        if "notebooks" not in p.relative_to(root).parts
    }
    raw = {str(p): sha256_file(p) for p in raw_input_files(run_dir, params)}
    return {"raw_inputs": raw, "tables": tables}


def refresh(manifest: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Recompute the parts of the manifest that steps produce (models, data)."""
    params = manifest.get("params", {})
    manifest["models"] = model_identities(run_dir, params)
    manifest["data"] = data_checksums(run_dir, params)
    manifest["parse_rates"] = run_parse_rates(run_dir)
    return manifest


__all__ = [
    "RESULT_KEYS",
    "STATUSES",
    "data_checksums",
    "model_identities",
    "new_manifest",
    "parse_rates_of",
    "run_parse_rates",
    "read_manifest",
    "refresh",
    "set_step",
    "step_summary",
    "tokens_of",
    "write_manifest",
]
