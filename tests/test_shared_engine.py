"""One teacher engine per model and machine: every backend (in this process or another) with the
same engine identity and settings uses one engine, started once by a supervisor and stopped when
no process has generated for TEACHER_ENGINE_IDLE_S; other settings get an engine of their own.
The engine is tests/fake_engine.py, started through the real supervisor."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rrlib.llm.base import GenerationRequest, GenerationSettings
from rrlib.llm.engine_backend import EngineBackend
from rrlib.llm.engines import EngineConfig, EngineSpec
from rrlib.llm.shared import engine_key, read_state, running_engines

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fake_engine.py"
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="flock and process sessions as on Linux")


def _spec(log: Path, parallel: int = 2) -> EngineSpec:
    return EngineSpec(
        EngineConfig("llama_server", parallel=parallel, startup_timeout_s=60),
        [sys.executable, str(FAKE), "--port", "{port}", "--log", str(log)],
        {"backend": "engine", "engine": "fake", "name": "fake"},
        "/health",
    )


def _req(text: str) -> GenerationRequest:
    return GenerationRequest(({"role": "user", "content": text},), GenerationSettings(max_new_tokens=4), "t", "1")


def _wait(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


@pytest.fixture
def engines(tmp_path, monkeypatch):
    folder = tmp_path / "engines"
    monkeypatch.setenv("RRLIB_ENGINE_DIR", str(folder))
    yield folder
    from rrlib.llm.shared import stop_engine

    for state in running_engines(folder):
        stop_engine(state["key"], folder)


def test_the_key_follows_identity_and_serving_settings_not_the_model_path(tmp_path):
    a = _spec(tmp_path / "log")
    b = dataclasses.replace(a, config=dataclasses.replace(a.config, model="/elsewhere/model.gguf"))
    c = dataclasses.replace(a, config=dataclasses.replace(a.config, parallel=8))
    d = dataclasses.replace(a, identity={**a.identity, "model_sha256": "other"})
    assert engine_key(a) == engine_key(b)
    assert len({engine_key(a), engine_key(c), engine_key(d)}) == 3


def test_two_backends_share_one_engine_which_stops_when_idle(engines, tmp_path):
    log = tmp_path / "engine.log"
    first = EngineBackend(_spec(log), timeout_s=60, retries=0, shared_idle_s=1.5)
    second = EngineBackend(_spec(log), timeout_s=60, retries=0, shared_idle_s=1.5)
    assert first.generate([_req("a")])[0].text == "answer to a"
    state = read_state(engine_key(first.spec), engines)
    assert state is not None and first._lease is None  # released after generating
    assert second.generate([_req("b")])[0].text == "answer to b"
    assert read_state(engine_key(second.spec), engines)["engine_pid"] == state["engine_pid"]
    assert len(running_engines(engines)) == 1
    # held while a generation runs: no idle stop under it
    second.start()
    time.sleep(3.0)
    assert running_engines(engines), "the engine stopped under a process holding its lease"
    second.release()
    assert _wait(lambda: not running_engines(engines), 15), "the idle engine was not stopped"
    # the next generation starts a fresh one
    assert first.generate([_req("c")])[0].text == "answer to c"
    assert read_state(engine_key(first.spec), engines)["engine_pid"] != state["engine_pid"]


def test_other_settings_get_their_own_engine(engines, tmp_path):
    log = tmp_path / "engine.log"
    a = EngineBackend(_spec(log, parallel=2), timeout_s=60, retries=0, shared_idle_s=30)
    b = EngineBackend(_spec(log, parallel=3), timeout_s=60, retries=0, shared_idle_s=30)
    a.generate([_req("a")])
    b.generate([_req("b")])
    assert len(running_engines(engines)) == 2


def test_a_second_process_uses_the_engine_this_one_started(engines, tmp_path):
    log = tmp_path / "engine.log"
    mine = EngineBackend(_spec(log), timeout_s=60, retries=0, shared_idle_s=30)
    mine.generate([_req("here")])
    pid = read_state(engine_key(mine.spec), engines)["engine_pid"]
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from test_shared_engine import _req, _spec
        from pathlib import Path
        from rrlib.llm.engine_backend import EngineBackend
        from rrlib.llm.shared import engine_key, read_state
        be = EngineBackend(_spec(Path({str(log)!r})), timeout_s=60, retries=0, shared_idle_s=30)
        print(be.generate([_req("there")])[0].text)
        print(read_state(engine_key(be.spec))["engine_pid"])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    text, other_pid = out.stdout.split()[-4:-1], int(out.stdout.split()[-1])
    assert "there" in " ".join(text) and other_pid == pid
    assert len(running_engines(engines)) == 1


def test_an_engine_that_dies_is_reported_with_its_log(engines, tmp_path):
    import os
    import signal

    from rrlib.errors import ServerError

    log = tmp_path / "engine.log"
    be = EngineBackend(_spec(log), timeout_s=60, retries=0, shared_idle_s=30)
    be.generate([_req("a")])
    state = read_state(engine_key(be.spec), engines)
    be.start()
    os.kill(state["engine_pid"], signal.SIGKILL)
    assert _wait(lambda: not running_engines(engines), 10)
    with pytest.raises(ServerError, match="died while serving"):
        be.check_alive()
    be.release()
    assert be.generate([_req("b")])[0].text == "answer to b"  # a fresh engine


def test_the_poll_level_is_a_setting_with_an_environment_override(monkeypatch, tmp_path):
    from rrlib.llm.engines import LLAMA_SERVER_POLL

    assert EngineConfig("llama_server").poll == LLAMA_SERVER_POLL
    monkeypatch.setenv("RRLIB_LLAMA_POLL", "0")
    assert EngineConfig("llama_server").poll == 0
    a = _spec(tmp_path / "log")
    b = dataclasses.replace(a, config=dataclasses.replace(a.config, poll=100))
    assert engine_key(a) != engine_key(b)  # another poll level is another engine
