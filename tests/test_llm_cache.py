"""The durable generation cache: keys, damaged files, duplicates, CachedGenerator bookkeeping,
and exact resume after SIGKILL of a real generating subprocess."""

from __future__ import annotations

import dataclasses
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
from rrlib.llm import (
    CachedGenerator,
    CacheWarning,
    GenerationCache,
    GenerationRequest,
    GenerationResult,
    GenerationSettings,
    LocalBackend,
)

REPO = Path(rrlib.__file__).resolve().parents[1]
#: the de-quantized embedded checkpoint is built once here (the default CACHE_DIR) and shared
MODEL_CACHE = REPO / "outputs" / "cache"

IDENTITY = {"backend": "fake", "name": "m", "revision": "r1"}


def _request(**over) -> GenerationRequest:
    base = dict(
        messages=(
            {"role": "system", "content": "You describe products."},
            {"role": "user", "content": "Describe: lavender soap."},
        ),
        settings=GenerationSettings(temperature=0.01, top_p=0.9, max_new_tokens=64, seed=42),
        template="item_description",
        template_version="1",
        tag="item-1",
    )
    base.update(over)
    return GenerationRequest(**base)


class FakeBackend:
    """A backend that counts what it is asked to generate (no iter_generate: chunked path)."""

    def __init__(self, identity=IDENTITY):
        self.identity = dict(identity)
        self.calls: list[list[str]] = []
        self.batch_size = 2

    def generate(self, requests):
        self.calls.append([r.tag for r in requests])
        return [
            GenerationResult(
                text=f"out:{r.messages[-1]['content']}", prompt_tokens=10, completion_tokens=3, finish_reason="stop"
            )
            for r in requests
        ]

    def count_tokens(self, messages):
        return 10


# --------------------------------------------------------------------------- keys
def test_key_changes_when_any_input_changes_and_not_with_tag():
    base = _request()
    k0 = base.key(IDENTITY)
    variants = {
        "model name": base.key(dict(IDENTITY, name="m2")),
        "model revision/hash": base.key(dict(IDENTITY, revision="r2")),
        "adapter hash": base.key(dict(IDENTITY, adapter_sha256="abc")),
        "dtype": base.key(dict(IDENTITY, dtype="float32")),
        "template": _request(template="user_profile").key(IDENTITY),
        "template version": _request(template_version="2").key(IDENTITY),
        "system message": _request(
            messages=({"role": "system", "content": "You describe items."}, base.messages[1])
        ).key(IDENTITY),
        "user message": _request(
            messages=(base.messages[0], {"role": "user", "content": "Describe: lavender soaps."})
        ).key(IDENTITY),
        "message role": _request(
            messages=(base.messages[0], {"role": "assistant", "content": base.messages[1]["content"]})
        ).key(IDENTITY),
        "extra message": _request(messages=base.messages + ({"role": "user", "content": "More."},)).key(IDENTITY),
    }
    for field in dataclasses.fields(GenerationSettings):
        value = getattr(base.settings, field.name)
        changed = value + 1 if isinstance(value, int) else value + 0.05
        variants[f"settings.{field.name}"] = _request(
            settings=dataclasses.replace(base.settings, **{field.name: changed})
        ).key(IDENTITY)
    for what, key in variants.items():
        assert key != k0, f"cache key ignores a change of {what}"
    assert len(set(variants.values())) == len(variants)
    assert _request(tag="another-item").key(IDENTITY) == k0
    assert _request().key(dict(reversed(list(IDENTITY.items())))) == k0  # key order of identity is irrelevant


# --------------------------------------------------------------------------- cache file
def _append(cache: GenerationCache, *reqs: GenerationRequest) -> None:
    cache.append([(r.key(cache.identity), r, GenerationResult(text=f"t-{r.tag}")) for r in reqs])


def test_truncated_last_record_is_reported_skipped_and_not_glued_to_next(tmp_path):
    cache = GenerationCache(tmp_path, IDENTITY)
    reqs = [_request(messages=({"role": "user", "content": f"p{i}"},), tag=str(i)) for i in range(3)]
    _append(cache, *reqs)
    data = cache.path.read_bytes()
    cache.path.write_bytes(data[: len(data) - 25])  # tear the last record, as a kill mid-write would
    with pytest.warns(CacheWarning, match=r"line 3: truncated last record"):
        reloaded = GenerationCache(tmp_path, IDENTITY)
    assert len(reloaded) == 2 and reloaded.report["corrupt"][0][0] == 3
    _append(reloaded, reqs[2])  # regenerate the lost one
    with pytest.warns(CacheWarning, match="line 3"):  # the torn line stays, reported, but is no longer last
        again = GenerationCache(tmp_path, IDENTITY)
    assert {r.key(IDENTITY) for r in reqs} == set(again.records)
    assert again.get(reqs[2].key(IDENTITY))["text"] == "t-2"


def test_corrupt_middle_line_and_duplicates_resolved_deterministically(tmp_path):
    cache = GenerationCache(tmp_path, IDENTITY)
    req = _request()
    key = req.key(IDENTITY)
    cache.append([(key, req, GenerationResult(text="first"))])
    with open(cache.path, "ab") as f:
        f.write(b"{not json\n")
    cache.append([(key, req, GenerationResult(text="second"))])  # e.g. a second process
    with pytest.warns(CacheWarning, match="line 2: unreadable record"):
        reloaded = GenerationCache(tmp_path, IDENTITY)
    assert reloaded.get(key)["text"] == "first"
    assert reloaded.report["duplicates"] == 1 and reloaded.report["records"] == 1


def test_cached_generator_generates_only_missing_in_order_and_counts(tmp_path):
    backend = FakeBackend()
    gen = CachedGenerator(backend, tmp_path, progress=False)
    reqs = [_request(messages=({"role": "user", "content": f"p{i}"},), tag=f"t{i}") for i in range(5)]
    first = gen.generate(reqs[:3])
    assert [r.text for r in first] == ["out:p0", "out:p1", "out:p2"]
    assert gen.stats["generated"] == 3 and gen.stats["cached"] == 0 and gen.stats["completion_tokens"] == 9
    # new generator (new process): 3 cached, 2 generated, identical requests generated once
    backend2 = FakeBackend()
    gen2 = CachedGenerator(backend2, tmp_path, progress=False)
    batch = [reqs[4], reqs[0], reqs[3], reqs[4], reqs[2], reqs[1]]
    out = gen2.generate(batch)
    assert [r.text for r in out] == ["out:p4", "out:p0", "out:p3", "out:p4", "out:p2", "out:p1"]
    assert sorted(t for call in backend2.calls for t in call) == ["t3", "t4"]
    assert gen2.stats["cached"] == 4 and gen2.stats["generated"] == 2
    assert all(r.extra.get("cached") for r in (out[1], out[4], out[5]))
    lines = GenerationCache(tmp_path, IDENTITY).path.read_text().splitlines()
    assert len(lines) == 5 and len({json.loads(x)["key"] for x in lines}) == 5
    # other model identity -> other file, nothing reused
    gen3 = CachedGenerator(FakeBackend(dict(IDENTITY, revision="r9")), tmp_path, progress=False)
    gen3.generate(reqs[:1])
    assert gen3.stats["generated"] == 1


def _finished_elsewhere_on_first_claim(monkeypatch, tmp_path, request):
    """Another process finishes ``request`` (appends it, releases its claim) just before this
    process's first claim: the race that once made two processes generate one key."""
    from rrlib.llm.cache import KeyClaims

    real, done = KeyClaims.try_claim, []

    def try_claim(self, key):
        if not done:
            done.append(key)
            GenerationCache(tmp_path, IDENTITY).append(
                [(request.key(IDENTITY), request, GenerationResult(text="theirs", completion_tokens=1))]
            )
        return real(self, key)

    monkeypatch.setattr(KeyClaims, "try_claim", try_claim)


@pytest.mark.parametrize("finished", [0, 1])  # the key being claimed, or one claimed later
@pytest.mark.parametrize("api", ["generate", "generate_followups"])
def test_a_key_finished_elsewhere_while_claiming_is_not_generated_again(tmp_path, monkeypatch, api, finished):
    reqs = [_request(messages=({"role": "user", "content": f"p{i}"},), tag=f"t{i}") for i in range(2)]
    _finished_elsewhere_on_first_claim(monkeypatch, tmp_path, reqs[finished])  # done as t0 is claimed
    backend = FakeBackend()
    gen = CachedGenerator(backend, tmp_path, progress=False, claim_size=1)
    if api == "generate":
        out = gen.generate(reqs)
    else:
        out = gen.generate_followups(reqs, lambda j, req, res: None)
    ours = 1 - finished
    assert [r.text for r in out] == ["theirs" if i == finished else f"out:p{i}" for i in range(2)]
    assert [t for call in backend.calls for t in call] == [f"t{ours}"]
    assert gen.stats["generated"] == 1 and gen.stats["cached"] == 1
    cache = GenerationCache(tmp_path, IDENTITY)
    assert len(cache) == 2 and cache.report["duplicates"] == 0


def test_backend_failure_keeps_completed_results(tmp_path):
    class Failing(FakeBackend):
        def generate(self, requests):
            if any(r.tag == "boom" for r in requests):
                raise RuntimeError("backend died")
            return super().generate(requests)

    reqs = [_request(messages=({"role": "user", "content": f"p{i}"},), tag=f"t{i}") for i in range(4)]
    reqs.append(_request(messages=({"role": "user", "content": "bad"},), tag="boom"))
    with pytest.raises(RuntimeError, match="backend died"):
        CachedGenerator(Failing(), tmp_path, progress=False).generate(reqs)
    assert len(GenerationCache(tmp_path, IDENTITY)) == 4  # chunks of 2 finished before the failure


def test_fully_cached_rerun_does_not_load_the_model(tmp_path):
    backend = LocalBackend("embedded", cache_dir=MODEL_CACHE)
    reqs = [_request(tag=str(i), messages=({"role": "user", "content": f"q{i}"},)) for i in range(3)]
    _append(GenerationCache(tmp_path, backend.identity), *reqs)
    gen = CachedGenerator(backend, tmp_path, progress=False)
    out = gen.generate(reqs)
    assert [r.text for r in out] == ["t-0", "t-1", "t-2"] and gen.stats["cached"] == 3
    assert not backend.loaded and backend._tokenizer is None


# --------------------------------------------------------------------------- SIGKILL resume
RESUME_SCRIPT = textwrap.dedent("""
    import json, sys
    from rrlib.llm import CachedGenerator, GenerationRequest, GenerationSettings, LocalBackend
    model_cache, gen_cache, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    backend = LocalBackend("embedded", cache_dir=model_cache, batch_size=1, dtype="float32")
    reqs = [GenerationRequest(({"role": "user", "content": f"Name one colour of soap number {i}."},),
                              GenerationSettings(max_new_tokens=6), "resume_test", "1", tag=str(i))
            for i in range(n)]
    gen = CachedGenerator(backend, gen_cache, progress=False)
    results = gen.generate(reqs)
    print(json.dumps({"stats": gen.stats, "texts": [r.text for r in results]}))
""")


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


@pytest.mark.slow
def test_sigkill_mid_generation_then_rerun_resumes_exactly(tmp_path):
    n = 8
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    gen_cache = tmp_path / "cache"
    identity = LocalBackend("embedded", cache_dir=MODEL_CACHE, dtype="float32").identity
    cache_file = GenerationCache(gen_cache, identity).path
    args = [sys.executable, str(script), str(MODEL_CACHE), str(gen_cache), str(n)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while len(_records(cache_file)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _records(cache_file)
    assert 2 <= len(before) < n, f"kill came too late or too early: {len(before)} records"
    done_before = {r["key"]: r for r in before}

    rerun = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    report = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert report["stats"]["generated"] == n - len(before)
    assert report["stats"]["cached"] == len(before)
    after = _records(cache_file)
    keys = [r["key"] for r in after]
    assert len(after) == n and len(set(keys)) == n, "records lost or duplicated"
    assert sorted(r["tag"] for r in after) == [str(i) for i in range(n)]
    for key, rec in done_before.items():  # completed ones kept, not regenerated
        assert next(r for r in after if r["key"] == key)["created"] == rec["created"]
    by_tag = {r["tag"]: r["text"] for r in after}
    assert report["texts"] == [by_tag[str(i)] for i in range(n)]
    # a third run: everything cached, nothing generated
    third = json.loads(subprocess.run(args, capture_output=True, text=True, timeout=300).stdout.splitlines()[-1])
    assert third["stats"] == dict(third["stats"], generated=0, cached=n)


# --------------------------------------------------------------------------- follow-ups
class StreamingFake(FakeBackend):
    """Streams results one by one and sends what the caller appends meanwhile (like a server)."""

    streams_appended = True

    def iter_generate(self, requests):
        sent = 0
        while sent < len(requests):  # len() again after every result: appended requests are sent too
            r = requests[sent]
            sent += 1
            self.calls.append([r.tag])
            yield sent - 1, GenerationResult(text=f"out:{r.messages[-1]['content']}", finish_reason="stop")


def _retry_until(limit: int):
    """Follow-up rule: ask again (new seed) until the seed reaches ``limit``."""

    def follow(j, req, res):
        if req.settings.seed >= limit:
            return None
        return _request(
            messages=req.messages, tag=req.tag, settings=GenerationSettings(0.3, 0.9, 64, req.settings.seed + 1)
        )

    return follow


@pytest.mark.parametrize("backend_cls", [FakeBackend, StreamingFake])
def test_follow_ups_are_generated_cached_and_deduplicated(tmp_path, backend_cls):
    backend = backend_cls()
    gen = CachedGenerator(backend, tmp_path, progress=False)
    reqs = [_request(messages=({"role": "user", "content": f"p{i}"},), tag=f"t{i}") for i in range(2)]
    reqs.append(reqs[0])  # the same request twice: generated once, both answered and followed
    out = gen.generate_followups(reqs, _retry_until(44), desc="x")
    seeds = [
        json.loads(x)["settings"]["seed"] for x in GenerationCache(tmp_path, IDENTITY).path.read_text().splitlines()
    ]
    assert sorted(seeds) == [42, 42, 43, 43, 44, 44]  # 2 distinct requests x 3 attempts, nothing twice
    assert len(out) == 3 + 2 * 3 and all(r is not None for r in out)
    assert gen.stats["generated"] == 6 and gen.stats["cached"] == 3  # t0's twin at each attempt
    if backend_cls is FakeBackend:  # no streaming: one round per attempt
        assert backend.calls == [["t0", "t1"], ["t0", "t1"], ["t0", "t1"]]
    else:  # each follow-up joins the running stream
        assert [c for call in backend.calls for c in call] == ["t0", "t1", "t0", "t1", "t0", "t1"]
    # a rerun: everything from the cache, nothing generated
    again = CachedGenerator(backend_cls(), tmp_path, progress=False)
    rerun = again.generate_followups(reqs, _retry_until(44))
    assert [r.text for r in rerun[:3]] == [r.text for r in out[:3]] and len(rerun) == len(out)
    assert again.stats["generated"] == 0 and not again.backend.calls


def test_retry_benchmark_replays_the_recorded_attempt_chains(tmp_path):
    """scripts/benchmark_retry_stream.py: one chain per first attempt, as many attempts as recorded."""
    import importlib.util

    from rrlib.prompts.postprocess import retry_settings

    spec = importlib.util.spec_from_file_location("brs", REPO / "scripts" / "benchmark_retry_stream.py")
    brs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(brs)
    first = _request(messages=({"role": "user", "content": "p0"},), tag="u0")
    other = _request(messages=({"role": "user", "content": "p1"},), tag="u1")
    cache = GenerationCache(tmp_path, IDENTITY)
    ok = GenerationResult(text="x", finish_reason="stop")
    retry = dataclasses.replace(first, settings=retry_settings(first.settings, 1))
    cache.append([(r.key(IDENTITY), r, ok) for r in (retry, first, other)])  # order in the file does not matter
    chains = brs.recorded_chains(tmp_path, "item_description", 0)
    assert [[r.tag for r in c] for c in chains] == [["u0", "u0"], ["u1"]]
    assert chains[0][0].key(IDENTITY) == first.key(IDENTITY) and chains[0][1].key(IDENTITY) == retry.key(IDENTITY)
    assert len(brs.recorded_chains(tmp_path, "item_description", 1)) == 1
    assert brs.recorded_chains(tmp_path, "user_profile", 0) == []
