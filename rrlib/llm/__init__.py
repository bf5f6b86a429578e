"""The LLM layer: one chat interface (:mod:`.base`), a local transformers backend
(:mod:`.local`), an OpenAI-compatible server backend (:mod:`.server`), the embedded model
(:mod:`.embedded`) and the durable generation cache (:mod:`.cache`).

    backend = make_backend(PARAMS, "teacher", cache_dir)
    results = CachedGenerator(backend, cache_dir).generate(requests, desc="item descriptions")
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from ..params import SCHEMA, ParamError, validate
from .base import ChatBackend, GenerationRequest, GenerationResult, GenerationSettings, Message
from .cache import CachedGenerator, CacheWarning, GenerationCache, cache_summary
from .embedded import EmbeddedModelError, embedded_bertscore_model, embedded_checkpoint, embedded_gguf
from .local import LocalBackend, ModelLoadError, PromptTooLongError, load_model_and_tokenizer
from .engines import EngineBackend, EngineProcess
from .server import ServerBackend, ServerError

ROLES = ("teacher", "student")


def _get(params: Mapping[str, Any], name: str) -> Any:
    return params[name] if name in params else SCHEMA[name].default


def make_backend(params: Mapping[str, Any], role: str, cache_dir: str | Path) -> ChatBackend:
    """The backend the parameters ask for; every parameter problem is raised here, before
    any generation (and before any weights load: backends are lazy).

    teacher: TEACHER_BACKEND (local | server), TEACHER_ENGINE (transformers | llama_server | llama_cpp_python |
    vllm | auto, with TEACHER_ENGINE_WEIGHTS/PARALLEL/THREADS; see :mod:`.engines`), TEACHER_MODEL/REVISION/DTYPE/QUANTIZATION/BATCH_SIZE/
    BATCH_TOKENS, MAX_PROMPT_TOKENS, TRUST_REMOTE_CODE, SERVER_* for the server.
    student: STUDENT_MODEL/REVISION/QUANTIZATION, PREDICT_BATCH_SIZE, MAX_SEQ_LENGTH (always local)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {list(ROLES)}, got {role!r}.")
    params = validate(dict(params), where=f"make_backend({role!r}) parameters")
    get = lambda name: _get(params, name)  # noqa: E731
    if role == "student":
        _check_model_path(get("STUDENT_MODEL"), "STUDENT_MODEL")
        return LocalBackend(get("STUDENT_MODEL"), cache_dir=cache_dir, revision=get("STUDENT_REVISION"),
                            quantization=_checked_quantization(get("STUDENT_QUANTIZATION"), "STUDENT_QUANTIZATION"),
                            batch_size=get("PREDICT_BATCH_SIZE"), batch_tokens=get("TEACHER_BATCH_TOKENS"),
                            max_prompt_tokens=get("MAX_SEQ_LENGTH"), trust_remote_code=get("TRUST_REMOTE_CODE"),
                            role="student")
    engine = get("TEACHER_ENGINE")
    if get("TEACHER_BACKEND") == "server":
        if engine not in ("transformers", "auto"):
            raise ParamError(f"TEACHER_ENGINE={engine!r} starts a local engine, but TEACHER_BACKEND is 'server' "
                             f"(an engine someone else runs at SERVER_URL). Use TEACHER_BACKEND: local, or "
                             f"TEACHER_ENGINE: transformers.")
        if not get("SERVER_MODEL"):
            raise ParamError("TEACHER_BACKEND is 'server' but SERVER_MODEL is empty: set SERVER_MODEL to the "
                             "model name the server serves (its GET /v1/models lists them).")
        if get("TEACHER_QUANTIZATION") != "none":
            raise ParamError("TEACHER_QUANTIZATION applies to the local backend only; with TEACHER_BACKEND "
                             "'server' the server decides the quantization. Set TEACHER_QUANTIZATION: none.")
        try:
            return ServerBackend(get("SERVER_URL"), get("SERVER_MODEL"), api_key_env=get("SERVER_API_KEY_ENV"),
                                 concurrency=get("SERVER_CONCURRENCY"), timeout_s=get("SERVER_TIMEOUT_S"),
                                 retries=get("SERVER_RETRIES"), max_prompt_tokens=get("MAX_PROMPT_TOKENS"))
        except ServerError as e:
            raise ParamError(str(e)) from e
    model = get("TEACHER_MODEL")
    if not model:
        raise ParamError("TEACHER_MODEL is empty: use 'embedded', a local checkpoint folder or a hub model id.")
    _check_model_path(model, "TEACHER_MODEL")
    if engine != "transformers":
        backend = _engine_backend(get, model, engine, cache_dir)
        if backend is not None:
            return backend
    return LocalBackend(model, cache_dir=cache_dir, revision=get("TEACHER_REVISION"), dtype=get("TEACHER_DTYPE"),
                        quantization=_checked_quantization(get("TEACHER_QUANTIZATION"), "TEACHER_QUANTIZATION"),
                        batch_size=get("TEACHER_BATCH_SIZE"), batch_tokens=get("TEACHER_BATCH_TOKENS"),
                        max_prompt_tokens=get("MAX_PROMPT_TOKENS"), trust_remote_code=get("TRUST_REMOTE_CODE"))


def _engine_backend(get, model: str, engine: str, cache_dir: str | Path):
    """An :class:`EngineBackend` for TEACHER_ENGINE (None when ``auto`` settles on transformers)."""
    from .engines import EngineBackend, EngineConfig, choose_engine, engine_spec
    from .local import resolve_dtype

    if get("TEACHER_QUANTIZATION") != "none":
        raise ParamError(f"TEACHER_QUANTIZATION applies to TEACHER_ENGINE transformers only; the engine "
                         f"{engine!r} is set by TEACHER_ENGINE_WEIGHTS (llama.cpp) or TEACHER_DTYPE (vLLM).")
    try:
        dtype = str(resolve_dtype(get("TEACHER_DTYPE"))).replace("torch.", "")
    except ModelLoadError as e:
        raise ParamError(str(e)) from e
    config = EngineConfig(engine, model=model, weights=get("TEACHER_ENGINE_WEIGHTS"), dtype=dtype,
                          threads=get("TEACHER_ENGINE_THREADS"), parallel=get("TEACHER_ENGINE_PARALLEL"),
                          ctx_per_slot=get("MAX_PROMPT_TOKENS") + 512)
    try:
        chosen = choose_engine(config, cache_dir)
        if chosen == "transformers":
            return None
        spec = engine_spec(replace(config, engine=chosen), cache_dir)
    except ServerError as e:
        raise ParamError(f"TEACHER_ENGINE={engine!r}: {e}") from e
    return EngineBackend(spec, timeout_s=get("SERVER_TIMEOUT_S"), retries=get("SERVER_RETRIES"),
                         max_prompt_tokens=get("MAX_PROMPT_TOKENS"), log_dir=Path(cache_dir) / "engines" / "logs")


def _check_model_path(model: str, name: str) -> None:
    """A value written like a path must exist (otherwise it would be tried as a hub id)."""
    looks_like_path = model.startswith(("/", "./", "../", "~")) or model.endswith(".gguf")
    if model != "embedded" and looks_like_path and not Path(model).expanduser().exists():
        raise ParamError(f"{name}={model!r} looks like a local path but does not exist; fix the path, or use "
                         f"'embedded' or a hub model id.")


def _checked_quantization(value: str, name: str) -> str:
    from .local import check_quantization

    try:
        check_quantization(value, where=name)
    except ModelLoadError as e:
        raise ParamError(str(e)) from e
    return value


__all__ = ["ChatBackend", "GenerationRequest", "GenerationResult", "GenerationSettings", "Message",
           "CachedGenerator", "CacheWarning", "GenerationCache", "cache_summary", "EmbeddedModelError",
           "embedded_bertscore_model", "embedded_checkpoint", "embedded_gguf", "LocalBackend", "ModelLoadError",
           "PromptTooLongError", "load_model_and_tokenizer", "ServerBackend", "ServerError", "make_backend",
           "EngineBackend", "EngineProcess"]
