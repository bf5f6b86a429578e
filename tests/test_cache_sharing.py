"""Issue 11, runs and caches: two processes sharing one CACHE_DIR generate each request once
(per-key claims), a claim of a killed process is taken over at once, and the file stays whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import rrlib
from rrlib.llm import GenerationCache, KeyClaims
from rrlib.llm.cache import CachedGenerator

REPO = Path(rrlib.__file__).resolve().parents[1]
IDENTITY = {"backend": "fake-slow", "name": "m"}

WORKER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from rrlib.llm import CachedGenerator, GenerationRequest, GenerationResult, GenerationSettings

    cache_dir, log, n, delay, barrier = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]

    class SlowBackend:
        identity = {"backend": "fake-slow", "name": "m"}
        batch_size = 2

        def iter_generate(self, requests):
            for i, r in enumerate(requests):
                time.sleep(delay)
                with open(log, "a") as f:  # one line per generation, whoever makes it
                    f.write(f"{os.getpid()} {r.tag}\\n")
                yield i, GenerationResult(text="out:" + r.tag, prompt_tokens=3, completion_tokens=2)

    reqs = [GenerationRequest(({"role": "user", "content": f"q{i}"},), GenerationSettings(), "t", "1", tag=str(i))
            for i in range(n)]
    reqs += reqs[:3]  # repeats within one call are generated once
    if barrier:  # start together: each says it is ready, then waits for the others
        Path(barrier[0], f"ready-{os.getpid()}").write_text("")
        while len(list(Path(barrier[0]).glob("ready-*"))) < int(barrier[1]):
            time.sleep(0.01)
    gen = CachedGenerator(SlowBackend(), cache_dir, progress=False)
    out = gen.generate(reqs)
    print(json.dumps({"pid": os.getpid(), "stats": gen.stats, "texts": [r.text for r in out]}))
""")


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO))


def _worker(tmp_path: Path, cache: Path, log: Path, n: int, delay: float, *barrier: str) -> subprocess.Popen:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    return subprocess.Popen(
        [sys.executable, str(script), str(cache), str(log), str(n), str(delay), *barrier],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _generations(log: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()) for line in log.read_text().splitlines()] if log.is_file() else []


@pytest.mark.slow
def test_two_processes_sharing_a_cache_generate_each_request_once(tmp_path):
    n = 40
    cache, log, barrier = tmp_path / "cache", tmp_path / "generations.log", tmp_path / "barrier"
    barrier.mkdir()
    procs = [_worker(tmp_path, cache, log, n, 0.05, str(barrier), "2") for _ in range(2)]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    made = _generations(log)
    tags = [tag for _, tag in made]
    assert len(tags) == n and sorted(tags, key=int) == [str(i) for i in range(n)], "a request was generated twice"
    assert sum(r["stats"]["generated"] for r in reports) == n
    assert all(r["stats"]["generated"] > 0 for r in reports), "no work was shared"  # both generated
    assert sum(r["stats"]["shared"] for r in reports) > 0  # and one waited for the other's results
    expected = [f"out:{i}" for i in range(n)] + ["out:0", "out:1", "out:2"]
    assert all(r["texts"] == expected for r in reports)
    assert all(r["stats"]["cached"] + r["stats"]["generated"] == n + 3 for r in reports)
    cache_file = GenerationCache(cache, IDENTITY)
    assert len(cache_file) == n and cache_file.report["corrupt"] == [] and cache_file.report["duplicates"] == 0
    assert list(cache_file.path.with_suffix(".claims").iterdir()) == []  # every claim was released


@pytest.mark.slow
def test_claims_of_a_killed_process_are_taken_over_at_once(tmp_path):
    n = 12
    cache, log = tmp_path / "cache", tmp_path / "generations.log"
    cache_file = GenerationCache(cache, IDENTITY).path
    victim = _worker(tmp_path, cache, log, n, 1.0)  # slow: claims 8 keys (4 batches of 2), 1 s each
    deadline = time.time() + 120
    while not (cache_file.is_file() and cache_file.read_text().count("\n") >= 1) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    before = len(GenerationCache(cache, IDENTITY))
    claims = cache_file.with_suffix(".claims")
    left = len(list(claims.iterdir()))  # its claim files stay behind (+1 if killed between append and release)
    assert 1 <= before < 8 and 8 - before <= left <= 9 - before
    start = time.monotonic()
    heir = _worker(tmp_path, cache, log, n, 0.01)
    out, err = heir.communicate(timeout=300)
    assert heir.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["stats"]["generated"] == n - before and report["stats"]["shared"] == 0
    assert time.monotonic() - start < 60  # no waiting for the dead process (claim_wait_s is 30 min)
    after = GenerationCache(cache, IDENTITY)
    assert len(after) == n and after.report["duplicates"] == 0
    assert list(claims.iterdir()) == []


def test_a_claim_excludes_other_holders_until_released(tmp_path):
    a, b = KeyClaims(tmp_path / "claims"), KeyClaims(tmp_path / "claims")
    assert a.try_claim("k1") and not b.try_claim("k1")  # flock: a second open file cannot lock it
    assert b.try_claim("k2")
    a.release("k1")
    assert not (tmp_path / "claims" / "k1").exists() and b.try_claim("k1")
    (tmp_path / "claims" / "dead").write_text("")  # left by a killed process: nobody holds its lock
    assert KeyClaims(tmp_path / "claims").sweep() == 1  # k1 and k2 are held by b: kept
    assert sorted(p.name for p in (tmp_path / "claims").iterdir()) == ["k1", "k2"]
    b.release_all()
    assert list((tmp_path / "claims").iterdir()) == []


def test_refresh_reads_only_what_other_writers_appended(tmp_path):
    from rrlib.llm import GenerationRequest, GenerationResult, GenerationSettings

    reader, writer = GenerationCache(tmp_path, IDENTITY), GenerationCache(tmp_path, IDENTITY)
    reqs = [
        GenerationRequest(({"role": "user", "content": f"q{i}"},), GenerationSettings(), "t", "1") for i in range(3)
    ]
    writer.append([(r.key(IDENTITY), r, GenerationResult(text=str(i))) for i, r in enumerate(reqs[:2])])
    with open(writer.path, "ab") as f:
        f.write(b'{"key": "torn-by-a-kill", "te')  # a line still being written (or torn) is not read
    assert reader.refresh() == 2 and len(reader) == 2
    writer.append([(reqs[2].key(IDENTITY), reqs[2], GenerationResult(text="2"))])  # starts on a fresh line
    assert reader.refresh() == 1 and reader.get(reqs[2].key(IDENTITY))["text"] == "2"
    assert reader.refresh() == 0


def test_claim_size_defaults_to_four_backend_batches():
    class B:
        identity = IDENTITY
        batch_size = 64

    assert CachedGenerator(B(), "unused").claim_size == 256
    B.batch_size = 8
    assert CachedGenerator(B(), "unused").claim_size == 32


def test_a_file_system_without_flock_generates_without_sharing(tmp_path, monkeypatch):
    import errno
    import fcntl

    from rrlib.llm import GenerationRequest, GenerationResult, GenerationSettings

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)

    class Backend:
        identity = IDENTITY
        batch_size = 2

        def generate(self, requests):
            return [GenerationResult(text="out:" + r.tag) for r in requests]

    reqs = [
        GenerationRequest(({"role": "user", "content": f"q{i}"},), GenerationSettings(), "t", "1", tag=str(i))
        for i in range(5)
    ]
    gen = CachedGenerator(Backend(), tmp_path, progress=False)
    with pytest.warns(UserWarning, match="cannot lock files here"):
        out = gen.generate(reqs)
    assert [r.text for r in out] == [f"out:{i}" for i in range(5)] and gen.stats["generated"] == 5
