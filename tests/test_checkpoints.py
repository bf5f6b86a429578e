"""Issue 24: a resumed finetune starts from the newest COMPLETE trainer checkpoint; a half-written
one (a kill while the trainer saved it) is moved aside and named in the log."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from rrlib.finetune.checkpoints import checkpoint_problems, newest_complete_checkpoint, safetensors_problem


def _checkpoint(root: Path, step: int, *, state: bool = True, optimizer: bool = True) -> Path:
    """A checkpoint folder as the trainer writes it, with a real (tiny) adapter safetensors file."""
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    save_file(
        {"base_model.layers.0.lora_A.weight": np.ones((4, 8), dtype=np.float32), "lora_B": np.zeros((8, 4))},
        str(folder / "adapter_model.safetensors"),
    )
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "peft_type": "LORA"}))
    if state:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    if optimizer:
        with zipfile.ZipFile(folder / "optimizer.pt", "w") as z:  # torch.save writes a zip
            z.writestr("optimizer/data.pkl", b"x" * 100)
    return folder


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_a_truncated_newest_checkpoint_is_moved_aside_and_the_older_one_is_resumed(tmp_path, caplog):
    ckpts = tmp_path / "checkpoints"
    good = _checkpoint(ckpts, 2)
    bad = _checkpoint(ckpts, 4, state=False)  # killed mid-save: no trainer state, weights cut short
    _truncate(bad / "adapter_model.safetensors", 40)
    # what crashed the old resume: the trainer's loader refuses the file
    with pytest.raises(Exception, match="(?i)incomplete|header|metadata|invalid"):
        with safe_open(str(bad / "adapter_model.safetensors"), "np") as f:
            f.keys()
    with caplog.at_level(logging.WARNING, logger="rrlib.finetune.checkpoints"):
        assert newest_complete_checkpoint(ckpts) == good
    assert not bad.exists()
    moved = [p.name for p in ckpts.iterdir() if p.name.startswith("incomplete-checkpoint-4-")]
    assert len(moved) == 1
    assert "checkpoint-4" in caplog.text and moved[0] in caplog.text and "no trainer_state.json" in caplog.text
    # the moved folder no longer counts as a checkpoint, so the next call finds the same one quietly
    caplog.clear()
    assert newest_complete_checkpoint(ckpts) == good and caplog.text == ""


@pytest.mark.parametrize("cut", ["header", "tensors", "state", "optimizer", "no_weights"])
def test_each_kind_of_damage_is_found(tmp_path, cut):
    folder = _checkpoint(tmp_path, 3)
    weights = folder / "adapter_model.safetensors"
    if cut == "header":
        _truncate(weights, 20)
    elif cut == "tensors":
        _truncate(weights, -10)  # the header parses, the last tensor's bytes are missing
    elif cut == "state":
        _truncate(folder / "trainer_state.json", 10)
    elif cut == "optimizer":
        _truncate(folder / "optimizer.pt", 30)
    else:
        weights.unlink()
    problems = checkpoint_problems(folder)
    assert len(problems) == 1, problems
    expected = {
        "header": "truncated inside its header",
        "tensors": "is truncated",
        "state": "trainer_state.json does not parse",
        "optimizer": "optimizer.pt is not a complete torch file",
        "no_weights": "no adapter weights",
    }[cut]
    assert expected in problems[0]


def test_a_complete_checkpoint_passes_and_agrees_with_safetensors(tmp_path):
    folder = _checkpoint(tmp_path, 1, optimizer=False)  # optimizer states are optional
    assert checkpoint_problems(folder) == []
    weights = folder / "adapter_model.safetensors"
    assert safetensors_problem(weights) is None
    with safe_open(str(weights), "np") as f:
        assert sorted(f.keys()) == ["base_model.layers.0.lora_A.weight", "lora_B"]


def test_no_folder_or_only_incomplete_checkpoints_start_from_scratch(tmp_path):
    assert newest_complete_checkpoint(tmp_path / "missing") is None
    bad = _checkpoint(tmp_path / "c", 5)
    _truncate(bad / "adapter_model.safetensors", 9)
    (tmp_path / "c" / "checkpoint-notanumber").mkdir()  # not a checkpoint name: ignored
    assert newest_complete_checkpoint(tmp_path / "c") is None
    assert [p.name.startswith("incomplete-checkpoint-5-") for p in (tmp_path / "c").iterdir()].count(True) == 1


def test_finetune_resumes_through_the_completeness_check():
    import rrlib.finetune.sft as ft

    assert ft.newest_complete_checkpoint is newest_complete_checkpoint
    assert "get_last_checkpoint" not in Path(ft.__file__).read_text()
