"""Durable generation cache and the generator that uses it.

Layout: ``CACHE_DIR/generations/<model-identity-hash16>.jsonl``, append-only, one JSON record
per generation with its key (:meth:`GenerationRequest.key`: model identity, template name and
version, rendered messages, settings with seed), the result, and the request for auditing.

Durability: each finished result is appended as ONE ``write`` of a whole line on a file opened
with ``O_APPEND``, then flushed and fsync'd before the generator moves on, so a SIGKILL loses at
most the generation in progress. A torn last line (a crash mid-write) is reported and skipped
on load, and the next append starts on a fresh line. Two processes appending the same key leave
duplicates; the first record in file order wins, deterministically, and duplicates are counted.

Concurrent runs sharing one CACHE_DIR share the work instead of doubling it. Before generating,
a process claims the keys of its next chunk (:class:`KeyClaims`: one file per key under
``generations/<hash16>.claims/``, held with an exclusive ``flock``), generates only the keys it
claimed, and skips keys another process holds; once nothing is left to claim it waits for the
other processes' results to appear in the cache file (read incrementally, from where it last
stopped). A claim is released when its result is durable, and the kernel drops the lock of a
process that dies (even by ``kill -9``), so its keys are taken over at once (and its claim
files swept away by the next generator); a live process
that makes no progress for ``claim_wait_s`` (default 30 min) is not waited for any longer (its
keys are generated again; the first record wins). Without ``fcntl`` (Windows), or on a file
system without ``flock``, nothing is shared and each run generates what it misses.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rrlib.io import JsonlLog, JsonlWarning, stable_hash

from .base import ChatBackend, GenerationRequest, GenerationResult
from .progress import Progress

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
        self._offset = 0  # bytes of the file read so far (up to a newline)
        #: what loading found: lines, records, corrupt [(line number, reason)], duplicates
        self.report: dict[str, Any] = {}
        self.load()

    def load(self) -> dict[str, Any]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", JsonlWarning)
            found = self.log.load()
        self.records = {}
        self._offset = found.complete_bytes
        duplicates = 0
        for rec in found.records:
            if rec["key"] in self.records:
                duplicates += 1  # two processes wrote the same key: the first one in file order wins
                continue
            self.records[rec["key"]] = rec
        self.report = {
            "path": str(self.path),
            "lines": found.lines,
            "records": len(self.records),
            "corrupt": found.corrupt,
            "duplicates": duplicates,
        }
        for w in caught:
            warnings.warn(f"generation cache {w.message}", CacheWarning, stacklevel=2)
        return self.report

    def refresh(self) -> int:
        """Read the records appended (by any process) since the last load or refresh; return how
        many new keys arrived. Damaged lines are skipped here (a full :meth:`load` reports them)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return 0
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        self._offset += end
        new = 0
        for raw in data[:end].split(b"\n"):
            try:
                rec = json.loads(raw)
                key, _ = rec["key"], rec["text"]
            except (ValueError, KeyError, TypeError):
                continue
            if key not in self.records:
                self.records[key] = rec
                new += 1
        return new

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def append(self, entries: Sequence[tuple[str, GenerationRequest, GenerationResult]]) -> None:
        """Write records durably (one write per record, then one fsync)."""
        recs: list[dict[str, Any]] = []
        for key, req, res in entries:
            recs.append(
                {
                    "v": RECORD_VERSION,
                    "key": key,
                    "text": res.text,
                    "prompt_tokens": res.prompt_tokens,
                    "completion_tokens": res.completion_tokens,
                    "finish_reason": res.finish_reason,
                    "truncated_prompt": res.truncated_prompt,
                    "seconds": round(res.seconds, 4),
                    "extra": res.extra,
                    "template": req.template,
                    "template_version": req.template_version,
                    "tag": req.tag,
                    "settings": req.settings.as_dict(),
                    "messages": [dict(m) for m in req.messages],
                    "model": self.identity,
                    **({"grammar": req.grammar} if req.grammar else {}),
                    "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                }
            )
        self.log.append(recs)
        for rec in recs:
            self.records.setdefault(rec["key"], rec)


class KeyClaims:
    """Claims on cache keys shared by every process using one cache file (see the module
    docstring): ``folder/<key>`` locked with ``flock``, so a claim dies with its process."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.held: dict[str, int] = {}  # key -> open descriptor holding the lock
        self._made = False
        try:
            import fcntl  # noqa: F401  (POSIX only)

            self.enabled = True
        except ImportError:
            self.enabled = False

    def try_claim(self, key: str) -> bool:
        """Claim ``key`` unless another live process holds it (True: this process holds it now)."""
        import fcntl

        if not self.enabled:
            return True  # no locking here: generate it, nothing is shared
        if key in self.held:
            return True
        if not self._made:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._made = True
        path = self.folder / key
        for _ in range(5):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False  # held by a live process
            except OSError as e:  # this file system has no flock (ENOLCK, EOPNOTSUPP)
                os.close(fd)
                self.enabled = False
                warnings.warn(
                    f"{self.folder}: cannot lock files here ({e}); concurrent runs sharing this cache "
                    f"will each generate what they miss.",
                    stacklevel=3,
                )
                return True
            try:  # the previous holder may have released (unlinked) it after we opened it
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:  # the lock itself says who holds it: the file stays empty
                self.held[key] = fd
                return True
            os.close(fd)
        return False

    def sweep(self) -> int:
        """Remove the claim files whose holder is gone (killed before it released them); return
        how many. A claim of a dead process is taken over anyway: this only clears the litter."""
        import fcntl

        if not self.enabled or not self.folder.is_dir():
            return 0
        removed = 0
        for path in self.folder.iterdir():
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(path)
                    removed += 1
            except OSError:  # held by a live process, or already gone
                pass
            finally:
                os.close(fd)
        return removed

    def release(self, key: str) -> None:
        fd = self.held.pop(key, None)
        if fd is None:
            return
        try:
            os.unlink(self.folder / key)  # before unlocking, so no one locks a file that is gone
        except FileNotFoundError:
            pass
        os.close(fd)

    def release_all(self) -> None:
        for key in list(self.held):
            self.release(key)


def result_from_record(rec: dict) -> GenerationResult:
    return GenerationResult(
        text=rec["text"],
        prompt_tokens=rec.get("prompt_tokens", 0),
        completion_tokens=rec.get("completion_tokens", 0),
        finish_reason=rec.get("finish_reason", ""),
        truncated_prompt=bool(rec.get("truncated_prompt", False)),
        seconds=rec.get("seconds", 0.0),
        extra=dict(rec.get("extra") or {}, cached=True),
    )


class CachedGenerator:
    """Generate through a backend, reusing and durably recording every result.

    ``generate`` looks every request up, sends only the missing ones (identical requests
    once) to the backend, appends each result as soon as the backend yields it, and returns
    all results in request order. A fully cached call never touches the model (backends load
    weights lazily). Missing keys are claimed ``claim_size`` at a time (default: 4 backend
    batches, at most 256), so that concurrent processes share them (module docstring)."""

    #: seconds between two looks at the cache file while other processes hold the keys left
    POLL_S = (0.2, 5.0)

    def __init__(
        self,
        backend: ChatBackend,
        cache_dir: str | Path,
        chunk_size: int | None = None,
        progress: bool = True,
        claim_size: int | None = None,
        claim_wait_s: float = 1800.0,
    ):
        self.backend = backend
        self.cache_dir = Path(cache_dir)
        self.chunk_size = chunk_size or int(
            getattr(backend, "batch_size", 0) or getattr(backend, "concurrency", 0) or 8
        )
        self.claim_size = max(1, int(claim_size or min(256, 4 * self.chunk_size)))
        self.claim_wait_s = float(claim_wait_s)
        self.progress = progress
        self._cache: GenerationCache | None = None
        self._streams: list[Any] = []  # the backend streams open now (closed on any exit)
        self.stats: dict[str, Any] = {}
        self.reset_stats()

    def reset_stats(self) -> None:
        #: cached/generated count results; prompt/completion tokens and seconds are the NEW work
        #: only; truncated_prompts counts every returned result whose prompt was cut; shared
        #: counts the cached results that another process generated while this one waited
        self.stats = {
            "cached": 0,
            "generated": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "seconds": 0.0,
            "truncated_prompts": 0,
            "shared": 0,
        }
        if getattr(self, "_cache", None) is not None:  # what loading the cache file found stays known
            self.stats.update(self._cache_damage())

    @property
    def cache(self) -> GenerationCache:
        if self._cache is None:
            self._cache = GenerationCache(self.cache_dir, self.backend.identity)
            self.stats.update(self._cache_damage())
        return self._cache

    def _cache_damage(self) -> dict[str, Any]:
        """``cache_file``, ``cache_damaged_lines`` (skipped when the file was loaded: a crash mid-write
        or a damaged disk; their generations are made again) and ``cache_duplicates``, for the
        stats that notebooks write into their results file (the runner reports the damage)."""
        report = self._cache.report if self._cache is not None else {}
        return {
            "cache_file": Path(report.get("path", "")).name,
            "cache_damaged_lines": len(report.get("corrupt", [])),
            "cache_duplicates": int(report.get("duplicates", 0)),
        }

    def generate(self, requests: Sequence[GenerationRequest], desc: str = "") -> list[GenerationResult]:
        requests = list(requests)
        identity = self.backend.identity
        cache = self.cache
        cache.refresh()  # what other processes added since this generator last looked
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
        bar = Progress(
            total=len(requests),
            initial=n_cached,
            desc=desc or "generate",
            unit="gen",
            disable=not self.progress or not requests,
        )
        claims = KeyClaims(cache.path.with_suffix(".claims"))
        start = time.perf_counter()
        try:
            self._generate_missing(requests, missing, results, claims, bar)
        finally:
            self._close_streams()
            claims.release_all()
            self.stats["seconds"] += time.perf_counter() - start
            bar.close()
        absent = [i for i, r in enumerate(results) if r is None]
        if absent:
            raise RuntimeError(f"backend returned no result for {len(absent)} request(s), e.g. index {absent[0]}.")
        self.stats["truncated_prompts"] += sum(r.truncated_prompt for r in results)  # type: ignore[union-attr]
        return results  # type: ignore[return-value]

    @property
    def streams_followups(self) -> bool:
        """Whether :meth:`generate_followups` pipelines here (the backend sends requests
        appended while it streams: the loopback engines and OpenAI-compatible servers)."""
        return bool(getattr(self.backend, "streams_appended", False))

    def generate_followups(
        self,
        requests: Sequence[GenerationRequest],
        follow: Callable[[int, GenerationRequest, GenerationResult], GenerationRequest | None],
        desc: str = "",
    ) -> list[GenerationResult]:
        """Generate ``requests`` and, as each result arrives, the request ``follow(index, request,
        result)`` returns for it (None: nothing), with the same caching as :meth:`generate`;
        returns every result, the follow-ups' after the originals in the order they were asked.

        Where the backend :attr:`streams_followups`, a follow-up is sent while the other requests
        are still running, so a retry fills a free server slot instead of waiting for a wave of
        its own; elsewhere the follow-ups go in rounds. Keys another process holds are waited
        for through :meth:`generate` once the stream is done."""
        reqs = list(requests)
        results: list[GenerationResult | None] = [None] * len(reqs)
        identity = self.backend.identity
        cache = self.cache
        cache.refresh()
        bar = Progress(total=len(reqs), desc=desc or "generate", unit="gen", disable=not self.progress or not reqs)
        claims = KeyClaims(cache.path.with_suffix(".claims"))
        claims.sweep()
        streaming = self.streams_followups
        todo: list[GenerationRequest] = []  # the list the backend streams (it grows as follow-ups come)
        todo_keys: list[str] = []
        queued: dict[str, list[int]] = {}  # key -> request indices waiting for its one generation
        elsewhere: list[int] = []  # keys claimed by another process
        # this call's wall time and truncations, the nested generate() for shared keys included
        seconds_before, truncated_before = self.stats["seconds"], self.stats["truncated_prompts"]
        start = time.perf_counter()

        def resolve(j: int, result: GenerationResult) -> None:
            results[j] = result
            bar.update(1)
            nxt = follow(j, reqs[j], result)
            if nxt is not None:
                reqs.append(nxt)
                results.append(None)
                bar.total += 1
                bar.refresh()
                admit(len(reqs) - 1)

        def admit(j: int) -> None:
            key = reqs[j].key(identity)
            if key in queued:  # the same request is already on its way (counted as cached, as in generate)
                self.stats["cached"] += 1
                queued[key].append(j)
                return
            rec = cache.get(key)
            if rec is not None:
                self.stats["cached"] += 1
                resolve(j, result_from_record(rec))
            elif claims.try_claim(key):
                if key in self._finished_elsewhere(claims, [key]):
                    self.stats["cached"] += 1
                    self.stats["shared"] += 1
                    resolve(j, result_from_record(cache.records[key]))
                    return
                queued[key] = [j]
                todo.append(reqs[j])
                todo_keys.append(key)
            else:
                elsewhere.append(j)

        try:
            for j in range(len(reqs)):
                admit(j)
            while todo or elsewhere:
                if todo:
                    stream, stream_keys = todo, todo_keys
                    if not streaming:  # follow-ups asked during this round wait for the next
                        todo, todo_keys = [], []
                    for t, result in self._backend_stream(stream):
                        key = stream_keys[t]
                        self._record(claims, key, stream[t], result)
                        for j in queued.pop(key):
                            resolve(j, result)  # may append a follow-up to ``stream`` (streaming backends)
                    if streaming:  # the stream ended once it had sent all it was given
                        todo, todo_keys = [], []
                    continue
                waiting, elsewhere[:] = list(elsewhere), []
                for j, result in zip(waiting, self.generate([reqs[j] for j in waiting], desc=f"{desc} (shared)")):
                    resolve(j, result)
        finally:
            self._close_streams()
            claims.release_all()
            self.stats["seconds"] = seconds_before + time.perf_counter() - start
            bar.close()
        self.stats["truncated_prompts"] = truncated_before + sum(r.truncated_prompt for r in results if r is not None)
        return results  # type: ignore[return-value]

    def _generate_missing(
        self,
        requests: list[GenerationRequest],
        missing: dict[str, list[int]],
        results: list[GenerationResult | None],
        claims: KeyClaims,
        bar,
    ) -> None:
        """Generate the keys of ``missing`` that no other process is generating, claim by claim,
        then wait for the ones others are generating (see the module docstring)."""
        cache = self.cache
        pending = list(missing)
        if pending:
            claims.sweep()
        poll, last_progress, ignore_claims = self.POLL_S[0], time.monotonic(), not claims.enabled
        first = True

        def from_cache(key: str, shared: bool) -> bool:
            rec = cache.get(key)
            if rec is None:
                return False
            result = result_from_record(rec)
            for i in missing[key]:
                results[i] = result
            self.stats["cached"] += 1
            self.stats["shared"] += int(shared)
            bar.update(len(missing[key]))
            return True

        while pending:
            if not first:
                # every pending key is looked up, not only the ones this refresh read: an earlier
                # refresh (after a claim) may have read keys it did not claim
                cache.refresh()
                before = len(pending)
                pending = [k for k in pending if not from_cache(k, shared=True)]
                if len(pending) < before:
                    poll, last_progress = self.POLL_S[0], time.monotonic()
                if not pending:
                    break
            first = False
            if ignore_claims:
                mine = pending[: self.claim_size]
            else:
                mine = []
                for key in pending:
                    if len(mine) >= self.claim_size:
                        break
                    if claims.try_claim(key):
                        mine.append(key)
                if mine:
                    done = self._finished_elsewhere(claims, mine)
                    for k in done:
                        from_cache(k, shared=True)
                    pending = [k for k in pending if k not in done]
                    mine = [k for k in mine if k not in done]
            if mine:
                todo = [requests[missing[k][0]] for k in mine]
                for index, result in self._backend_stream(todo):
                    key = mine[index]
                    self._record(claims, key, todo[index], result)
                    for i in missing[key]:
                        results[i] = result
                    bar.update(len(missing[key]))
                taken = set(mine)
                pending = [k for k in pending if k not in taken]
                poll, last_progress = self.POLL_S[0], time.monotonic()
                continue
            # every key left is being generated by another live process: wait for its results
            if time.monotonic() - last_progress > self.claim_wait_s:
                warnings.warn(
                    f"generation cache {cache.path}: {len(pending)} key(s) claimed by another process "
                    f"showed no progress for {self.claim_wait_s:g} s; generating them here.",
                    stacklevel=3,
                )
                ignore_claims = True
                continue
            time.sleep(poll)
            poll = min(self.POLL_S[1], poll * 1.5)

    def _finished_elsewhere(self, claims: KeyClaims, claimed: Sequence[str]) -> set[str]:
        """The keys of ``claimed`` (just claimed here) that their previous holder finished before
        releasing them: their claims are released again, and the cache holds their records."""
        self.cache.refresh()
        done = {k for k in claimed if k in self.cache}
        for k in done:
            claims.release(k)
        return done

    def _record(self, claims: KeyClaims, key: str, request: GenerationRequest, result: GenerationResult) -> None:
        """A new result: durable in the cache before its claim is released, and counted."""
        self.cache.append([(key, request, result)])
        claims.release(key)
        self.stats["generated"] += 1
        self.stats["prompt_tokens"] += result.prompt_tokens
        self.stats["completion_tokens"] += result.completion_tokens

    def _close_streams(self) -> None:
        """Close the backend streams this generator opened: an interrupt (Ctrl-C, a kernel
        interrupt) that lands in a loop over a stream leaves it open, and closing it cancels its
        requests in flight now, not when the traceback is garbage-collected."""
        streams, self._streams = self._streams, []
        for stream in streams:
            stream.close()

    def _backend_stream(self, todo: list[GenerationRequest]):
        if not todo:
            return
        if hasattr(self.backend, "iter_generate"):
            stream = self.backend.iter_generate(todo)
            self._streams.append(stream)
            yield from stream
            return
        for start in range(0, len(todo), self.chunk_size):
            chunk = todo[start : start + self.chunk_size]
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
            rows.append(
                {
                    "file": path.name,
                    "model": first,
                    "records": len(c),
                    "corrupt": len(c.report["corrupt"]),
                    "duplicates": c.report["duplicates"],
                }
            )
    return rows


__all__ = [
    "CachedGenerator",
    "GenerationCache",
    "CacheWarning",
    "KeyClaims",
    "cache_summary",
    "identity_hash",
    "result_from_record",
]
