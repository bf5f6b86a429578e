"""Flags that need hardware this machine may not have (issue 22): 4-bit and 8-bit weights load
through bitsandbytes on a CUDA GPU or on a bitsandbytes CPU backend. Where neither exists, the
flag fails before any work starts, in `validate`, in the runner's preflight and in
scripts/train.py, and again at model load, with an error naming the flag and the fix."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import rrlib.llm.local as local
from rrlib.errors import DeviceError, ModelLoadError, ParamError, RRLibError

ROOT = Path(__file__).resolve().parents[1]
NO_BACKEND = "bitsandbytes 0.44.1 has no working CPU backend (RuntimeError: CUDA required)"


@pytest.fixture
def no_quantization_here(monkeypatch):
    """This machine as one without a GPU and with a bitsandbytes that has no CPU backend."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(local, "bitsandbytes_cpu_support", lambda: NO_BACKEND)


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".")[:2] if x.isdigit())


def test_the_installed_bitsandbytes_runs_4bit_and_8bit_on_this_cpu():
    """The finding recorded in docs/scale.md: bitsandbytes >= 0.48 has a CPU backend, and the
    probe (a quantized 64x64 layer of each kind against the float layer) passes with it."""
    version = importlib.metadata.version("bitsandbytes")
    problem = local.bitsandbytes_cpu_support()
    if _version_tuple(version) >= (0, 48):
        assert problem == "", f"bitsandbytes {version}: {problem}"
        local.check_quantization("4bit")
        local.check_quantization("8bit", where="STUDENT_QUANTIZATION")
    else:
        assert problem, f"bitsandbytes {version} predates its CPU backend, yet the probe passed"


def test_the_error_names_the_flag_and_the_fix(no_quantization_here, tmp_path):
    with pytest.raises(DeviceError) as e:
        local.check_quantization("4bit", where="TEACHER_QUANTIZATION")
    text = str(e.value)
    assert "TEACHER_QUANTIZATION='4bit'" in text and NO_BACKEND in text
    assert "Set TEACHER_QUANTIZATION: none" in text and "bitsandbytes>=0.48" in text and "CUDA GPU" in text
    # one class for every caller: a parameter error (validate exits 2) and a model-load error
    assert isinstance(e.value, ParamError) and isinstance(e.value, ModelLoadError) and isinstance(e.value, RRLibError)
    with pytest.raises(DeviceError, match="STUDENT_QUANTIZATION='8bit'"):
        local.check_quantization("8bit", where="STUDENT_QUANTIZATION")
    local.check_quantization("none")  # unquantized needs nothing


def test_model_load_refuses_before_reading_weights(no_quantization_here, tmp_path):
    with pytest.raises(DeviceError, match="TEACHER_QUANTIZATION='4bit' needs a CUDA GPU or a bitsandbytes"):
        local.load_model_and_tokenizer("embedded", quantization="4bit", cache_dir=tmp_path)
    assert not (tmp_path / "models").exists(), "the model was touched before the flag was checked"


@pytest.mark.parametrize("preset", ["paper_beauty", "exp3rt_paper_imdb"])
def test_runner_refuses_a_preset_before_any_notebook(no_quantization_here, tmp_path, preset):
    """paper_beauty: the teacher (4bit) is the first flag; exp3rt_paper_imdb: its teacher is a
    server (no local quantization), its student 4-bit QLoRA."""
    from rrlib.workbook.runner import plan_run

    flag = "TEACHER_QUANTIZATION='4bit'" if preset == "paper_beauty" else "STUDENT_QUANTIZATION='4bit'"
    with pytest.raises(DeviceError, match=flag):
        plan_run([ROOT / "params" / f"{preset}.yaml"], outputs_dir=tmp_path / "outputs")
    assert not (tmp_path / "outputs").exists(), "the runner wrote something before refusing"
    # the same preset with the flags off plans (the data it would read aside)
    plan = plan_run(
        [ROOT / "params" / f"{preset}.yaml"],
        {"TEACHER_QUANTIZATION": "none", "STUDENT_QUANTIZATION": "none"},
        outputs_dir=tmp_path / "outputs",
        only="02,06",
    )
    assert plan.to_run == ["02_item_descriptions", "06_finetune"]


def test_validate_exits_2_naming_the_flag(no_quantization_here, capsys):
    from rrlib.__main__ import main

    assert main(["validate", "-f", str(ROOT / "params" / "paper_ml1m.yaml"), "--only", "06"]) == 2
    err = capsys.readouterr().err
    assert "STUDENT_QUANTIZATION='8bit'" in err and "Set STUDENT_QUANTIZATION: none" in err


def test_train_script_exits_2_before_loading_anything(tmp_path):
    """scripts/train.py in a fresh interpreter where bitsandbytes has no backend and no GPU."""
    code = (
        "import sys, torch, runpy\n"
        "import rrlib.llm.local as local\n"
        "torch.cuda.is_available = lambda: False\n"
        f"local.bitsandbytes_cpu_support = lambda: {NO_BACKEND!r}\n"
        f"sys.argv = ['train.py', '-f', {str(ROOT / 'params' / 'paper_fashion.yaml')!r}, '-p', 'RUN_DIR', "
        f"{str(tmp_path / 'run')!r}, '--method', 'tallrec', '--k', '64']\n"
        f"runpy.run_path({str(ROOT / 'scripts' / 'train.py')!r}, run_name='__main__')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "STUDENT_QUANTIZATION='8bit' needs a CUDA GPU or a bitsandbytes with a CPU backend" in out.stderr
    assert not (tmp_path / "run").exists()
