"""Builds the teacher backend the parameters ask for (:func:`teacher_backend`): a server client,
an engine the workbook starts, or transformers in this process; and checks the model and device
flags before any work starts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from rrlib.config.params import SCHEMA, Config
from rrlib.config.paths import resolve_path
from rrlib.errors import DeviceError, ParamError

from .base import ChatBackend, ModelLoadError, ServerError
from .engine_backend import EngineBackend, choose_engine
from .engines import EngineConfig, engine_spec, resolve_engine_weights
from .local import LocalBackend, check_quantization, resolve_dtype
from .server import ServerBackend


def teacher_backend(cfg: Config) -> ChatBackend:
    """The teacher backend the configuration asks for; every parameter problem is raised here,
    before any generation (and before any weights load: backends are lazy).

    Reads TEACHER_BACKEND (local | server), TEACHER_MODEL/REVISION/DTYPE/QUANTIZATION/BATCH_SIZE/
    BATCH_TOKENS, MAX_PROMPT_TOKENS, TRUST_REMOTE_CODE, SERVER_* for the server, CACHE_DIR, and
    TEACHER_ENGINE (transformers | llama_server | llama_cpp_python | vllm | auto) with
    TEACHER_ENGINE_WEIGHTS/PARALLEL/THREADS for a loopback engine (:mod:`.engines`)."""
    t = cfg.teacher
    cache_dir = resolve_path(cfg.common.cache_dir)
    if t.teacher_backend == "server":
        return _server_backend(t)
    model = t.teacher_model
    if not model:
        raise ParamError("TEACHER_MODEL is empty: use 'embedded', a local checkpoint folder or a hub model id.")
    check_model_path(model, "TEACHER_MODEL")
    # 4/8-bit loading is a transformers feature: auto settles on transformers when it is asked for
    wants_engine = t.teacher_engine != "transformers" and not (
        t.teacher_engine == "auto" and t.teacher_quantization != "none"
    )
    if wants_engine:
        backend = _engine_backend(cfg, model, cache_dir)
        if backend is not None:
            return backend
    return LocalBackend(
        model,
        cache_dir=cache_dir,
        revision=t.teacher_revision,
        dtype=t.teacher_dtype,
        quantization=checked_quantization(t.teacher_quantization, "TEACHER_QUANTIZATION"),
        batch_size=t.teacher_batch_size,
        batch_tokens=t.teacher_batch_tokens,
        max_prompt_tokens=t.max_prompt_tokens,
        trust_remote_code=t.trust_remote_code,
    )


def _server_backend(t) -> ServerBackend:
    """The client of an OpenAI-compatible server someone else runs (TEACHER_BACKEND: server)."""
    if t.teacher_engine not in ("transformers", "auto"):
        raise ParamError(
            f"TEACHER_ENGINE={t.teacher_engine!r} starts a local engine, but TEACHER_BACKEND is "
            f"'server' (an engine someone else runs at SERVER_URL). Use TEACHER_BACKEND: local, or "
            f"TEACHER_ENGINE: transformers."
        )
    if not t.server_model:
        raise ParamError(
            "TEACHER_BACKEND is 'server' but SERVER_MODEL is empty: set SERVER_MODEL to the "
            "model name the server serves (its GET /v1/models lists them)."
        )
    if t.server_grammar == "none" and t.teacher_constrained:
        raise ParamError(
            "SERVER_GRAMMAR is 'none' (the server cannot constrain its answers) but TEACHER_CONSTRAINED "
            "is true: set SERVER_GRAMMAR to the field the server reads a grammar from (grammar for "
            "llama.cpp, structured_outputs for vLLM), or TEACHER_CONSTRAINED: false."
        )
    if t.teacher_quantization != "none":
        raise ParamError(
            "TEACHER_QUANTIZATION applies to the local backend only; with TEACHER_BACKEND "
            "'server' the server decides the quantization. Set TEACHER_QUANTIZATION: none."
        )
    try:
        return ServerBackend(
            t.server_url,
            t.server_model,
            api_key_env=t.server_api_key_env,
            concurrency=t.server_concurrency,
            timeout_s=t.server_timeout_s,
            retries=t.server_retries,
            max_prompt_tokens=t.max_prompt_tokens,
            grammar_field=t.server_grammar,
        )
    except ServerError as e:
        raise ParamError(str(e)) from e


def _engine_backend(cfg: Config, model: str, cache_dir: Path):
    """An :class:`EngineBackend` for TEACHER_ENGINE (None when ``auto`` settles on transformers)."""

    t = cfg.teacher
    if t.teacher_quantization != "none":
        raise ParamError(
            f"TEACHER_QUANTIZATION applies to TEACHER_ENGINE transformers only; the engine "
            f"{t.teacher_engine!r} is set by TEACHER_ENGINE_WEIGHTS (llama.cpp) or TEACHER_DTYPE (vLLM)."
        )
    try:
        dtype = str(resolve_dtype(t.teacher_dtype)).replace("torch.", "")
    except ModelLoadError as e:
        raise ParamError(str(e)) from e
    config = EngineConfig(
        t.teacher_engine,
        model=model,
        weights=resolve_engine_weights(t.teacher_engine_weights),
        dtype=dtype,
        threads=t.teacher_engine_threads,
        parallel=t.teacher_engine_parallel,
        ctx_per_slot=t.max_prompt_tokens + 512,
    )
    try:
        chosen = choose_engine(config, cache_dir)
        if chosen == "transformers":
            return None
        spec = engine_spec(replace(config, engine=chosen), cache_dir)
    except ServerError as e:
        raise ParamError(f"TEACHER_ENGINE={t.teacher_engine!r}: {e}") from e
    return EngineBackend(
        spec,
        timeout_s=t.teacher_engine_timeout_s,
        retries=t.server_retries,
        max_prompt_tokens=t.max_prompt_tokens,
        log_dir=cache_dir / "engines" / "logs",
        shared_idle_s=t.teacher_engine_idle_s,
    )


def check_model_path(model: str, name: str) -> None:
    """A value written like a path must exist (otherwise it would be tried as a hub id)."""
    looks_like_path = model.startswith(("/", "./", "../", "~")) or model.endswith(".gguf")
    if model != "embedded" and looks_like_path and not Path(model).expanduser().exists():
        raise ParamError(
            f"{name}={model!r} looks like a local path but does not exist; fix the path, or use "
            f"'embedded' or a hub model id."
        )


def check_device_params(params: Mapping[str, Any], declared: Iterable[str] | None = None) -> None:
    """Raise :class:`~rrlib.errors.DeviceError` naming the parameter and the fix when a flag the
    notebooks about to run read (``declared``: their parameter names; None: all) asks for what this
    machine cannot run: TEACHER_QUANTIZATION (local backend) or STUDENT_QUANTIZATION 4bit/8bit
    without a CUDA GPU or a bitsandbytes CPU backend. Called by ``validate`` and the runner before
    any notebook starts, and by ``scripts/train.py``; the model loaders check again."""

    names = set(SCHEMA) if declared is None else set(declared)
    if "TEACHER_QUANTIZATION" in names and params.get("TEACHER_BACKEND", "local") == "local":
        check_quantization(str(params.get("TEACHER_QUANTIZATION", "none")), "TEACHER_QUANTIZATION")
    if "STUDENT_QUANTIZATION" in names:
        check_quantization(str(params.get("STUDENT_QUANTIZATION", "none")), "STUDENT_QUANTIZATION")


def checked_quantization(value: str, name: str) -> str:

    try:
        check_quantization(value, where=name)
    except DeviceError:
        raise  # already a ParamError naming the flag and the fix
    except ModelLoadError as e:
        raise ParamError(str(e)) from e
    return value
