"""The LLM layer: one chat interface (:mod:`.base`), a local transformers backend
(:mod:`.local`), an OpenAI-compatible server backend (:mod:`.server`), the embedded model
(:mod:`.embedded`) and the durable generation cache (:mod:`.cache`).

    backend = teacher_backend(cfg)
    results = CachedGenerator(backend, cache_dir).generate(requests, desc="item descriptions")

:mod:`.factory` builds the teacher backend the parameters ask for; the student's backend (a
LocalBackend with a LoRA adapter) is built by :mod:`rrlib.student`.
"""

from __future__ import annotations

from .base import (
    TRUNCATION_MARKER,
    ChatBackend,
    GenerationRequest,
    GenerationResult,
    GenerationSettings,
    Message,
    ModelLoadError,
    PromptTooLongError,
    ServerError,
)
from .cache import CachedGenerator, CacheWarning, GenerationCache, KeyClaims, cache_summary
from .embedded import EmbeddedModelError, embedded_bertscore_model, embedded_checkpoint, embedded_gguf
from .engine_backend import EngineBackend
from .engines import EngineProcess
from .factory import check_device_params, check_model_path, checked_quantization, teacher_backend
from .local import LocalBackend, load_model_and_tokenizer
from .server import ServerBackend

__all__ = [
    "ChatBackend",
    "GenerationRequest",
    "GenerationResult",
    "GenerationSettings",
    "Message",
    "TRUNCATION_MARKER",
    "CachedGenerator",
    "CacheWarning",
    "GenerationCache",
    "KeyClaims",
    "cache_summary",
    "EmbeddedModelError",
    "embedded_bertscore_model",
    "embedded_checkpoint",
    "embedded_gguf",
    "LocalBackend",
    "ModelLoadError",
    "PromptTooLongError",
    "load_model_and_tokenizer",
    "ServerBackend",
    "ServerError",
    "check_model_path",
    "check_device_params",
    "checked_quantization",
    "teacher_backend",
    "EngineBackend",
    "EngineProcess",
]
