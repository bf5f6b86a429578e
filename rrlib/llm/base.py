"""The one generation interface every backend implements, the request/result types that the
durable cache keys on, and what every backend shares: its errors and the truncation marker."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from rrlib.errors import ModelLoadError, PromptTooLongError, ServerError
from rrlib.io import stable_hash

Message = dict  # {"role": "system"|"user"|"assistant", "content": str}
#: what replaces the middle of a prompt cut to fit the context (see the backends' truncation policy)
TRUNCATION_MARKER = "\n[...]\n"


class Closeable:
    """``with backend:`` for every backend; those holding nothing to release inherit this ``close``."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings. ``temperature == 0`` means greedy decoding."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    #: > 1 discourages repeating tokens (HF ``repetition_penalty``; llama.cpp ``repeat_penalty``).
    #: 1.0 is off and the paper's setting; small models loop without it.
    repetition_penalty: float = 1.0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["repetition_penalty"] == 1.0:  # off: keep keys of caches written before the field existed
            del d["repetition_penalty"]
        return d


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to generate for. ``template`` and ``template_version`` name the prompt
    template that rendered ``messages``; ``tag`` is a caller's label (e.g. item id) that is
    stored with the result but is not part of the cache key."""

    messages: tuple[Message, ...]
    settings: GenerationSettings
    template: str
    template_version: str
    tag: str = ""
    #: a GBNF grammar the answer must follow ('' = free text); see :mod:`rrlib.prompts.grammars`
    grammar: str = ""

    def key(self, model_identity: dict[str, Any]) -> str:
        """Everything that changes the answer, hashed (the grammar too, when there is one)."""
        payload = {
            "model": model_identity,
            "template": self.template,
            "template_version": self.template_version,
            "messages": [dict(m) for m in self.messages],
            "settings": self.settings.as_dict(),
        }
        if self.grammar:  # free-text requests keep the keys they had before grammars existed
            payload["grammar"] = self.grammar
        return stable_hash(payload)


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""  # "stop" | "length" | ...
    truncated_prompt: bool = False  # the prompt was cut to fit the context (see backend policy)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class ChatBackend(Protocol):
    """A chat model that turns message lists into text."""

    @property
    def identity(self) -> dict[str, Any]:
        """Name, revision or file hash, adapter hash: everything about the model that changes answers."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Generate for every request, in order. Backends batch internally."""
        ...

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt length in tokens after the chat template (used for truncation and batching)."""
        ...

    def close(self) -> None:
        """Release what the backend holds (a loopback engine process); a no-op for the others."""
        ...

    def fit_prompt(self, messages: Sequence[Message], limit: int) -> tuple[list[Message], bool]:
        """The truncation policy: (messages that fit in ``limit`` tokens, whether they were cut).
        Cuts the middle of the longest user message, marked :data:`TRUNCATION_MARKER`; raises
        :class:`PromptTooLongError` when even that cannot fit."""
        ...


__all__ = [
    "ChatBackend",
    "GenerationRequest",
    "GenerationResult",
    "GenerationSettings",
    "Message",
    "ModelLoadError",
    "PromptTooLongError",
    "ServerError",
    "TRUNCATION_MARKER",
    "in_request_order",
]


def in_request_order(n: int, indexed_results: Iterable[tuple[int, GenerationResult]]) -> list[GenerationResult]:
    """Collect ``(request index, result)`` pairs, yielded in completion order by a backend's
    ``iter_generate``, into a list in request order."""
    out: list[GenerationResult | None] = [None] * n
    for i, result in indexed_results:
        out[i] = result
    return out  # type: ignore[return-value]
