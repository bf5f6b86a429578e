"""The teacher backend on an engine the workbook starts itself (:mod:`rrlib.llm.engines`): its own
process, or the one engine of its spec shared by every process on the machine
(:mod:`rrlib.llm.shared`); and the choice of engine for ``TEACHER_ENGINE: auto``.

It sits apart from :mod:`rrlib.llm.engines` because it uses both the processes there and the
shared engines, which are built on those processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ServerError
from .base import GenerationRequest, GenerationResult, GenerationSettings, in_request_order
from .cache import identity_hash
from .engines import (
    ENGINE_PREFERENCE,
    SERVED_NAME,
    EngineConfig,
    EngineProcess,
    EngineSpec,
    engine_spec,
    not_installed_reason,
)
from .server import ServerBackend
from .shared import attach


# ---------------------------------------------------------------------------------------
# the backend
# ---------------------------------------------------------------------------------------
class EngineBackend:
    """A :class:`ServerBackend` on an engine this object starts (lazily) and stops."""

    def __init__(
        self,
        spec: EngineSpec,
        *,
        timeout_s: float = 300.0,
        retries: int = 2,
        max_prompt_tokens: int = 2048,
        log_dir: str | Path | None = None,
        shared_idle_s: float = 0.0,
    ):
        """``shared_idle_s`` > 0: use the one engine of this spec shared by every process on the
        machine (:mod:`rrlib.llm.shared`), held only while generating and stopped by its supervisor
        after that many idle seconds; 0: an engine of this object's own, stopped by :meth:`close`."""
        self.spec = spec
        self.shared_idle_s = float(shared_idle_s)
        self._lease: Any = None
        self.identity = dict(spec.identity)
        log_path = None
        if log_dir is not None:
            log_path = Path(log_dir) / f"{spec.config.engine}-{os.getpid()}-{id(self):x}.log"
        self.process = EngineProcess(
            spec.command,
            name=spec.config.engine.replace("_", "-"),
            health_path=spec.health_path,
            startup_timeout_s=spec.config.startup_timeout_s,
            log_path=log_path,
            env=spec.env,
        )
        self.client = ServerBackend(
            "http://127.0.0.1:9/v1",
            SERVED_NAME,
            api_key_env="",
            concurrency=spec.config.parallel,
            timeout_s=timeout_s,
            retries=retries,
            max_prompt_tokens=max_prompt_tokens,
            extra_body=spec.extra_body,
            liveness=self.check_alive,
            grammar_field=spec.grammar_field,
        )
        self.client._identity = self.identity
        self._lock = threading.Lock()

    @property
    def concurrency(self) -> int:
        return self.client.concurrency

    @property
    def shared(self) -> bool:
        return self.shared_idle_s > 0

    def check_alive(self) -> None:
        """Raise :class:`ServerError` (signal or exit code, log tail) when the engine has died."""
        if self._lease is not None:
            self._lease.check_alive()
        else:
            self.process.check_alive()

    def start(self) -> "EngineBackend":
        with self._lock:
            if self.shared:
                if self._lease is None or not self._lease.held:
                    self._lease = attach(self.spec, self.shared_idle_s)
                    self.client.base_url = self._lease.url
                return self
            if not self.process.running:
                if self.process.proc is not None:  # it ran before and died: say so instead of restarting
                    self.process.check_alive()
                self.process.start()
                self.client.base_url = self.process.url
        return self

    def release(self) -> None:
        """Stop using the engine: a shared one's lease is dropped (its supervisor stops it once
        every process is idle), an own one is stopped (the next generation starts it again)."""
        with self._lock:
            if self._lease is not None:
                self._lease.release()
                self._lease = None
            elif self.process.proc is not None:
                self.process.stop()
                self.process.proc = None  # stopped on purpose: the next start() starts it again

    def close(self) -> None:
        self.release()

    def __enter__(self) -> "EngineBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def count_tokens(self, messages) -> int:
        return self.client.count_tokens(messages)

    def generate(self, requests_: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return in_request_order(len(requests_), self.iter_generate(requests_))

    #: requests appended to :meth:`iter_generate`'s list while it runs are sent too
    streams_appended = True

    def iter_generate(self, requests_: Sequence[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        if not requests_:
            return
        self.start()
        finished = False
        try:
            # longest prompt first: the slots finish together instead of waiting on one long straggler
            order = sorted(range(len(requests_)), key=lambda i: (-self.count_tokens(requests_[i].messages), i))
            ordered = [requests_[i] for i in order]
            for j, result in self.client.iter_generate(ordered):
                result.extra["engine"] = self.spec.config.engine
                yield order[j], result
                while len(order) < len(requests_):  # appended by the caller meanwhile: sent in that order
                    order.append(len(order))
                    ordered.append(requests_[order[-1]])
            finished = True
        finally:
            if self.shared:
                self.release()  # the lease is held while generating only
            elif not finished and self.process.running:
                self.release()  # interrupted or failed: stop the engine instead of leaving it busy


# ---------------------------------------------------------------------------------------
# TEACHER_ENGINE: auto
# ---------------------------------------------------------------------------------------
def probe_engine(config: EngineConfig, cache_dir: str | Path) -> str:
    """'' when the engine starts and generates a multi-token answer here, else why not. A
    success is remembered in ``CACHE_DIR/engines/probes.json`` by engine identity, so it runs
    once per binary, model and machine build; a failure is tried again next time."""
    cache_dir = Path(cache_dir)
    try:
        spec = engine_spec(config, cache_dir)
    except ServerError as e:
        return str(e)
    memo_file = cache_dir / "engines" / "probes.json"
    key = identity_hash(spec.identity)
    memo: dict[str, Any] = {}
    if memo_file.is_file():
        with contextlib.suppress(OSError, json.JSONDecodeError):
            memo = json.loads(memo_file.read_text())
    if memo.get(key, {}).get("ok"):
        return ""
    request = GenerationRequest(
        ({"role": "user", "content": "Name three colours of lipstick."},),
        GenerationSettings(max_new_tokens=16),
        "engine_probe",
        "1",
    )
    try:
        with EngineBackend(spec, timeout_s=300, retries=0, log_dir=cache_dir / "engines" / "logs") as be:
            result = be.generate([request, request])[0]
        if result.completion_tokens < 2:
            return f"{config.engine} answered the probe with {result.completion_tokens} token(s)"
    except ServerError as e:
        return str(e)
    memo[key] = {"ok": True, "engine": config.engine, "checked": time.strftime("%Y-%m-%dT%H:%M:%S")}
    memo_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo_file.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(memo, indent=1, sort_keys=True))
    os.replace(tmp, memo_file)
    return ""


def choose_engine(config: EngineConfig, cache_dir: str | Path, *, model_is_gguf: bool | None = None) -> str:
    """Resolve ``auto``: the first of :data:`ENGINE_PREFERENCE` that is installed, can serve the
    model and passes :func:`probe_engine`; else ``transformers`` (with a warning naming why)."""
    if config.engine != "auto":
        return config.engine
    reasons = []
    for engine in ENGINE_PREFERENCE:
        if config.model != "embedded":
            gguf = config.model.endswith(".gguf") if model_is_gguf is None else model_is_gguf
            if gguf != (engine != "vllm"):
                continue  # llama.cpp serves GGUF files, vLLM checkpoints
        why = not_installed_reason(engine) or probe_engine(dataclasses.replace(config, engine=engine), cache_dir)
        if not why:
            return engine
        reasons.append(f"{engine}: {why.splitlines()[0]}")
    if reasons:
        warnings.warn("TEACHER_ENGINE auto: using transformers; " + "; ".join(reasons), stacklevel=2)
    return "transformers"


__all__ = ["EngineBackend", "choose_engine", "probe_engine"]
