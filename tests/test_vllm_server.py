"""A real serving engine in the loop (issue 22): notebooks 01-02 of the smoke preset with
TEACHER_BACKEND: server against a vLLM server (CPU build, ``make vllm``) that the test starts on
the embedded teacher, behind an API key. The generation cache and the key masking hold there too:
a second run of 02 with the same CACHE_DIR generates nothing, and the key is in no file of either
run folder or of the cache. Skipped, with the reason, where ``.venv-vllm`` is absent (vLLM is too
large for the test venv). vLLM's CPU build takes minutes to start (README: 222 s measured)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from rrlib.llm.engines import vllm_python

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "RRLIB_TEST_VLLM_KEY"
SECRET = "sk-VLLMCANARY-0123456789abcdefghij"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        vllm_python() is None,
        reason="vLLM is not installed: `make vllm` creates .venv-vllm (its CPU build); this test needs it",
    ),
]


def _everything_under(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.mark.timeout(2400)
def test_notebook_02_against_a_vllm_server_caches_and_masks(tmp_path, monkeypatch, capsys):
    import pandas as pd

    from rrlib.__main__ import main
    from rrlib.llm.engines import EngineConfig, EngineProcess, engine_spec
    from rrlib.llm.local import resolve_dtype

    monkeypatch.setenv(KEY_ENV, SECRET)
    cache, outputs = tmp_path / "cache", tmp_path / "outputs"
    dtype = str(resolve_dtype("auto")).replace("torch.", "")  # as TEACHER_ENGINE vllm picks it
    spec = engine_spec(EngineConfig("vllm", model="embedded", dtype=dtype, threads=2, parallel=16), cache)
    command = [*spec.command, "--api-key", SECRET]
    start = time.monotonic()
    with EngineProcess(
        command, name="vllm", health_path=spec.health_path, env=spec.env, startup_timeout_s=900,
        log_path=tmp_path / "vllm.log",
    ) as proc:  # fmt: skip
        startup = time.monotonic() - start
        common = ["--only", "01,02", "--outputs", str(outputs), "--no-progress", "-f", "params/smoke.yaml"]
        common += ["-p", "TEACHER_BACKEND", "server", "-p", "SERVER_URL", proc.url, "-p", "SERVER_MODEL", "teacher"]
        common += ["-p", "SERVER_API_KEY_ENV", KEY_ENV, "-p", "SERVER_GRAMMAR", "structured_outputs"]
        common += ["-p", "CACHE_DIR", str(cache)]
        t0 = time.monotonic()
        assert main(["run", "--run-id", "first", *common]) == 0, capsys.readouterr().err[-3000:]
        first_s = time.monotonic() - t0
        assert main(["run", "--run-id", "again", *common]) == 0, capsys.readouterr().err[-3000:]
    print(f"vLLM startup {startup:.0f} s, notebooks 01-02 {first_s:.0f} s, whole test {time.monotonic() - start:.0f} s")

    first = json.loads((outputs / "first" / "manifest.json").read_text())["notebooks"]["02_item_descriptions"]
    again = json.loads((outputs / "again" / "manifest.json").read_text())["notebooks"]["02_item_descriptions"]
    assert first["status"] == again["status"] == "completed"
    descriptions = pd.read_parquet(outputs / "first" / "enrich" / "item_descriptions.parquet")
    assert descriptions["description"].fillna("").str.strip().ne("").sum() > 0, "vLLM wrote no description"
    # the cache: the second run asked the server for nothing
    tokens_first, tokens_again = first.get("tokens") or {}, again.get("tokens") or {}
    assert tokens_first.get("generated", 0) > 0 and tokens_again.get("generated", 1) == 0, (tokens_first, tokens_again)
    pd.testing.assert_frame_equal(
        descriptions, pd.read_parquet(outputs / "again" / "enrich" / "item_descriptions.parquet")
    )
    # the key: in no file of the runs or the cache, nor in what the runner printed
    captured = capsys.readouterr()
    for folder in (outputs, cache):
        assert SECRET not in _everything_under(folder)
    tables = [pd.read_parquet(p).to_json() for p in sorted(outputs.rglob("*.parquet"))]
    assert SECRET not in "\n".join(tables) and SECRET not in captured.out + captured.err
