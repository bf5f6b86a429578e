"""rrlib.manifest: run record pieces, on fake run folders."""
from __future__ import annotations

import hashlib
import json
import re

import pandas as pd
import pytest

from rrlib import manifest as mf
from rrlib.artifacts import RunPaths, write_results
from rrlib.params import defaults


def test_tokens_of_accepts_the_documented_shapes():
    assert mf.tokens_of({"tokens": 12}) == {"total_tokens": 12}
    assert mf.tokens_of({"tokens": {"prompt_tokens": 3, "completion_tokens": 4}}) == {
        "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    stats = {"cached": 2, "generated": 5, "prompt_tokens": 100, "completion_tokens": 50, "seconds": 3.5,
             "truncated_prompts": 1}
    assert mf.tokens_of({"generation_stats": stats}) == {
        "cached": 2, "generated": 5, "prompt_tokens": 100, "completion_tokens": 50, "truncated_prompts": 1,
        "total_tokens": 150}
    nested = {"generation_stats": {"valid": {"prompt_tokens": 1, "completion_tokens": 2},
                                   "test": {"prompt_tokens": 10, "completion_tokens": 20}}}
    assert mf.tokens_of(nested)["total_tokens"] == 33
    assert mf.tokens_of({"auc": 0.7}) is None
    assert mf.tokens_of({"tokens": True}) is None


def test_identities_in_finds_nested_model_identities():
    results = {"model_identity": {"name": "m", "sha256": "ab"},
               "jobs": {"profiles": {"backend_identity": {"name": "x"}}, "n": 3}, "identity_free": 1}
    assert mf.identities_in(results) == {"model_identity": {"name": "m", "sha256": "ab"},
                                         "jobs.profiles.backend_identity": {"name": "x"}}


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
    assert sums["raw_inputs"] == {str(raw): hashlib.sha256(b"raw data").hexdigest(),
                                  str(imported): hashlib.sha256(b"{}").hexdigest()}
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
    write_results(run_dir, "02_item_descriptions", {"generation_stats": {}, "model_identity": {"name": "t"}},
                  params)
    write_results(run_dir, "05_finetune", {"adapters": {"reasoningrec_K64": {"adapter_identity": "sha"}}},
                  params)
    adapter = run_dir / "finetune" / "reasoningrec_K64" / "adapter_model.safetensors"
    adapter.parent.mkdir(parents=True)
    adapter.write_bytes(b"lora")
    (adapter.parent / "checkpoint-8").mkdir()
    (adapter.parent / "checkpoint-8" / "adapter_model.safetensors").write_bytes(b"old")
    models = mf.model_identities(run_dir, params)
    assert models["student"]["adapters"] == {"reasoningrec_K64": hashlib.sha256(b"lora").hexdigest()}
    assert models["teacher"]["requested"] == {"MODEL": "embedded", "REVISION": "", "QUANTIZATION": "none",
                                              "BACKEND": "local"}
    assert models["teacher"]["recorded"] == {"02_item_descriptions": {"model_identity": {"name": "t"}}}
    assert models["student"]["recorded"] == {
        "05_finetune": {"adapters.reasoningrec_K64.adapter_identity": "sha"}}
    emb = models["teacher"]["embedded"]
    if "error" not in emb:  # the embedded package is installed in .venv
        assert re.fullmatch(r"[0-9a-f]{64}", emb["sha256"]) and emb["file"].endswith(".gguf")
    assert models["bertscore"]["requested"] == {"MODEL": "embedded", "NUM_LAYERS": 6}
    server = mf.model_identities(run_dir, {**params, "TEACHER_BACKEND": "server", "SERVER_MODEL": "mixtral"})
    assert "embedded" not in server["teacher"] and server["teacher"]["requested"]["SERVER_MODEL"] == "mixtral"


def test_compose_and_write_metrics(tmp_path):
    run_dir = tmp_path / "run"
    RunPaths.of(run_dir)
    with pytest.raises(FileNotFoundError, match="run notebook 06"):
        mf.compose_metrics(run_dir)
    params = defaults()
    metrics = {"auc": {"reasoningrec@K64": 0.61}, "best_method": "reasoningrec@K64"}
    write_results(run_dir, "06_evaluate", {"metrics": metrics, "table": "..."}, params)
    (run_dir / "metrics.json").write_text(json.dumps({"06_evaluate": {"kept": True}}))
    path = mf.write_metrics(run_dir, {"run_id": "r7", "params": params})
    out = json.loads(path.read_text())
    assert out["metrics"] == metrics and out["run_id"] == "r7" and out["dataset"] == "embedded_beauty"
    assert out["source"].startswith("results/06_evaluate-")
    assert out["06_evaluate"] == {"kept": True}  # what notebook 06 merged in is kept


def test_metrics_from_a_record_without_a_metrics_key(tmp_path):
    run_dir = tmp_path / "run"
    write_results(run_dir, "06_evaluate", {"auc": {"a@K0": 0.5}, "files": {"x": "y"}, "predictions": "p",
                                           "llm": {"a@K0": {"prompt_tokens": 4, "completion_tokens": 1}}},
                  defaults())
    assert mf.compose_metrics(run_dir)["metrics"] == {"auc": {"a@K0": 0.5},
                                                      "llm": {"a@K0": {"prompt_tokens": 4, "completion_tokens": 1}}}
    assert mf.step_summary(run_dir, "06_evaluate")["tokens"] == {"prompt_tokens": 4, "completion_tokens": 1,
                                                                 "total_tokens": 5}
