"""scripts/train.py: argument and parameter errors exit 2 with a message naming the problem;
nothing is loaded before the inputs are known to exist."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("train_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unknown_parameter_exits_2(script, capsys):
    assert script.main(["--method", "reasoningrec", "--k", "64", "-p", "LORA_RANK", "8"]) == 2
    assert "unknown parameter(s): LORA_RANK" in capsys.readouterr().err


def test_wrong_type_exits_2(script, capsys):
    assert script.main(["--method", "tallrec", "--k", "64", "-p", "LEARNING_RATE", "fast"]) == 2
    assert "LEARNING_RATE" in capsys.readouterr().err


def test_k_outside_kshot_sizes_exits_2(script, tmp_path, capsys):
    assert script.main(["--method", "tallrec", "--k", "48", "-p", "RUN_DIR", str(tmp_path / "run")]) == 2
    assert "K=48 is not in KSHOT_SIZES" in capsys.readouterr().err


def test_missing_upstream_data_names_the_notebook(script, tmp_path, capsys):
    assert script.main(["--method", "reasoningrec", "--k", "32", "-p", "RUN_DIR", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert ".parquet is missing" in err and "01_data_prep" in err


def test_zero_shot_method_is_rejected(script):
    with pytest.raises(SystemExit):
        script.main(["--method", "zeroshot_vanilla", "--k", "64"])
