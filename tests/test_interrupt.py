"""Interrupting a notebook kernel (SIGINT, what JupyterLab's Kernel > Interrupt sends) during teacher
generation stops the work within seconds, keeps every finished result in the generation cache,
cancels the requests in flight (the server sees their connections close), releases the engine,
and leaves the kernel usable. A fake OpenAI-compatible engine (tests/fake_engine.py) answers the
first requests at once and holds the others for two minutes."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fake_engine.py"
N_FAST = 4


def _requests_code(n: int = 12) -> str:
    return f"""
from rrlib.llm import CachedGenerator, GenerationRequest, GenerationSettings
reqs = [GenerationRequest(({{"role": "user", "content": f"q{{i}} delay={{0.05 if i < {N_FAST} else 120}}"}},),
                          GenerationSettings(max_new_tokens=8), "interrupt_test", "1") for i in range({n})]
"""


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    from jupyter_client.manager import start_new_kernel

    from rrlib.workbook.runner import choose_kernel

    monkeypatch.setenv("RRLIB_ENGINE_DIR", str(tmp_path / "engines"))
    km, kc = start_new_kernel(kernel_name=choose_kernel(), cwd=str(ROOT))
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _execute(kc, code: str, timeout: float = 60) -> dict:
    msg_id = kc.execute(code)
    return _reply(kc, msg_id, timeout)


def _reply(kc, msg_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg["content"]
    raise TimeoutError(f"no reply within {timeout} s")


def _cached(cache: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in (cache / "generations").glob("*.jsonl"))


def _log(path: Path, what: str) -> int:
    return sum(line.startswith(what) for line in path.read_text().splitlines()) if path.is_file() else 0


def _interrupt_mid_generation(km, kc, setup: str, cache: Path, log: Path) -> float:
    assert _execute(kc, setup)["status"] == "ok"
    msg_id = kc.execute(f"gen = CachedGenerator(backend, {str(cache)!r})\nresults = gen.generate(reqs, desc='teacher')")
    deadline = time.monotonic() + 90
    while _cached(cache) < N_FAST or _log(log, "done") < N_FAST:
        assert time.monotonic() < deadline, "the first answers never reached the cache"
        time.sleep(0.1)
    time.sleep(1.0)  # the next requests are now in flight, held by the engine
    start = time.monotonic()
    km.interrupt_kernel()
    reply = _reply(kc, msg_id, timeout=60)
    stopped_in = time.monotonic() - start
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    return stopped_in


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_interrupt_stops_server_generation_keeps_the_cache_and_the_kernel(kernel, tmp_path):
    import sys as _sys

    _sys.path.insert(0, str(ROOT / "tests"))
    from fake_engine import serve

    km, kc = kernel
    log, cache = tmp_path / "engine.log", tmp_path / "cache"
    server = serve(0, str(log))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        setup = _requests_code() + (
            "from rrlib.llm.server import ServerBackend\n"
            f"backend = ServerBackend({url!r}, 'teacher', api_key_env='', concurrency={N_FAST}, timeout_s=600, retries=0)"
        )
        stopped_in = _interrupt_mid_generation(km, kc, setup, cache, log)
        assert stopped_in < 10, f"the kernel took {stopped_in:.1f} s to stop"
        deadline = time.monotonic() + 10
        while _log(log, "cancelled") < N_FAST and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _log(log, "cancelled") == N_FAST, "the requests in flight were not cancelled"
        assert _cached(cache) == N_FAST
        # the kernel is usable, and a rerun reuses the finished results and generates only the rest
        out = _execute(
            kc,
            f"from rrlib.llm import CachedGenerator\nprint(1 + 1, len(CachedGenerator(backend, {str(cache)!r}).cache))",
        )
        assert out["status"] == "ok"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_interrupt_releases_the_shared_engine_which_then_stops_when_idle(kernel, tmp_path):
    from rrlib.llm.shared import running_engines

    km, kc = kernel
    log, cache, engines = tmp_path / "engine.log", tmp_path / "cache", tmp_path / "engines"
    setup = _requests_code() + (
        "import sys\n"
        "from rrlib.llm.engine_backend import EngineBackend\n"
        "from rrlib.llm.engines import EngineConfig, EngineSpec\n"
        f"spec = EngineSpec(EngineConfig('llama_server', parallel={N_FAST}, startup_timeout_s=60), "
        f"[sys.executable, {str(FAKE)!r}, '--port', '{{port}}', '--log', {str(log)!r}], "
        "{'backend': 'engine', 'engine': 'fake', 'name': 'fake'}, '/health')\n"
        "backend = EngineBackend(spec, timeout_s=600, retries=0, shared_idle_s=2.0)"
    )
    stopped_in = _interrupt_mid_generation(km, kc, setup, cache, log)
    assert stopped_in < 10, f"the kernel took {stopped_in:.1f} s to stop"
    assert _cached(cache) == N_FAST
    deadline = time.monotonic() + 10
    while _log(log, "cancelled") < N_FAST and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _log(log, "cancelled") == N_FAST, "the requests in flight were not cancelled"
    # released: the supervisor stops the idle engine (2 s) and exits
    deadline = time.monotonic() + 20
    while running_engines(engines) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running_engines(engines), "the shared engine kept running after the interrupt"
    # the kernel is usable, and the next generation starts the engine again
    again = (
        "again = [GenerationRequest(({'role': 'user', 'content': 'again delay=0.05'},), "
        "GenerationSettings(max_new_tokens=8), 'interrupt_test', '1')]\n"
        "assert gen.generate(reqs[:4] + again)[-1].text == 'answer to again delay=0.05'"
    )
    out = _execute(kc, again, timeout=60)
    assert out["status"] == "ok", out
    assert _log(log, "done again") == 1
    _execute(kc, "backend.close()")


if sys.platform != "linux":  # flock, process groups and SIGINT delivery as on the project's machines
    pytestmark = pytest.mark.skip(reason="Linux only")


def _cores_used(pid: int, *, after_s: float, over_s: float) -> float:
    """CPU cores a process used over ``over_s`` seconds, starting ``after_s`` from now; 0 once it
    has exited (the shared engine's supervisor may stop it as soon as no one holds it)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        time.sleep(after_s)
        before = sum(proc.cpu_times()[:2])
        time.sleep(over_s)
        return (sum(proc.cpu_times()[:2]) - before) / over_s
    except psutil.NoSuchProcess:
        return 0.0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_interrupt_cancels_a_real_llama_server_generation(kernel, tmp_path):
    """The same with the real llama-server of `make server`: the slots stop decoding at once."""
    from rrlib.llm.engines import not_installed_reason
    from rrlib.llm.shared import running_engines

    why = not_installed_reason("llama_server")
    if why:
        pytest.skip(why)

    km, kc = kernel
    cache, engines = tmp_path / "cache", tmp_path / "engines"
    setup = (
        "from rrlib.config.params import Config\n"
        "from rrlib.llm import CachedGenerator, GenerationRequest, GenerationSettings, teacher_backend\n"
        f"cfg = Config.full({{'CACHE_DIR': {str(cache)!r}, 'TEACHER_ENGINE': 'llama_server', "
        "'TEACHER_ENGINE_WEIGHTS': 'q4_1', 'TEACHER_ENGINE_IDLE_S': 3.0, 'TEACHER_ENGINE_PARALLEL': 8})\n"
        "backend = teacher_backend(cfg)\n"
        # the engine sends the longest prompts first: the short answers get the long prompts
        f"reqs = [GenerationRequest(({{'role': 'user', 'content': ('Name one colour. ' * 20) + str(i)}},), "
        f"GenerationSettings(max_new_tokens=4), 'interrupt_real', '1') for i in range({N_FAST})]\n"
        "reqs += [GenerationRequest(({'role': 'user', 'content': f'Tell a long story {i}.'},), "
        "GenerationSettings(max_new_tokens=2000, temperature=0.8, seed=i), 'interrupt_real', '1') for i in range(12)]\n"
    )
    assert _execute(kc, setup, timeout=120)["status"] == "ok"
    msg_id = kc.execute(f"gen = CachedGenerator(backend, {str(cache)!r})\nresults = gen.generate(reqs, desc='teacher')")
    deadline = time.monotonic() + 300
    while _cached(cache) < N_FAST:
        assert time.monotonic() < deadline, "the first answers never reached the cache"
        time.sleep(0.2)
    time.sleep(2.0)  # the long stories are being decoded now
    state = running_engines(engines)[0]
    start = time.monotonic()
    km.interrupt_kernel()
    reply = _reply(kc, msg_id, timeout=60)
    stopped_in = time.monotonic() - start
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
    assert stopped_in < 10, f"the kernel took {stopped_in:.1f} s to stop"
    assert _cached(cache) == N_FAST
    busy = _cores_used(state["engine_pid"], after_s=1.0, over_s=3.0)
    assert busy < 0.5, f"llama-server still used {busy:.2f} cores after the interrupt: the requests were not cancelled"
    deadline = time.monotonic() + 30
    while running_engines(engines) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not running_engines(engines), "the shared llama-server kept running after the interrupt"
    assert _execute(kc, "print(len(gen.cache))")["status"] == "ok"
