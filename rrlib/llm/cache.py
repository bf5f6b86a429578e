"""Durable generation cache and the generator that uses it.

Layout: ``CACHE_DIR/generations/<model-identity-hash16>.jsonl``, append-only, one JSON record
per generation with its key (:meth:`GenerationRequest.key`: model identity, template name and
version, rendered messages, settings with seed), the result, and the request for auditing.

Durability: each finished result is appended as ONE ``write`` of a whole line on a file opened
with ``O_APPEND``, then flushed and fsync'd before the generator moves on, so a SIGKILL loses at
most the generation in progress. A torn last line (a crash mid-write) is reported and skipped
on load, and the next append starts on a fresh line. Two processes appending the same key leave
duplicates; the first record in file order wins, deterministically, and duplicates are counted.
"""
from __future__ import annotations

import datetime as _dt
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from rrlib.io import JsonlLog, JsonlWarning, stable_hash

from .base import ChatBackend, GenerationRequest, GenerationResult

RECORD_VERSION = 1
#: a damaged cache line is reported with this warning (the io layer's, under the cache's name)
CacheWarning = JsonlWarning


def identity_hash(identity: dict[str, Any]) -> str:
    return stable_hash(identity, 16)


class GenerationCache:
    """The cache file of one model identity, on a crash-safe :class:`rrlib.io.JsonlLog`."""

    def __init__(self, cache_dir: str | Path, identity: dict[str, Any]):
        self.identity = identity
        self.folder = Path(cache_dir) / "generations"
        self.path = self.folder / f"{identity_hash(identity)}.jsonl"
        self.log = JsonlLog(self.path, required=("key", "text"))
        self.records: dict[str, dict] = {}
        #: what loading found: lines, records, corrupt [(line number, reason)], duplicates
        self.report: dict[str, Any] = {}
        self.load()

    def load(self) -> dict[str, Any]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", JsonlWarning)
            found = self.log.load()
        self.records = {}
        duplicates = 0
        for rec in found.records:
            if rec["key"] in self.records:
                duplicates += 1  # two processes wrote the same key: the first one in file order wins
                continue
            self.records[rec["key"]] = rec
        self.report = {"path": str(self.path), "lines": found.lines, "records": len(self.records),
                       "corrupt": found.corrupt, "duplicates": duplicates}
        for w in caught:
            warnings.warn(f"generation cache {w.message}", CacheWarning, stacklevel=2)
        return self.report

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def append(self, entries: Sequence[tuple[str, GenerationRequest, GenerationResult]]) -> None:
        """Write records durably (one write per record, then one fsync)."""
        recs = []
        for key, req, res in entries:
            recs.append({"v": RECORD_VERSION, "key": key, "text": res.text, "prompt_tokens": res.prompt_tokens,
                         "completion_tokens": res.completion_tokens, "finish_reason": res.finish_reason,
                         "truncated_prompt": res.truncated_prompt, "seconds": round(res.seconds, 4),
                         "extra": res.extra, "template": req.template, "template_version": req.template_version,
                         "tag": req.tag, "settings": req.settings.as_dict(),
                         "messages": [dict(m) for m in req.messages], "model": self.identity,
                         "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        self.log.append(recs)
        for rec in recs:
            self.records.setdefault(rec["key"], rec)


def result_from_record(rec: dict) -> GenerationResult:
    return GenerationResult(text=rec["text"], prompt_tokens=rec.get("prompt_tokens", 0),
                            completion_tokens=rec.get("completion_tokens", 0),
                            finish_reason=rec.get("finish_reason", ""),
                            truncated_prompt=bool(rec.get("truncated_prompt", False)),
                            seconds=rec.get("seconds", 0.0), extra=dict(rec.get("extra") or {}, cached=True))


class CachedGenerator:
    """Generate through a backend, reusing and durably recording every result.

    ``generate`` looks every request up, sends only the missing ones (identical requests
    once) to the backend, appends each result as soon as the backend yields it, and returns
    all results in request order. A fully cached call never touches the model (backends load
    weights lazily)."""

    def __init__(self, backend: ChatBackend, cache_dir: str | Path, chunk_size: int | None = None,
                 progress: bool = True):
        self.backend = backend
        self.cache_dir = Path(cache_dir)
        self.chunk_size = chunk_size or int(getattr(backend, "batch_size", 0) or getattr(
            backend, "concurrency", 0) or 8)
        self.progress = progress
        self._cache: GenerationCache | None = None
        self.stats: dict[str, Any] = {}
        self.reset_stats()

    def reset_stats(self) -> None:
        #: cached/generated count results; prompt/completion tokens and seconds are the NEW work
        #: only; truncated_prompts counts every returned result whose prompt was cut
        self.stats = {"cached": 0, "generated": 0, "prompt_tokens": 0, "completion_tokens": 0,
                      "seconds": 0.0, "truncated_prompts": 0}

    @property
    def cache(self) -> GenerationCache:
        if self._cache is None:
            self._cache = GenerationCache(self.cache_dir, self.backend.identity)
        return self._cache

    def generate(self, requests: Sequence[GenerationRequest], desc: str = "") -> list[GenerationResult]:
        from tqdm.auto import tqdm

        requests = list(requests)
        identity = self.backend.identity
        cache = self.cache
        keys = [r.key(identity) for r in requests]
        results: list[GenerationResult | None] = [None] * len(requests)
        missing: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            rec = cache.get(key)
            if rec is not None:
                results[i] = result_from_record(rec)
            else:
                missing.setdefault(key, []).append(i)
        n_cached = len(requests) - sum(len(v) for v in missing.values())
        # repeats of a missing request within this call are served from its one generation: cached
        self.stats["cached"] += len(requests) - len(missing)
        todo_keys = list(missing)
        todo = [requests[missing[k][0]] for k in todo_keys]
        bar = tqdm(total=len(requests), initial=n_cached, desc=desc or "generate", unit="gen",
                   disable=not self.progress or not requests)
        start = time.perf_counter()
        try:
            for index, result in self._backend_stream(todo):
                key = todo_keys[index]
                cache.append([(key, todo[index], result)])
                for i in missing[key]:
                    results[i] = result
                self.stats["generated"] += 1
                self.stats["prompt_tokens"] += result.prompt_tokens
                self.stats["completion_tokens"] += result.completion_tokens
                bar.update(len(missing[key]))
        finally:
            self.stats["seconds"] += time.perf_counter() - start
            bar.close()
        absent = [i for i, r in enumerate(results) if r is None]
        if absent:
            raise RuntimeError(f"backend returned no result for {len(absent)} request(s), e.g. index {absent[0]}.")
        self.stats["truncated_prompts"] += sum(r.truncated_prompt for r in results)  # type: ignore[union-attr]
        return results  # type: ignore[return-value]

    def _backend_stream(self, todo: list[GenerationRequest]):
        if not todo:
            return
        if hasattr(self.backend, "iter_generate"):
            yield from self.backend.iter_generate(todo)
            return
        for start in range(0, len(todo), self.chunk_size):
            chunk = todo[start:start + self.chunk_size]
            for j, result in enumerate(self.backend.generate(chunk)):
                yield start + j, result


def cache_summary(cache_dir: str | Path) -> list[dict[str, Any]]:
    """One row per cache file: identity, records, damaged lines (for notebooks and the runner)."""
    rows = []
    for path in sorted((Path(cache_dir) / "generations").glob("*.jsonl")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacheWarning)
            found = JsonlLog(path, required=("model",)).load(warn=False)
            if not found.records:
                continue
            first = found.records[0]["model"]
            c = GenerationCache(cache_dir, first)
            rows.append({"file": path.name, "model": first, "records": len(c), "corrupt": len(c.report["corrupt"]),
                         "duplicates": c.report["duplicates"]})
    return rows


__all__ = ["CachedGenerator", "GenerationCache", "CacheWarning", "cache_summary", "identity_hash",
           "result_from_record"]
