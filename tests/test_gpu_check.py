"""scripts/gpu_check.sh (issue 22): on a GPU machine it checks CUDA torch, bitsandbytes 4/8-bit
loads, LoRA steps in bf16/fp16, Yes/No scoring against the CPU, the smoke preset on the GPU and
vLLM. Here, with no GPU, its --dry-run runs the same steps on the CPU (tiny student) and must
print one PASS/SKIP line with a figure per step."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
STEPS = ["torch", "bnb-8bit", "bnb-4bit", "lora-bf16", "lora-fp16", "yes-no", "smoke", "vllm"]
#: the tiny student is built once per machine and shared with the other slow tests' caches
SHARED_CACHE = Path(tempfile.gettempdir()) / "rrlib-test-shared-cache"
LINE = re.compile(r"^(PASS|FAIL|SKIP)\s+(\S+)\s+(.+)$")


def test_every_step_is_documented_and_an_unknown_step_is_refused():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    assert [name for name, _ in gpu_check.STEPS] == STEPS
    for name in STEPS:
        assert re.search(rf"^    {re.escape(name)}\s", gpu_check.__doc__, re.M), f"{name} is not in the docstring"
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--only", "nosuch"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "unknown step(s) ['nosuch']" in out.stderr


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_dry_run_passes_every_step_on_the_cpu():
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_LIMIT_S="1100")
    out = subprocess.run(
        [str(SCRIPT), "--dry-run", "--cache", str(SHARED_CACHE)], capture_output=True, text=True, env=env, timeout=1150
    )
    lines = {m.group(2): (m.group(1), m.group(3)) for m in map(LINE.match, out.stdout.splitlines()) if m}
    print(out.stdout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert list(lines) == STEPS, f"steps printed: {list(lines)}"
    for name, (status, figure) in lines.items():
        want = {"PASS", "SKIP"} if name == "vllm" else {"PASS"}
        assert status in want, f"{name}: {status} {figure}"
        assert re.search(r"\d", figure), f"{name} printed no figure: {figure}"
    assert "Linear8bitLt" in lines["bnb-8bit"][1] and "Linear4bit" in lines["bnb-4bit"][1]
    assert "tolerance 0.02" in lines["yes-no"][1]
    if lines["vllm"][0] == "SKIP":
        assert "not installed" in lines["vllm"][1] or "dry run" in lines["vllm"][1]
    assert re.search(r"gpu_check: \d PASS, 0 FAIL, [01] SKIP in \d+ s", out.stdout)
