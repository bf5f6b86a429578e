"""rrlib.manifest: run record pieces, on fake run folders."""

from __future__ import annotations

import hashlib
import json
import re

import pandas as pd
import pytest

from rrlib.config.params import defaults
from rrlib.config.paths import RunPaths
from rrlib.config.provenance import write_results
from rrlib.workbook import manifest as mf


def test_tokens_of_reads_the_generation_key_only():
    stats = {
        "cached": 2,
        "generated": 5,
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "seconds": 3.5,
        "truncated_prompts": 1,
    }
    assert mf.tokens_of({"generation": stats}) == {
        "cached": 2,
        "generated": 5,
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "truncated_prompts": 1,
        "total_tokens": 150,
    }
    nested = {
        "generation": {
            "valid": {"prompt_tokens": 1, "completion_tokens": 2},
            "test": {"prompt_tokens": 10, "completion_tokens": 20},
        }
    }
    assert mf.tokens_of(nested)["total_tokens"] == 33
    # the keys are fixed (manifest.RESULT_KEYS): figures under any other name are not guessed at
    assert mf.tokens_of({"tokens": 12}) is None and mf.tokens_of({"generation_stats": stats}) is None
    assert mf.tokens_of({"auc": 0.7}) is None and mf.tokens_of({"generation": True}) is None


def test_manifest_write_is_atomic_and_set_step_checks_status(tmp_path):
    RunPaths.of(tmp_path)
    m = mf.new_manifest("r", defaults(), ["01_a", "02_b"], param_files=["p.yaml"], overrides={"SEED": 1})
    assert m["notebooks"] == {"01_a": {"status": "pending"}, "02_b": {"status": "pending"}}
    assert m["seeds"] == {"SEED": 42} and m["overrides"] == {"SEED": 1}
    mf.set_step(m, "01_a", status="completed", seconds=1.5)
    with pytest.raises(ValueError, match="unknown notebook status"):
        mf.set_step(m, "01_a", status="done")
    mf.write_manifest(tmp_path, m)
    back = mf.read_manifest(tmp_path)
    assert back["notebooks"]["01_a"] == {"status": "completed", "seconds": 1.5}
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["manifest.json"]
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        mf.read_manifest(tmp_path)


def test_data_checksums_cover_raw_inputs_and_tables(tmp_path):
    run_dir = tmp_path / "run"
    paths = RunPaths.of(run_dir)
    raw = tmp_path / "raw" / "reviews.json.gz"
    raw.parent.mkdir()
    raw.write_bytes(b"raw data")
    imported = tmp_path / "profiles.json"
    imported.write_text("{}")
    paths.data_card_json.write_text(json.dumps({"source": {"files": [{"role": "reviews", "path": str(raw)}]}}))
    pd.DataFrame({"a": [1]}).to_parquet(paths.interactions)
    pd.DataFrame({"b": [2]}).to_parquet(paths.item_descriptions)
    params = {**defaults(), "PROFILES_IMPORT": str(imported)}
    sums = mf.data_checksums(run_dir, params)
    assert sums["raw_inputs"] == {
        str(raw): hashlib.sha256(b"raw data").hexdigest(),
        str(imported): hashlib.sha256(b"{}").hexdigest(),
    }
    assert set(sums["tables"]) == {"data/interactions.parquet", "enrich/item_descriptions.parquet"}
    assert sums["tables"]["data/interactions.parquet"] == mf.sha256_file(paths.interactions)


def test_raw_inputs_fall_back_to_data_dir(tmp_path):
    run_dir = tmp_path / "run"
    RunPaths.of(run_dir)
    data_dir = tmp_path / "mine"
    data_dir.mkdir()
    (data_dir / "interactions.csv").write_text("user,item,rating,timestamp\n")
    got = mf.raw_input_files(run_dir, {**defaults(), "DATA_DIR": str(data_dir)})
    assert got == [data_dir / "interactions.csv"]


def test_model_identities_record_requested_recorded_and_embedded_hash(tmp_path):
    run_dir = tmp_path / "run"
    params = {**defaults(), "CACHE_DIR": str(tmp_path / "cache")}
    paths = RunPaths.of(run_dir)
    write_results(
        paths, "02_item_descriptions", {"generation": {}, "model_identities": {"teacher": {"name": "t"}}}, params
    )
    write_results(
        paths, "06_finetune", {"model_identities": {"student": {"name": "s", "adapter_sha256": "sha"}}}, params
    )
    adapter = run_dir / "finetune" / "reasoningrec_K64" / "adapter_model.safetensors"
    adapter.parent.mkdir(parents=True)
    adapter.write_bytes(b"lora")
    (adapter.parent / "checkpoint-8").mkdir()
    (adapter.parent / "checkpoint-8" / "adapter_model.safetensors").write_bytes(b"old")
    models = mf.model_identities(run_dir, params)
    assert models["student"]["adapters"] == {"reasoningrec_K64": hashlib.sha256(b"lora").hexdigest()}
    assert models["teacher"]["requested"] == {
        "MODEL": "embedded",
        "REVISION": "",
        "QUANTIZATION": "none",
        "BACKEND": "local",
    }
    assert models["teacher"]["recorded"] == {"02_item_descriptions": {"teacher": {"name": "t"}}}
    assert models["student"]["recorded"] == {"06_finetune": {"student": {"name": "s", "adapter_sha256": "sha"}}}
    emb = models["teacher"]["embedded"]
    if "error" not in emb:  # the embedded package is installed in .venv
        assert re.fullmatch(r"[0-9a-f]{64}", emb["sha256"]) and emb["file"].endswith(".gguf")
    assert models["bertscore"]["requested"] == {"MODEL": "embedded", "NUM_LAYERS": 6}
    server = mf.model_identities(run_dir, {**params, "TEACHER_BACKEND": "server", "SERVER_MODEL": "mixtral"})
    assert "embedded" not in server["teacher"] and server["teacher"]["requested"]["SERVER_MODEL"] == "mixtral"


def test_step_summary_reads_tokens_and_the_results_file(tmp_path):
    paths = RunPaths.of(tmp_path / "run")
    write_results(
        paths,
        "07_evaluate",
        {"auc": {"a@K0": 0.5}, "generation": {"a@K0": {"prompt_tokens": 4, "completion_tokens": 1}}},
        defaults(),
    )
    summary = mf.step_summary(paths.root, "07_evaluate")
    assert summary["tokens"] == {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}
    assert summary["results_file"].startswith("results/07_evaluate-")
    assert not paths.metrics.exists()  # metrics.json has one writer: notebook 07 (rrlib.evaluate.results)
