"""Every YAML preset under params/ loads, validates, and only sets parameters some notebook
declares; the paper presets carry the paper's settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rrlib.config.params import SCHEMA, load_params, load_yaml, notebook_parameters

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "params").glob("*.yaml"))
EXPECTED = {
    "default",
    "smoke",
    "paper_ml1m",
    "paper_beauty",
    "paper_fashion",
    "release_beauty",
    "exp3rt_instruments",
    "exp3rt_paper_amazon_book",
    "exp3rt_paper_imdb",
}


def _declared_by_notebooks() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for name in notebook_parameters(nb):
            out.setdefault(name, set()).add(nb.stem[:2])
    return out


def test_expected_presets_exist():
    assert EXPECTED <= {p.stem for p in PRESETS}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_and_validates(path):
    raw = yaml.safe_load(path.read_text())
    assert isinstance(raw, dict) and raw, f"{path.name} is empty"
    load_yaml(path)
    params = load_params([path])
    assert params["RUN_DIR"] == SCHEMA["RUN_DIR"].default, "the runner chooses RUN_DIR; presets must not"


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_every_preset_key_is_declared_by_a_notebook(path):
    declared = _declared_by_notebooks()
    orphans = sorted(k for k in yaml.safe_load(path.read_text()) if k not in declared)
    assert not orphans, f"{path.name} sets {orphans}, which no notebook's parameters cell declares"


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_every_key_has_a_comment_or_a_section_header(path):
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#"), f"{path.name} starts with a comment saying what the preset is for"
    assert any(line.startswith("# ---") for line in lines), f"{path.name} groups keys under comment headers"


@pytest.mark.parametrize("dataset,kcore,lr", [("ml1m", 20, 3e-5), ("beauty", 5, 1e-4), ("fashion", 5, 1e-4)])
def test_paper_presets_have_the_paper_settings(dataset, kcore, lr):
    p = load_params([ROOT / "params" / f"paper_{dataset}.yaml"])
    assert (p["DATASET"], p["KCORE"], p["LEARNING_RATE"]) == (dataset, kcore, lr)
    assert p["TEACHER_MODEL"] == "mistralai/Mixtral-8x7B-Instruct-v0.1" and p["TEACHER_QUANTIZATION"] == "4bit"
    assert p["STUDENT_MODEL"] == "meta-llama/Llama-2-7b-chat-hf" and p["STUDENT_QUANTIZATION"] == "8bit"
    assert p["KSHOT_SIZES"] == p["TRAIN_KSHOTS"] == [64, 128, 256]
    assert (p["MAX_EPOCHS"], p["EARLY_STOPPING_PATIENCE"], p["MAX_SEQ_LENGTH"]) == (100, 5, 2048)
    assert (p["LORA_R"], p["LORA_ALPHA"], p["LORA_DROPOUT"], p["LORA_TARGET_MODULES"]) == (
        8,
        16,
        0.05,
        ["q_proj", "v_proj"],
    )
    assert (p["N_VALID"], p["N_TEST"], p["LIKE_THRESHOLD"]) == (600, 600, 3.0)
    assert (p["REVIEWS_PER_ITEM"], p["PROFILE_ITEMS"], p["DESCRIPTION_WORDS"], p["PROFILE_WORDS"]) == (10, 15, 25, 100)
    assert p["BERTSCORE_MODEL"] == "microsoft/deberta-xlarge-mnli"
    from bert_score.utils import model2layers

    assert p["BERTSCORE_NUM_LAYERS"] == model2layers["microsoft/deberta-xlarge-mnli"]
    if dataset == "ml1m":
        assert p["PLOT_SOURCE"] == "cinemagoer"
    text = (ROOT / "params" / f"paper_{dataset}.yaml").read_text()
    assert "# TEACHER_BACKEND: server" in text and "# SERVER_URL:" in text  # the vLLM alternative


def test_release_preset_points_at_shipped_files():
    p = load_params([ROOT / "params" / "release_beauty.yaml"])
    assert p["DATASET"] == "release_beauty"
    for key in ("DESCRIPTIONS_IMPORT", "PROFILES_IMPORT"):
        assert (ROOT / p[key]).is_file(), f"{key}={p[key]} is not shipped"
    assert (ROOT / "rrlib/resources/reasoningrec_release/LICENSE").is_file()


def test_smoke_is_tiny_and_default_is_cpu_sized():
    s = load_params([ROOT / "params" / "smoke.yaml"])
    assert s["MAX_USERS"] and s["MAX_USERS"] <= 100 and s["N_TEST"] <= 32 and s["N_VALID"] <= 16
    assert s["KSHOT_SIZES"] == s["TRAIN_KSHOTS"] == [8] and s["MAX_EPOCHS"] == 1
    assert s["SEQ_EPOCHS"] <= 3 and s["BOOTSTRAP_SAMPLES"] <= 100 and s["REASONING_MAX_NEW_TOKENS"] <= 64
    assert s["TEACHER_MODEL"] == "embedded" and s["STUDENT_MODEL"] == "embedded-tiny"  # real teacher text
    d = load_params([ROOT / "params" / "default.yaml"])
    assert d["DATASET"] == "ml_latest_small" and d["TEACHER_MODEL"] == d["STUDENT_MODEL"] == "embedded"
    assert d["TEACHER_QUANTIZATION"] == d["STUDENT_QUANTIZATION"] == "none"
    assert d["BERTSCORE_MODEL"] == "embedded"


def test_the_default_test_subsample_holds_at_least_60_dislikes(tmp_path):
    """The default can separate methods only if its AUC rests on enough disliked targets."""
    from rrlib.config.paths import RunPaths
    from rrlib.data import eval_subset, load_tables, prepare

    params = load_params([ROOT / "params" / "default.yaml"])
    paths = RunPaths.of(tmp_path / "run")
    card = prepare(
        {
            k: params[k]
            for k in (
                "DATASET",
                "KCORE",
                "MAX_USERS",
                "LIKE_THRESHOLD",
                "HISTORY_LEN",
                "PROFILE_ITEMS",
                "KSHOT_SIZES",
                "N_VALID",
                "N_TEST",
                "SEED",
            )
        },
        paths,
        progress=False,
    )
    test = eval_subset(load_tables(paths).examples, "test", params["N_TEST"])
    assert len(test) == params["N_TEST"] and int((test["label"] == 0).sum()) >= 60
    assert card["audit"]["passed"] and all(card["splits"][s]["examples"] == 610 for s in ("train", "valid", "test"))
