"""The one-command pipeline: notebooks 01..08 through papermill into ``outputs/<run-id>/``.

``python -m rrlib run -f params/default.yaml`` is a thin CLI over :func:`plan_run` (which
validates everything and writes nothing) and :func:`execute_plan` (which runs the notebooks).

Guarantees:

- Parameters are layered (schema defaults < each ``-f`` file in order < ``-p`` overrides) and
  validated by :mod:`rrlib.config.params` before any notebook starts; each notebook gets only the
  parameters its ``parameters`` cell declares, plus ``RUN_DIR = outputs/<run-id>``.
- A run never overwrites another: an existing run id is refused unless ``--resume`` is given.
- A failure names the notebook and the cell, keeps the partial executed notebook, and marks
  the notebook ``failed`` in ``manifest.json``; ``--resume`` runs the notebooks that are not
  ``completed`` (the failed one first), reusing every artifact and cached generation already
  on disk. The failed attempt's executed notebook is kept as ``<step>.failed-<n>.ipynb``.
- ``--resume`` refuses when the merged parameters differ from the recorded ones, except for
  the parameters in :data:`HARMLESS_ON_RESUME`, which change how work is done (batch sizes,
  server connection, cache location, inspection view) but not what a finished step computed.
  Those changes are applied to the remaining notebooks and recorded in the manifest's
  ``attempts``. ``--resume`` without ``-f``/``-p`` reuses the recorded parameters, and without
  ``--only`` the recorded selection.
- The API key (the value of the variable named by SERVER_API_KEY_ENV) and any ``Bearer``/``sk-``
  token are masked in every error text the runner writes to the manifest or the console, in the
  notebook output it streams (``--log-output``), and in the executed notebooks it keeps.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rrlib.config.params import (
    SCHEMA,
    defaults,
    load_params,
    notebook_parameters,
    parse_override,
    select_for_notebook,
    validate,
    yaml_keys,
)
from rrlib.config.paths import PROJECT_ROOT, STEPS, RunPaths
from rrlib.config.provenance import utc_now
from rrlib.errors import ParamError, RunError, mask_secrets
from rrlib.io import write_text_atomic
from rrlib.llm.shared import pid_alive
from rrlib.workbook import manifest as mf

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
OUTPUTS_DIR = PROJECT_ROOT / "outputs"
PREFERRED_KERNEL = "rrlib"
FALLBACK_KERNEL = "python3"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: names under outputs/ that are not runs (CACHE_DIR defaults to outputs/cache)
RESERVED_RUN_IDS = frozenset({"cache", "README.md", ".gitkeep"})
#: parameters that may differ on --resume: they change how the work is done, not its result
HARMLESS_ON_RESUME = frozenset(
    {
        "TEACHER_BATCH_SIZE",
        "PREDICT_BATCH_SIZE",  # batching only (lower them after an out-of-memory)
        "SERVER_URL",
        "SERVER_API_KEY_ENV",
        "SERVER_CONCURRENCY",
        "SERVER_TIMEOUT_S",
        "SERVER_RETRIES",
        "PLOT_RATE_LIMIT_S",
        "ALLOW_DOWNLOAD",
        "CACHE_DIR",  # where/how things are fetched or cached
        "TEACHER_ENGINE_IDLE_S",  # how long a shared engine outlives its last generation
        "N_SHOWCASE",
        "SHOWCASE_FILTER",
        "SHOWCASE_USER",
        "INSPECT_METHOD",  # notebook 08's view only
    }
)
_STEP_FILE = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")


class NotebookFailed(RunError):
    """A notebook raised; names the notebook and the cell and where the partial output is."""

    def __init__(
        self,
        step: str,
        executed: Path,
        *,
        cell_index: int | None,
        exec_count: int | None,
        first_line: str,
        error: str,
        run_id: str,
        resume: str = "",
    ):
        self.step, self.executed, self.cell_index, self.exec_count = step, executed, cell_index, exec_count
        self.first_line, self.error, self.run_id = first_line, error, run_id
        self.resume = resume or f"python -m rrlib run --run-id {run_id} --resume"
        where = (
            f"cell {cell_index} (In [{exec_count}]) `{first_line}`"
            if cell_index is not None
            else "a cell that could not be identified"
        )
        super().__init__(
            f"notebook {step} failed in {where}:\n  {error}\n"
            f"The partial executed notebook is {executed}.\n"
            f"Fix the cause, then continue with: {self.resume}"
        )


def resume_command(plan: "RunPlan", command: Sequence[str] | None = None) -> str:
    """The command that continues ``plan``'s run, repeating every option it was started with:
    ``command`` (the runner's own command line, ``python -m rrlib run ...``) with ``--resume`` and
    its ``--run-id``; without one (the Python API), the options rebuilt from the plan: ``--outputs``,
    ``--notebooks`` and ``--kernel`` where not the defaults, ``--only``, ``-f`` and ``-p``."""
    import shlex

    argv = [str(a) for a in (command or [])]
    head = ["python", "-m", "rrlib", "run", "--run-id", plan.run_id, "--resume"]
    if argv[:4] == ["python", "-m", "rrlib", "run"]:
        rest, i = [], 4
        while i < len(argv):
            a = argv[i]
            if a == "--run-id":
                i += 2
                continue
            if a != "--resume" and not a.startswith("--run-id="):
                rest.append(a)
            i += 1
        return shlex.join(head + rest)
    import yaml

    rest = []
    outputs = plan.run_dir.parent
    if outputs.resolve() != OUTPUTS_DIR.resolve():
        rest += ["--outputs", str(outputs)]
    folders = {p.parent.resolve() for p in plan.notebooks.values()}
    if folders and folders != {NOTEBOOK_DIR.resolve()}:
        rest += ["--notebooks", str(next(iter(plan.notebooks.values())).parent)]
    if plan.kernel != PREFERRED_KERNEL:
        rest += ["--kernel", plan.kernel]
    if plan.selected and list(plan.selected) != list(plan.notebooks):
        rest += ["--only", ",".join(s[:2] for s in plan.selected)]
    for f in plan.param_files:
        rest += ["-f", str(f)]
    for k, v in plan.overrides.items():
        value = v if isinstance(v, str) else yaml.safe_dump(v, default_flow_style=True, width=10**6)
        rest += ["-p", k, value.removesuffix("...\n").strip() if not isinstance(v, str) else value]
    return shlex.join(head + rest)


# ---------------------------------------------------------------------------------------
# Planning: everything is checked here, nothing is written
# ---------------------------------------------------------------------------------------
def discover_notebooks(notebook_dir: str | Path = NOTEBOOK_DIR) -> dict[str, Path]:
    """``{"01_data_prep": path, ...}`` for every ``NN_name.ipynb`` in the folder, in order."""
    folder = Path(notebook_dir)
    if not folder.is_dir():
        raise RunError(f"notebook folder {folder} does not exist.")
    found = {p.stem: p for p in sorted(folder.iterdir()) if _STEP_FILE.match(p.name)}
    if not found:
        raise RunError(f"no notebooks named NN_<name>.ipynb in {folder}.")
    numbers = [s[:2] for s in found]
    dupes = sorted({n for n in numbers if numbers.count(n) > 1})
    if dupes:
        raise RunError(f"{folder}: more than one notebook numbered {', '.join(dupes)}.")
    return found


def parse_only(text: str | None, steps: Sequence[str]) -> list[str]:
    """``--only 01,02`` / ``1-3`` / ``data_prep`` -> step names, in pipeline order."""
    if not text:
        return list(steps)
    by_number = {s[:2]: s for s in steps}
    chosen: set[str] = set()
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        if re.fullmatch(r"\d{1,2}-\d{1,2}", token):
            lo, hi = (int(x) for x in token.split("-"))
            numbers = [f"{n:02d}" for n in range(lo, hi + 1)]
        elif token.isdigit():
            numbers = [f"{int(token):02d}"]
        else:
            numbers = [s[:2] for s in steps if s == token or s[3:] == token]
            if not numbers:
                raise RunError(
                    f"--only: {token!r} names no notebook; use numbers such as 01,02 or names among {', '.join(steps)}."
                )
        for n in numbers:
            if n not in by_number:
                raise RunError(f"--only: there is no notebook {n}; available: {', '.join(by_number)}.")
            chosen.add(by_number[n])
    if not chosen:
        raise RunError(f"--only {text!r} selects no notebook.")
    return [s for s in steps if s in chosen]


def parse_overrides(pairs: Iterable[Sequence[str]] | None) -> dict[str, Any]:
    """``-p NAME VALUE`` pairs -> typed values (YAML syntax for numbers, booleans, lists)."""
    out: dict[str, Any] = {}
    for name, text in pairs or ():
        out[name] = parse_override(name, text)
    return validate(out, where="-p") if out else out


def default_run_id(param_files: Sequence[str | Path], now: _dt.datetime | None = None) -> str:
    """``<preset>-<UTC timestamp>``, e.g. ``default-20250101T120000Z``."""
    now = now or _dt.datetime.now(_dt.UTC)
    preset = "_".join(Path(f).stem for f in param_files) or "defaults"
    preset = re.sub(r"[^A-Za-z0-9._-]", "_", preset)[:80]
    return f"{preset}-{now.strftime('%Y%m%dT%H%M%SZ')}"


def check_run_id(run_id: str) -> str:
    if not RUN_ID_PATTERN.match(run_id) or run_id in RESERVED_RUN_IDS:
        raise RunError(
            f"--run-id {run_id!r} is not allowed: use letters, digits, '.', '_' and '-' "
            f"(no '/'), at most 128 characters, and not {sorted(RESERVED_RUN_IDS)}."
        )
    return run_id


def choose_kernel(preferred: str | None = None) -> str:
    """The Jupyter kernel to run notebooks with: ``preferred`` if given, else "rrlib" when it is
    registered (``make setup`` registers it for .venv), else "python3"."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if preferred:
        if preferred not in specs:
            raise RunError(
                f"Jupyter kernel {preferred!r} is not registered (have: {', '.join(sorted(specs))}). "
                f"Register it with `python -m ipykernel install --sys-prefix --name {preferred}`."
            )
        return preferred
    if PREFERRED_KERNEL in specs:
        return PREFERRED_KERNEL
    if FALLBACK_KERNEL in specs:
        return FALLBACK_KERNEL
    raise RunError("no Jupyter kernel is registered: run `make setup` (it registers the 'rrlib' kernel).")


def kernel_interpreter_mismatch(name: str) -> str:
    """'' when kernel ``name`` runs this interpreter (or names a bare ``python``), else a warning
    naming both: a kernel registered from another virtual environment (another checkout's
    ``make setup``) runs the notebooks with that environment's packages, not this one's."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        argv = KernelSpecManager().get_kernel_spec(name).argv
    except NoSuchKernel:
        return ""
    exe = argv[0] if argv else ""
    if not os.path.isabs(exe):
        return ""
    # compare the bin folders, not resolved paths: every venv's python links to the same base interpreter
    if Path(os.path.abspath(exe)).parent == Path(os.path.abspath(sys.executable)).parent:
        return ""
    return (
        f"Jupyter kernel {name!r} runs {exe}, not this interpreter ({sys.executable}): the notebooks "
        f"will use that environment's packages. Re-register it from here with "
        f"`{sys.executable} -m ipykernel install --sys-prefix --name {name}` (make setup does it for .venv)."
    )


def params_diff(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Parameters whose values differ; a name missing on one side counts as its schema default."""
    base = defaults()
    out = {}
    for name in sorted(set(recorded) | set(current)):
        if name == "RUN_DIR":
            continue
        old, new = recorded.get(name, base.get(name)), current.get(name, base.get(name))
        if old != new:
            out[name] = (old, new)
    return out


@dataclass
class RunPlan:
    run_id: str
    run_dir: Path
    run_dir_param: str  # RUN_DIR as injected (relative to the project root when under outputs/)
    params: dict[str, Any]
    notebooks: dict[str, Path]  # every notebook of the pipeline, in order
    selected: list[str]  # the steps this invocation asked for (--only)
    to_run: list[str]  # selected minus those already completed (resume)
    step_params: dict[str, dict[str, Any]]
    kernel: str
    param_files: list[str]
    overrides: dict[str, Any]
    resume: bool
    cwd: Path
    existing: dict[str, Any] | None = None  # the manifest being resumed
    changed_on_resume: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def plan_run(
    param_files: Sequence[str | Path] = (),
    overrides: Mapping[str, Any] | None = None,
    *,
    run_id: str | None = None,
    resume: bool = False,
    only: str | None = None,
    notebook_dir: str | Path | None = None,
    outputs_dir: str | Path | None = None,
    kernel: str | None = None,
    cwd: str | Path | None = None,
) -> RunPlan:
    """Validate the parameters, notebooks and run folder; raise ParamError/RunError on any
    problem. Writes nothing."""
    files = [str(f) for f in param_files]
    overrides = dict(overrides or {})
    notebooks = _pipeline_notebooks(notebook_dir)
    outputs = Path(outputs_dir) if outputs_dir else OUTPUTS_DIR

    if resume and not run_id:
        raise RunError(f"--resume needs --run-id: the run to continue (a folder under {outputs}).")
    params = load_params(files, overrides)  # raises ParamError naming the file / parameter
    if params["RUN_DIR"] != SCHEMA["RUN_DIR"].default:
        raise RunError(
            f"RUN_DIR={params['RUN_DIR']!r} was set, but the runner chooses the run folder "
            f"(outputs/<run-id>): use --run-id (and --outputs for another outputs folder)."
        )

    run_id = check_run_id(run_id) if run_id else _fresh_run_id(files, outputs)
    run_dir = outputs / run_id
    run_dir_param = _run_dir_param(run_dir)
    existing = None
    changed: dict[str, tuple[Any, Any]] = {}
    if resume:
        existing, recorded = _recorded_run(run_id, run_dir, outputs)
        if not files and not overrides:  # nothing given: continue with what the run recorded
            params = {**defaults(), **recorded}
            files = list(existing.get("param_files", []))
            overrides = dict(existing.get("overrides", {}))
        else:
            changed = params_diff(recorded, params)
            _refuse_changed_params(run_id, changed)
    elif run_dir.exists():
        raise RunError(
            f"run {run_id!r} already exists in {outputs}: runs are never overwritten. Choose "
            f"another --run-id, or add --resume to continue it."
        )
    params["RUN_DIR"] = run_dir_param

    if resume and not only and existing is not None and existing.get("selected"):
        # keep the original --only selection unless a new one is given
        only = ",".join(s for s in existing["selected"] if s in notebooks) or None
    selected = parse_only(only, list(notebooks))
    step_params, declared_anywhere = _step_parameters(notebooks, params)
    warnings = _ineffective_parameters(files, overrides, declared_anywhere, notebook_dir)

    done = {s for s, rec in (existing or {}).get("notebooks", {}).items() if rec.get("status") == "completed"}
    to_run = [s for s in selected if s not in done]
    warnings += preflight(params, {s: step_params[s] for s in to_run})
    chosen_kernel = choose_kernel(kernel)
    foreign = kernel_interpreter_mismatch(chosen_kernel)
    if foreign:
        warnings.append(foreign)
    return RunPlan(
        run_id=run_id,
        run_dir=run_dir,
        run_dir_param=run_dir_param,
        params=params,
        notebooks=notebooks,
        selected=selected,
        to_run=to_run,
        step_params=step_params,
        kernel=chosen_kernel,
        param_files=files,
        overrides=overrides,
        resume=resume,
        cwd=Path(cwd) if cwd else PROJECT_ROOT,
        existing=existing,
        changed_on_resume=changed,
        warnings=warnings,
    )


def _pipeline_notebooks(notebook_dir: str | Path | None) -> dict[str, Path]:
    """The notebooks to run; the project's own folder must hold every step (a test may point
    the runner at a folder of its own with fewer)."""
    notebooks = discover_notebooks(notebook_dir or NOTEBOOK_DIR)
    if notebook_dir is None or Path(notebook_dir).resolve() == NOTEBOOK_DIR.resolve():
        missing = [s for s in STEPS if s not in notebooks]
        if missing:
            raise RunError(
                f"the pipeline notebooks {', '.join(missing)} are missing from {NOTEBOOK_DIR}; "
                f"restore them (git checkout notebooks/) before running."
            )
    return notebooks


def _fresh_run_id(files: Sequence[str], outputs: Path) -> str:
    """A run id of its own for a run started without --run-id (never an existing folder)."""
    run_id = default_run_id(files)
    n = 1
    while (outputs / run_id).exists():  # two runs in the same second
        n += 1
        run_id = f"{default_run_id(files)}-{n}"
    return run_id


def _run_dir_param(run_dir: Path) -> str:
    """RUN_DIR as the notebooks get it: relative to the project root when under it, so the
    recorded parameters do not depend on where the checkout lies."""
    try:
        return str(run_dir.resolve().relative_to(PROJECT_ROOT.resolve()))
    except ValueError:
        return str(run_dir.resolve())


def _recorded_run(run_id: str, run_dir: Path, outputs: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest of the run to resume and its recorded parameters, validated again; refuses a
    missing run and one a live process is still executing."""
    if not run_dir.exists():
        raise RunError(f"--resume: there is no run {run_id!r} in {outputs}.")
    existing = mf.read_manifest(run_dir)
    _refuse_if_running(existing, run_dir)
    recorded = validate(
        {k: v for k, v in existing.get("params", {}).items() if k in SCHEMA}, where=f"{run_dir}/manifest.json"
    )
    return existing, recorded


def _refuse_changed_params(run_id: str, changed: Mapping[str, tuple[Any, Any]]) -> None:
    """A resumed run keeps what its finished steps computed: only HARMLESS_ON_RESUME may differ."""
    blocking = {k: v for k, v in changed.items() if k not in HARMLESS_ON_RESUME}
    if blocking:
        lines = "\n".join(f"  {k}: recorded {old!r}, now {new!r}" for k, (old, new) in blocking.items())
        raise RunError(
            f"--resume {run_id}: the parameters differ from the ones this run was "
            f"started with:\n{lines}\nResume with the same -f/-p (or none, to reuse the "
            f"recorded ones), or start a new run with another --run-id."
        )


def _step_parameters(
    notebooks: Mapping[str, Path], params: Mapping[str, Any]
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """``{step: the parameters its parameters cell declares}`` and every name declared anywhere;
    a notebook must declare only schema parameters, RUN_DIR among them (the runner points each
    one at the run folder)."""
    step_params = {}
    declared_anywhere: set[str] = set()
    for step, nb in notebooks.items():
        declared = notebook_parameters(nb)  # ParamError when the tagged cell is missing or doubled
        unknown = sorted(set(declared) - set(SCHEMA))
        if unknown:
            raise RunError(
                f"{nb}: its parameters cell declares {unknown}, which rrlib/config/params.py does not define."
            )
        if "RUN_DIR" not in declared:
            raise RunError(
                f"{nb}: its parameters cell does not declare RUN_DIR, so it cannot be pointed at the run folder."
            )
        declared_anywhere |= set(declared)
        step_params[step] = select_for_notebook(params, nb)
    return step_params, declared_anywhere


def _ineffective_parameters(
    files: Sequence[str],
    overrides: Mapping[str, Any],
    declared_anywhere: set[str],
    notebook_dir: str | Path | None,
) -> list[str]:
    """Warnings for parameters set in a -f file or by -p that no notebook declares: a typo or a
    parameter of another version would otherwise pass silently."""
    explicit = set(overrides)
    for f in files:
        explicit |= set(yaml_keys(f))
    return [
        f"parameter {name} is set but no notebook in {Path(notebook_dir or NOTEBOOK_DIR)} "
        f"declares it, so it has no effect."
        for name in sorted(explicit - declared_anywhere)
    ]


def preflight(params: Mapping[str, Any], to_run: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What the notebooks about to run (``{step: its parameters}``) require beyond each
    parameter's type and range, checked before anything runs: notebook 01's dataset, files and
    prompt domain (:func:`rrlib.data.preflight.check_data_params`), the prompt domain of 02-06,
    METHODS / EVAL_METHODS against the method registry (names and kinds), INSPECT_METHOD
    among the methods the run evaluates, and the flags this machine cannot run (4/8-bit weights
    without a CUDA GPU or a bitsandbytes CPU backend: :func:`rrlib.llm.check_device_params`).
    Raises DataError / MethodError / DeviceError; returns notes."""
    from rrlib.config.params import Config
    from rrlib.data.pipeline import domain_of
    from rrlib.data.preflight import check_data_params
    from rrlib.errors import DataError, MethodError
    from rrlib.evaluate.plan import evaluation_plan
    from rrlib.methods import registry
    from rrlib.prompts import DOMAINS

    declared = {name for step_params in to_run.values() for name in step_params}
    notes: list[str] = []
    if declared & {"TEACHER_QUANTIZATION", "STUDENT_QUANTIZATION"}:  # GPU-only flags on this machine (issue 22)
        from rrlib.llm import check_device_params

        check_device_params(params, declared)  # DeviceError naming the flag and the fix
    if any(step[:2] == "01" for step in to_run):
        notes += check_data_params(params)
    if declared & {"KSHOT_SIZES", "TRAIN_KSHOTS"}:  # K-shot sets the data cannot hold (issue 24)
        from rrlib.data.preflight import check_kshot_sizes

        card = RunPaths.of(params.get("RUN_DIR", ""), create=False).data_card_json
        runs_01 = any(step[:2] == "01" for step in to_run)
        notes += check_kshot_sizes(params, card_path=None if runs_01 or not card.is_file() else card)
    if "DOMAIN" in declared:
        domain = domain_of(dict(params))
        if domain not in DOMAINS:
            raise DataError(
                f"parameter DOMAIN={domain!r} has no prompt wording; the prompts know "
                f"{', '.join(DOMAINS)} (rrlib/prompts/teacher.py)."
            )
    if declared & {"METHODS", "EVAL_METHODS"}:
        for name in ("METHODS", "EVAL_METHODS"):
            unknown = [m for m in params.get(name, []) if m not in registry.REGISTRY]
            if unknown:
                close = {
                    m: ", ".join(difflib.get_close_matches(m, registry.REGISTRY)) or "no close match" for m in unknown
                }
                hints = "; ".join(f"{m} (did you mean: {c})" for m, c in close.items())
                raise MethodError(
                    f"parameter {name} names unknown method(s): {hints}. Registered methods: "
                    f"{', '.join(registry.REGISTRY)}."
                )
        evaluation_plan(Config.full(dict(params)))  # MethodError naming METHODS / EVAL_METHODS
    if "INSPECT_METHOD" in declared:
        lead = params.get("INSPECT_METHOD", "")
        registry.get(lead)  # MethodError for an unknown name
        evaluated = list(params.get("METHODS", [])) + list(params.get("EVAL_METHODS", []))
        if lead not in evaluated:
            raise MethodError(
                f"parameter INSPECT_METHOD={lead!r} is not evaluated by this run (METHODS + "
                f"EVAL_METHODS: {', '.join(evaluated)}); notebook 07 would find no predictions."
            )
    return notes


def live_status(manifest: Mapping[str, Any]) -> str:
    """The run's status as it really is: a manifest that says ``running`` while the runner
    process it records (PID on this host) is gone was killed, and reads ``interrupted``. A run
    started on another host cannot be checked and keeps its recorded status."""
    status = str(manifest.get("status", ""))
    if status != "running":
        return status
    attempts = manifest.get("attempts") or [{}]
    pid, host = attempts[-1].get("pid"), attempts[-1].get("host")
    if pid and host == os.uname().nodename and not pid_alive(int(pid)):
        return "interrupted"
    return status


def _refuse_if_running(manifest: Mapping[str, Any], run_dir: Path) -> None:
    if live_status(manifest) != "running":
        return
    attempts = manifest.get("attempts") or [{}]
    pid, host = attempts[-1].get("pid"), attempts[-1].get("host")
    raise RunError(
        f"run {run_dir.name} is being executed right now by process {pid} on {host}; wait for it or "
        f"stop it before resuming."
    )


# ---------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------
class PeakMemory:
    """Peak resident memory of this process's children (the Jupyter kernel and whatever it
    starts), sampled every ``interval`` seconds in a background thread."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.peak_bytes = interval, 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while True:
            total = 0
            try:
                for child in me.children(recursive=True):
                    try:
                        total += child.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            self.peak_bytes = max(self.peak_bytes, total)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "PeakMemory":
        try:
            import psutil  # noqa: F401  (shipped with ipykernel)
        except ImportError:
            return self
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    @property
    def peak_mb(self) -> float | None:
        return round(self.peak_bytes / 2**20, 1) if self._thread else None


class ProgressWatch:
    """Prints a notebook's live generation progress on the runner's console: the notebook's
    :class:`~rrlib.llm.progress.Progress` bars write their state to the file RRLIB_PROGRESS_FILE
    names (set here for the kernel), and this thread prints a line when it advances (at most every
    ``every`` seconds) or, while nothing completes, every ``quiet`` seconds with the elapsed time."""

    def __init__(self, path: Path, log: Callable[[str], None], every: float = 5.0, quiet: float = 30.0):
        self.path, self.log, self.every, self.quiet = path, log, every, quiet
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved: str | None = None

    def _watch(self) -> None:
        from rrlib.llm.progress import progress_line, read_progress

        last_key: tuple | None = None
        last_print = 0.0
        while not self._stop.wait(1.0):
            state = read_progress(self.path)
            if not state:
                continue
            key = (state.get("desc"), state.get("n"), state.get("total"), state.get("done"))
            now = time.monotonic()
            changed = key != last_key
            if (changed and now - last_print >= self.every) or (not changed and now - last_print >= self.quiet):
                if not (state.get("done") and not changed):
                    self.log(f"    {progress_line(state)}")
                last_key, last_print = key, now

    def __enter__(self) -> "ProgressWatch":
        from rrlib.llm.progress import PROGRESS_FILE_ENV

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self._saved = os.environ.get(PROGRESS_FILE_ENV)
        os.environ[PROGRESS_FILE_ENV] = str(self.path)  # the kernel papermill starts inherits it
        self._thread = threading.Thread(target=self._watch, name="rrlib-progress-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        from rrlib.llm.progress import PROGRESS_FILE_ENV

        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self._saved is None:
            os.environ.pop(PROGRESS_FILE_ENV, None)
        else:
            os.environ[PROGRESS_FILE_ENV] = self._saved
        self.path.unlink(missing_ok=True)


def _first_code_line(source: str) -> str:
    for line in (source or "").splitlines():
        if line.strip() and not line.strip().startswith("#"):
            return line.strip()[:160]
    return (source or "").strip().splitlines()[0][:160] if (source or "").strip() else ""


def _failed_cell_from_output(executed: Path) -> tuple[int | None, int | None, str]:
    """For errors papermill does not attribute (a dead kernel): the cell papermill marked
    running or failed in the partial output notebook."""
    try:
        import nbformat

        nb = nbformat.read(str(executed), as_version=4)
    except Exception:
        return None, None, ""
    for i, cell in enumerate(nb.cells):
        status = cell.get("metadata", {}).get("papermill", {}).get("status")
        if cell.cell_type == "code" and status in ("running", "failed"):
            return i, cell.get("execution_count"), _first_code_line(cell.source)
    return None, None, ""


def _next_failed_name(executed: Path) -> Path:
    n = 1
    while (candidate := executed.with_name(f"{executed.stem}.failed-{n}.ipynb")).exists():
        n += 1
    return candidate


def _key_envs(params: Mapping[str, Any]) -> list[str]:
    return [str(params.get("SERVER_API_KEY_ENV") or "")]


def mask(text: object, params: Mapping[str, Any]) -> str:
    """An error text with the run's API key and any token-looking text masked."""
    return mask_secrets(text, env_names=_key_envs(params))


def scrub_notebook(path: Path, params: Mapping[str, Any]) -> bool:
    """Mask the API key wherever an executed notebook holds it (a printed variable, a traceback);
    True when something was masked. Known values only: outputs are content, not error texts."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return False
    clean = mask_secrets(text, env_names=_key_envs(params), patterns=False)
    if clean == text:
        return False
    write_text_atomic(path, clean)
    return True


class _MaskFilter(logging.Filter):
    """Masks secrets in the notebook output papermill streams to the console (--log-output)."""

    def __init__(self, params: Mapping[str, Any]):
        super().__init__()
        self.params = params

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask(record.getMessage(), self.params), ()
        return True


def execute_plan(
    plan: RunPlan,
    *,
    log: Callable[[str], None] = print,
    progress_bar: bool = True,
    log_output: bool = False,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``plan.to_run`` in order; returns the final manifest. Raises :class:`NotebookFailed`
    (after recording it) when a notebook fails."""
    masking = _MaskFilter(plan.params)
    papermill_log = logging.getLogger("papermill")
    papermill_log.addFilter(masking)
    try:
        return _execute(plan, log=log, progress_bar=progress_bar, log_output=log_output, command=command)
    finally:
        papermill_log.removeFilter(masking)


def _execute(
    plan: RunPlan, *, log: Callable[[str], None], progress_bar: bool, log_output: bool, command: list[str] | None
) -> dict[str, Any]:
    """One attempt: the manifest says running before any notebook starts, each notebook's outcome
    is written as soon as it is known (a kill loses nothing recorded), then the run's totals."""
    for w in plan.warnings:
        log(f"warning: {w}")
    paths = RunPaths.of(plan.run_dir)
    manifest = _start_attempt(plan, command)
    skipped = [s for s in plan.selected if s not in plan.to_run]
    if skipped:
        log(f"already completed, reused: {', '.join(skipped)}")
    if not plan.to_run:
        log(f"nothing to run: every selected notebook of {plan.run_id} is completed.")
    total = len(plan.to_run)
    for i, step in enumerate(plan.to_run, 1):
        _run_step(
            plan,
            manifest,
            paths,
            step,
            f"[{i}/{total}]",
            log=log,
            progress_bar=progress_bar,
            log_output=log_output,
            command=command,
        )
    return _finish_attempt(plan, manifest, log)


def _start_attempt(plan: RunPlan, command: list[str] | None) -> dict[str, Any]:
    """The manifest this attempt writes, on disk before any notebook runs: the resumed one (its
    parameters updated with the harmless changes) or a new one, with this attempt appended so
    ``live_status`` can tell a killed runner from a running one."""
    if plan.existing is not None:
        manifest = plan.existing
        manifest["params"] = {**manifest.get("params", {}), **plan.params}
        for step in plan.notebooks:
            manifest.setdefault("notebooks", {}).setdefault(step, {"status": "pending"})
    else:
        manifest = mf.new_manifest(
            plan.run_id,
            plan.params,
            plan.notebooks,
            param_files=plan.param_files,
            overrides=plan.overrides,
            command=command,
            kernel=plan.kernel,
        )
    manifest.setdefault("attempts", []).append(
        {
            "started_at": utc_now(),
            "pid": os.getpid(),
            "host": os.uname().nodename,
            "resume": plan.resume,
            "only": plan.selected,
            "ran": list(plan.to_run),
            "command": command or [],
            "changed_params": {k: {"recorded": o, "now": n} for k, (o, n) in plan.changed_on_resume.items()},
        }
    )
    manifest["status"] = "running"
    manifest["selected"] = list(plan.selected)
    mf.write_manifest(plan.run_dir, manifest)
    return manifest


def _run_step(
    plan: RunPlan,
    manifest: dict[str, Any],
    paths: RunPaths,
    step: str,
    counter: str,
    *,
    log: Callable[[str], None],
    progress_bar: bool,
    log_output: bool,
    command: list[str] | None,
) -> None:
    """Execute one notebook through papermill into the run folder and record the outcome; a
    failure is recorded, then raised as :class:`NotebookFailed` (an interruption as itself)."""
    import papermill as pm  # imported here: the planning and the CLI's start-up do without it
    from papermill.exceptions import PapermillExecutionError

    executed = _begin_step(plan, manifest, paths, step)
    log(f"{counter} {step} ...")
    run = _StepRun(plan, manifest, step, executed, command)
    watch = ProgressWatch(paths.root / "notebooks" / f".{step}.progress.json", log)
    try:
        with run.memory, watch:
            pm.execute_notebook(
                str(plan.notebooks[step]),
                str(executed),
                parameters=plan.step_params[step],
                kernel_name=plan.kernel,
                cwd=str(plan.cwd),
                progress_bar=progress_bar,
                log_output=log_output,
            )
    except PapermillExecutionError as e:  # the notebook raised: papermill names the cell
        where = (e.cell_index, e.exec_count, _first_code_line(e.source))
        raise run.stopped("failed", mask(f"{e.ename}: {e.evalue}", plan.params), where) from None
    except Exception as e:  # dead kernel, timeout, unreadable notebook ...
        raise run.stopped("failed", mask(f"{type(e).__name__}: {e}", plan.params)) from None
    except BaseException as e:  # Ctrl-C, a test timeout, SystemExit: record, then let it through
        run.stopped("interrupted", f"interrupted ({type(e).__name__})")
        raise
    run.completed(counter, log)


def _begin_step(plan: RunPlan, manifest: dict[str, Any], paths: RunPaths, step: str) -> Path:
    """Mark ``step`` running in the manifest; returns where its executed notebook goes. A
    notebook left there by a failed or interrupted attempt is kept under a new name, never
    overwritten."""
    executed = paths.root / "notebooks" / f"{step}.ipynb"
    if executed.exists():
        kept = _next_failed_name(executed)
        executed.rename(kept)
        scrub_notebook(kept, plan.params)  # a killed runner never scrubbed it
    record = mf.set_step(
        manifest,
        step,
        status="running",
        started_at=utc_now(),
        executed_notebook=str(executed.relative_to(paths.root)),
    )
    record.pop("error", None)
    record["attempt"] = record.get("attempt", 0) + 1
    mf.write_manifest(plan.run_dir, manifest)
    return executed


@dataclass
class _StepRun:
    """One notebook while it runs: what recording its outcome needs (its clock starts here)."""

    plan: RunPlan
    manifest: dict[str, Any]
    step: str
    executed: Path
    command: list[str] | None
    start: float = field(default_factory=time.monotonic)
    memory: PeakMemory = field(default_factory=PeakMemory)

    def stopped(
        self, status: str, error: str, where: tuple[int | None, int | None, str] | None = None
    ) -> NotebookFailed:
        """Record a notebook that did not finish (``status`` failed or interrupted) and return the
        error naming it. ``where`` is the cell papermill named; without it, the cell the partial
        output marks running (read after scrubbing, as the kept notebook will be)."""
        plan = self.plan
        scrub_notebook(self.executed, plan.params)
        cell, count, line = where if where is not None else _failed_cell_from_output(self.executed)
        failure = NotebookFailed(
            self.step,
            self.executed,
            cell_index=cell,
            exec_count=count,
            first_line=mask(line, plan.params),
            error=error,
            run_id=plan.run_id,
            resume=resume_command(plan, self.command),
        )
        _record_failure(plan, self.manifest, self.step, failure, self.start, self.memory, status)
        return failure

    def completed(self, counter: str, log: Callable[[str], None]) -> None:
        """Record a finished notebook: its time, memory, parameters and summary figures."""
        plan, step = self.plan, self.step
        seconds = round(time.monotonic() - self.start, 2)
        scrub_notebook(self.executed, plan.params)
        record = mf.set_step(
            self.manifest,
            step,
            status="completed",
            finished_at=utc_now(),
            seconds=seconds,
            peak_rss_mb=self.memory.peak_mb,
            params=plan.step_params[step],
        )
        record.update(mf.step_summary(plan.run_dir, step))
        mf.refresh(self.manifest, plan.run_dir)
        mf.write_manifest(plan.run_dir, self.manifest)
        log(f"{counter} {step} done: {_step_figures(record)}")
        for name, n in (record.get("cache_damaged_lines") or {}).items():
            log(
                f"warning: {step}: the generation cache {name} had {n} damaged line(s), skipped (a crash "
                f"mid-write or a damaged disk); their generations were made again. The notebook's "
                f"output names the lines; counts in {record.get('results_file', 'its results file')}."
            )


def _finish_attempt(plan: RunPlan, manifest: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Close the attempt: the run is completed once every notebook is, else incomplete (an
    --only selection); totals of time and peak memory over all notebooks."""
    statuses = [manifest["notebooks"].get(s, {}).get("status") for s in plan.notebooks]
    manifest["status"] = "completed" if all(s == "completed" for s in statuses) else "incomplete"
    manifest["attempts"][-1]["finished_at"] = utc_now()
    peaks = [r.get("peak_rss_mb") for r in manifest["notebooks"].values() if r.get("peak_rss_mb")]
    manifest["peak_rss_mb"] = max(peaks) if peaks else None
    manifest["seconds_total"] = round(sum(r.get("seconds", 0) or 0 for r in manifest["notebooks"].values()), 2)
    mf.refresh(manifest, plan.run_dir)
    mf.write_manifest(plan.run_dir, manifest)
    log(f"run {plan.run_id}: {manifest['status']} -> {plan.run_dir}")
    return manifest


def _step_figures(record: Mapping[str, Any]) -> str:
    """``312.4 s, peak 1830 MiB, 5,120 tokens generated (40 cached)`` for the runner's log."""
    parts = [f"{record.get('seconds', 0):.1f} s"]
    if record.get("peak_rss_mb") is not None:
        parts.append(f"peak {record['peak_rss_mb']:.0f} MiB")
    tokens = record.get("tokens") or {}
    if tokens:
        parts.append(
            f"{tokens.get('completion_tokens', 0):,} tokens generated "
            f"({tokens.get('generated', 0):,} new, {tokens.get('cached', 0):,} cached)"
        )
    return ", ".join(parts)


def _record_failure(
    plan: RunPlan, manifest: dict, step: str, failure: NotebookFailed, start: float, memory: PeakMemory, status: str
) -> None:
    memory.__exit__(None, None, None)
    mf.set_step(
        manifest,
        step,
        status=status,
        finished_at=utc_now(),
        seconds=round(time.monotonic() - start, 2),
        peak_rss_mb=memory.peak_mb,
        error={
            "cell_index": failure.cell_index,
            "execution_count": failure.exec_count,
            "first_line": failure.first_line,
            "message": failure.error,
        },
    )
    manifest["status"] = status
    manifest["attempts"][-1]["finished_at"] = utc_now()
    try:
        mf.refresh(manifest, plan.run_dir)
    except Exception as e:  # the record of the failure matters more than checksums
        manifest["refresh_error"] = mask(e, plan.params)
    mf.write_manifest(plan.run_dir, manifest)


def run_pipeline(
    param_files: Sequence[str | Path] = (),
    overrides: Mapping[str, Any] | None = None,
    *,
    log: Callable[[str], None] = print,
    progress_bar: bool = True,
    command: list[str] | None = None,
    **plan_kwargs: Any,
) -> dict[str, Any]:
    """Plan (validate) then execute; see :func:`plan_run` for the keyword arguments."""
    plan = plan_run(param_files, overrides, **plan_kwargs)
    return execute_plan(plan, log=log, progress_bar=progress_bar, command=command or sys.argv)


__all__ = [
    "HARMLESS_ON_RESUME",
    "NotebookFailed",
    "ParamError",
    "RunError",
    "RunPlan",
    "choose_kernel",
    "kernel_interpreter_mismatch",
    "default_run_id",
    "discover_notebooks",
    "execute_plan",
    "live_status",
    "mask",
    "params_diff",
    "parse_only",
    "parse_overrides",
    "plan_run",
    "preflight",
    "run_pipeline",
    "scrub_notebook",
]
