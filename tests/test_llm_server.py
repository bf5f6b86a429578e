"""The OpenAI-compatible server backend: retries, clear errors, API-key hygiene and an intact
cache against scripted loopback servers, then real generations from a llama.cpp server."""

from __future__ import annotations

import json
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler

import pytest
from loopback import LoopbackServer

from rrlib.config.params import Config, ParamError
from rrlib.llm import (
    CachedGenerator,
    GenerationCache,
    GenerationRequest,
    GenerationSettings,
    ServerBackend,
    ServerError,
    teacher_backend,
)
from rrlib.llm.embedded import embedded_gguf


def make_teacher(params, cache_dir):
    """The teacher backend of ``params`` over the schema defaults, caching under ``cache_dir``."""
    return teacher_backend(Config.full({**params, "CACHE_DIR": str(cache_dir)}))


SECRET = "sk-test-DO-NOT-LEAK-0123456789"


def _request(i: int, **settings) -> GenerationRequest:
    return GenerationRequest(
        ({"role": "user", "content": f"Describe product {i} in five words."},),
        GenerationSettings(**({"max_new_tokens": 16} | settings)),
        "t",
        "1",
        tag=str(i),
    )


class Scripted(LoopbackServer):
    """A loopback OpenAI-like server. ``plan(body) -> (status, payload, delay_s)`` per chat request."""

    def __init__(self, plan):
        self.plan = plan
        self.chat_calls: list[dict] = []
        self.auth: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output quiet
                pass

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                outer.auth.append(self.headers.get("Authorization", ""))
                self._send(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.auth.append(self.headers.get("Authorization", ""))
                outer.chat_calls.append(body)
                status, payload, delay = outer.plan(body, len(outer.chat_calls))
                if delay:
                    time.sleep(delay)
                try:
                    self._send(status, payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        super().__init__(Handler)


def ok(text: str) -> dict:
    return {
        "model": "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5},
    }


def backend(url: str, **kw) -> ServerBackend:
    return ServerBackend(url, "fake-model", api_key_env="RRLIB_TEST_KEY", backoff_s=0.01, **({"retries": 3} | kw))


def test_500_then_200_is_retried(monkeypatch):
    monkeypatch.setenv("RRLIB_TEST_KEY", SECRET)
    plan = lambda body, n: (500, {"error": {"message": "overloaded"}}, 0) if n == 1 else (200, ok("fine"), 0)
    with Scripted(plan) as srv:
        out = backend(srv.url).generate([_request(0)])
    assert out[0].text == "fine" and out[0].completion_tokens == 5 and out[0].prompt_tokens == 11
    assert len(srv.chat_calls) == 2
    assert srv.auth and all(a == f"Bearer {SECRET}" for a in srv.auth)
    sent = srv.chat_calls[0]
    assert sent["model"] == "fake-model" and sent["max_tokens"] == 16 and sent["temperature"] == 0.0


def test_429_is_retried_then_other_4xx_fails_at_once_with_server_message():
    plan = lambda body, n: (
        (429, {"error": {"message": "slow down"}}, 0)
        if n == 1
        else (400, {"error": {"message": "max_tokens is too large"}}, 0)
    )
    with Scripted(plan) as srv:
        with pytest.raises(ServerError, match=r"HTTP 400: max_tokens is too large"):
            backend(srv.url).generate([_request(0)])
    assert len(srv.chat_calls) == 2  # one retry for 429, none for 400


def test_permanent_500_gives_clear_error_and_cache_stays_intact(tmp_path, monkeypatch):
    monkeypatch.setenv("RRLIB_TEST_KEY", SECRET)
    broken = {"value": True}

    def plan(body, n):
        text = body["messages"][-1]["content"]
        if "product 2" in text and broken["value"]:
            return 500, {"error": {"message": f"engine crashed (key was {SECRET})"}}, 0
        return 200, ok(f"answer to {text}"), 0

    reqs = [_request(i) for i in range(4)]
    with Scripted(plan) as srv:
        be = backend(srv.url, concurrency=1)
        gen = CachedGenerator(be, tmp_path, progress=False)
        with pytest.raises(ServerError) as err:
            gen.generate(reqs)
        message = str(err.value)
        assert srv.url in message and "HTTP 500" in message and "4 attempts" in message
        assert SECRET not in message and "***" in message
        cache = GenerationCache(tmp_path, be.identity)
        # requests 0 and 1 finished before; 3 may have started before the failure stopped sending
        assert cache.report["corrupt"] == [] and len(cache) in (2, 3)
        n_saved = len(cache)
        broken["value"] = False  # server repaired: rerun generates only the missing two
        gen2 = CachedGenerator(backend(srv.url), tmp_path, progress=False)
        out = gen2.generate(reqs)
    assert [r.text for r in out] == [f"answer to Describe product {i} in five words." for i in range(4)]
    assert gen2.stats["generated"] == 4 - n_saved and gen2.stats["cached"] == n_saved
    stored = "".join(p.read_text() for p in (tmp_path / "generations").glob("*.jsonl"))
    assert SECRET not in stored and SECRET not in json.dumps(be.identity)
    assert be.identity == {"backend": "server", "name": "fake-model", "served_model": "fake-model"}


def test_requests_in_flight_at_a_failure_are_still_saved(tmp_path):
    answered = set()

    def plan(body, n):
        text = body["messages"][-1]["content"]
        if "product 1 " in text:
            return 503, {"error": {"message": "down"}}, 0
        answered.add(text)
        return 200, ok(text), 0.3

    with Scripted(plan) as srv:
        be = backend(srv.url, concurrency=3, retries=0)
        with pytest.raises(ServerError, match="HTTP 503: down"):
            CachedGenerator(be, tmp_path, progress=False).generate([_request(i) for i in range(8)])
        saved = GenerationCache(tmp_path, be.identity)
    assert len(saved) == len(answered) >= 2  # every answer the server gave is in the cache
    assert len(srv.chat_calls) < 8  # requests not yet sent were cancelled


def test_timeouts_are_retried_then_reported():
    plan = lambda body, n: (200, ok("late"), 1.5)
    with Scripted(plan) as srv:
        with pytest.raises(ServerError, match=r"timed out after 0.3 s"):
            backend(srv.url, timeout_s=0.3, retries=1).generate([_request(0)])
    assert len(srv.chat_calls) == 2


def test_server_down_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ServerError, match=rf"{url}/chat/completions failed after 3 attempts.*connection failed"):
        backend(url, retries=2).generate([_request(0)])


def test_wrong_model_name_is_a_clear_error():
    with Scripted(lambda body, n: (200, ok("x"), 0)) as srv:
        # a server with one model serves it whatever name is asked (llama.cpp); two models must match
        assert backend(srv.url).identity["served_model"] == "fake-model"
    be = backend("http://127.0.0.1:9/v1")
    be._request = lambda method, path, payload=None: {"data": [{"id": "a"}, {"id": "b"}]}
    with pytest.raises(ServerError, match=r"SERVER_MODEL='fake-model' is not served .* \['a', 'b'\]"):
        _ = be.identity


def test_make_backend_rejects_bad_server_params_before_generating(tmp_path):
    with pytest.raises(ParamError, match="SERVER_MODEL is empty"):
        make_teacher({"TEACHER_BACKEND": "server"}, tmp_path)
    with pytest.raises(ParamError, match="not an http"):
        make_teacher({"TEACHER_BACKEND": "server", "SERVER_MODEL": "m", "SERVER_URL": "localhost:8080"}, tmp_path)
    with pytest.raises(ParamError, match="SERVER_CONCURENCY"):
        make_teacher({"TEACHER_BACKEND": "server", "SERVER_CONCURENCY": 4}, tmp_path)
    be = make_teacher({"TEACHER_BACKEND": "server", "SERVER_MODEL": "m", "SERVER_CONCURRENCY": 3}, tmp_path)
    assert isinstance(be, ServerBackend) and be.concurrency == 3 and be.base_url == "http://127.0.0.1:8080/v1"


def test_long_prompt_is_cut_in_the_middle_of_the_user_message():
    be = backend("http://127.0.0.1:9/v1", max_prompt_tokens=200)
    user = "TASK: describe. " + "review text " * 400 + "ANSWER FORMAT: one line."
    msgs, truncated = be.fit_prompt([{"role": "system", "content": "SYSTEM"}, {"role": "user", "content": user}], 200)
    assert truncated and msgs[0]["content"] == "SYSTEM" and be.count_tokens(msgs) <= 200
    assert msgs[1]["content"].startswith("TASK: describe.") and msgs[1]["content"].endswith("one line.")
    assert "[...]" in msgs[1]["content"]


# --------------------------------------------------------------------------- real llama.cpp server
@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """llama-cpp-python's server on loopback, started by the workbook's launcher: a server that
    dies (e.g. SIGILL from a binary built for instructions this CPU refuses) fails the test with
    its signal and the end of its log, not with 'connection failed'."""
    from rrlib.llm.engines import EngineProcess, not_installed_reason

    reason = not_installed_reason("llama_cpp_python")
    if reason:
        pytest.skip(reason)
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(embedded_gguf()),
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--n_ctx",
        "2048",
        "--model_alias",
        "smollm2",
        "--n_threads",
        "2",
    ]
    proc = EngineProcess(
        cmd,
        name="llama_cpp.server",
        health_path="/v1/models",
        startup_timeout_s=180,
        log_path=tmp_path_factory.mktemp("llama_server") / "server.log",
    )
    try:
        proc.start()
    except ServerError as e:
        pytest.fail(str(e))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.slow
@pytest.mark.server
def test_real_llama_cpp_server_generates_and_caches(llama_server, tmp_path):
    params = {
        "TEACHER_BACKEND": "server",
        "SERVER_URL": llama_server.url,
        "SERVER_MODEL": "smollm2",
        "SERVER_CONCURRENCY": 2,
        "SERVER_API_KEY_ENV": "RRLIB_UNSET_KEY_ENV",
    }
    be = make_teacher(params, tmp_path)
    assert be.identity == {"backend": "server", "name": "smollm2", "served_model": "smollm2"}
    reqs = [_request(i, max_new_tokens=12) for i in range(3)] + [
        _request(0, max_new_tokens=12, temperature=0.7, top_p=0.9, seed=5)
    ]
    be.liveness = llama_server.check_alive  # a crash mid-run names its signal and log
    gen = CachedGenerator(be, tmp_path, progress=False)
    out = gen.generate(reqs)
    assert all(r.text and 0 < r.completion_tokens <= 12 and r.prompt_tokens > 5 for r in out)
    assert all(r.finish_reason in ("stop", "length") for r in out)
    assert gen.stats["generated"] == 4 and gen.stats["completion_tokens"] == sum(r.completion_tokens for r in out)
    # greedy decoding through the server is repeatable (bypassing the cache)
    assert be.generate(reqs[:1])[0].text == out[0].text
    # a rerun is served from the cache without any request
    gen2 = CachedGenerator(make_teacher(params, tmp_path), tmp_path, progress=False)
    gen2.backend._request = lambda *a, **k: (_ for _ in ()).throw(AssertionError("server was called"))
    gen2.backend._identity = be.identity
    assert [r.text for r in gen2.generate(reqs)] == [r.text for r in out] and gen2.stats["cached"] == 4


def test_a_retry_is_sent_while_the_other_requests_still_run(tmp_path):
    """generate_checked on a server: the retry of an unusable answer fills the slot it freed at
    once, instead of waiting for the slowest request of its round; same attempts and outputs."""
    from rrlib.prompts.postprocess import clean_output, generate_checked, prompt_text_of

    arrivals: list[tuple[str, int, float]] = []

    def plan(body, n):
        text, seed = body["messages"][-1]["content"], body["seed"]
        arrivals.append((text, seed, time.monotonic()))
        if "product 0 " in text:
            return 200, ok("A slow answer that is fine and long enough to keep."), 1.0
        if "product 1 " in text and seed == 42:
            return 200, ok(""), 0  # unusable: retried with seed 43
        return 200, ok("A quick answer that is fine and long enough to keep."), 0

    check = lambda req, res: clean_output(res.text, word_budget=25, prompt_text=prompt_text_of(req))
    reqs = [_request(i, temperature=0.0, seed=42) for i in range(2)]
    with Scripted(plan) as srv:
        gen = CachedGenerator(backend(srv.url, concurrency=2), tmp_path, progress=False)
        assert gen.streams_followups
        outs = generate_checked(gen, reqs, check, max_retries=2)
    slow_done = arrivals[0][2] + 1.0 if "product 0 " in arrivals[0][0] else arrivals[1][2] + 1.0
    retry = [t for text, seed, t in arrivals if "product 1 " in text and seed == 43]
    assert len(retry) == 1 and retry[0] < slow_done - 0.5  # sent while product 0 was still running
    assert [o.attempts for o in outs] == [1, 2] and [o.status for o in outs] == ["ok", "ok"]
