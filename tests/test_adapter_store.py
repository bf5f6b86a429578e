"""The adapter store: the configuration hash ignores the run folder and changes with what
changes the adapter; publishing is atomic and never overwrites; reuse copies the adapter into
a run folder with a summary that points there."""

import json

import pytest

from rrlib.config.params import Config, load_params
from rrlib.student import ScoringPrompt

PAIRS = [
    {
        "prompt": [{"role": "user", "content": "Will they like it?"}],
        "completion": [{"role": "assistant", "content": "Prediction: Yes"}],
    }
]
VALID = [ScoringPrompt((1, 2, 3), 7, 8)]
IDENTITY = {"name": "embedded:SmolLM2-135M-Instruct", "file_sha256": "abc", "device": "cpu"}


def _cfg(tmp_path, **over):
    return Config(
        load_params(overrides={"RUN_DIR": str(tmp_path / "run"), "CACHE_DIR": str(tmp_path / "cache"), **over})
    )


def test_config_hash_ignores_the_run_folder_and_follows_the_adapter(tmp_path):
    from rrlib.finetune import training_config

    def h(cfg, pairs=PAIRS, valid=VALID, seed=42):
        return training_config("reasoningrec", 64, cfg, IDENTITY, pairs, valid, seed)["config_hash"]

    base = h(_cfg(tmp_path))
    assert h(_cfg(tmp_path, RUN_DIR=str(tmp_path / "another"))) == base
    assert h(_cfg(tmp_path, N_TEST=7)) == base  # evaluation settings do not change the adapter
    assert h(_cfg(tmp_path, LEARNING_RATE=3e-5)) != base
    assert h(_cfg(tmp_path, GRAD_ACCUM_STEPS=4)) != base
    assert h(_cfg(tmp_path), seed=1) != base
    assert h(_cfg(tmp_path), valid=[ScoringPrompt((1, 2, 4), 7, 8)]) != base
    other = [{**PAIRS[0], "completion": [{"role": "assistant", "content": "Prediction: No"}]}]
    assert h(_cfg(tmp_path), pairs=other) != base
    config = training_config("reasoningrec", 64, _cfg(tmp_path), IDENTITY, PAIRS, VALID, 42)
    assert str(tmp_path) not in json.dumps(config)
    assert {"precision", "loss", "libraries"} <= set(config)


def _finished_run(folder, config_hash):
    (folder / "adapter").mkdir(parents=True)
    (folder / "adapter" / "adapter_config.json").write_text("{}")
    (folder / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "curves.csv").write_text("epoch,train_loss,valid_auc\n1,0.5,0.6\n")
    (folder / "training_summary.json").write_text(
        json.dumps({"config_hash": config_hash, "status": "trained", "adapter_dir": str(folder), "best_valid_auc": 0.6})
    )


def test_publish_is_atomic_and_reuse_points_at_the_new_run(tmp_path):
    from rrlib.finetune.store import _complete, publish_adapter, reuse_adapter, store_dir

    cfg = _cfg(tmp_path)
    first = tmp_path / "run1" / "reasoningrec_K64"
    _finished_run(first, "h1")
    target = store_dir(cfg, "h1")
    assert target == tmp_path / "cache" / "adapters" / "h1"
    assert not _complete(target, "h1")
    publish_adapter(first, target)
    assert _complete(target, "h1") and not _complete(target, "h2")
    assert [p.name for p in target.parent.iterdir()] == ["h1"]  # no temporary folder left behind
    (first / "adapter" / "adapter_model.safetensors").write_bytes(b"changed")
    publish_adapter(first, target)  # an existing entry is kept, never overwritten
    assert (target / "adapter" / "adapter_model.safetensors").read_bytes() == b"weights"

    second = tmp_path / "run2" / "reasoningrec_K64"
    second.mkdir(parents=True)
    summary = reuse_adapter(target, second, {"config_hash": "h1"})
    assert summary["status"] == "reused" and summary["adapter_dir"] == str(second)
    assert summary["best_valid_auc"] == 0.6 and summary["reused_from"] == str(target)
    assert (second / "adapter" / "adapter_model.safetensors").read_bytes() == b"weights"
    assert json.loads((second / "training_summary.json").read_text())["adapter_dir"] == str(second)
    assert json.loads((second / "train_config.json").read_text()) == {"config_hash": "h1"}
    assert (second / "curves.csv").is_file()


@pytest.mark.parametrize("missing", ["adapter/adapter_model.safetensors", "training_summary.json"])
def test_an_incomplete_store_entry_is_not_reused(tmp_path, missing):
    from rrlib.finetune.store import _complete

    folder = tmp_path / "h1"
    _finished_run(folder, "h1")
    (folder / missing).unlink()
    assert not _complete(folder, "h1")
