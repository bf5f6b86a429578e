"""Notebooks 02-05 run headless (papermill, kernel "rrlib", cwd the project root) on a small slice
of the embedded default with the embedded teacher, write the tables they promise, and a rerun of
02 is served entirely from the generation cache. Fast checks: papermill sees every declared
parameter, and notebook 05's cells run on synthetic tables with a fake teacher, writing the training
reasoning and the test references to their own files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from rrlib.config.params import COMMON, ENRICH, SCHEMA, TEACHER, Config, defaults, notebook_parameters
from rrlib.config.paths import PROJECT_ROOT, RunPaths
from rrlib.data import load_tables
from rrlib.enrich import DESCRIPTION_COLUMNS, PROFILE_COLUMNS, enrichment_scope
from rrlib.prompts.postprocess import STATUSES
from rrlib.reasoning import REASONING_COLUMNS, reasoning_test_examples

NB = {
    name: PROJECT_ROOT / "notebooks" / f"{name}.ipynb"
    for name in ("01_data_prep", "02_item_descriptions", "03_user_profiles", "05_reasoning_generation")
}


@pytest.mark.parametrize("name", list(NB)[1:])
def test_parameters_declare_what_the_step_uses(name):
    declared = notebook_parameters(NB[name])
    assert set(COMMON) <= set(declared)
    assert {
        "TEACHER_BACKEND",
        "TEACHER_MODEL",
        "GENERATION_MODE",
        "MAX_OUTPUT_RETRIES",
        "MAX_PROMPT_TOKENS",
        "TEACHER_BATCH_SIZE",
        "KSHOT_SIZES",
        "DOMAIN",
    } <= set(declared)
    # the K-shot sets of every seed are in scope (SEEDS, KSHOT_SAMPLING); 05 also needs the methods
    # whose teacher views it writes (finetuned and zero-shot, EXP3RT's rating reasoning among them)
    extra = {"SEEDS", "KSHOT_SAMPLING"} | (
        {"METHODS", "EVAL_METHODS", "EXP3RT_REASONING_WORDS"} if name == "05_reasoning_generation" else set()
    )
    if name == "02_item_descriptions":  # the rerankers' candidate items need descriptions too
        extra |= {"EVAL_METHODS", "RETRIEVER", "RANK_PROTOCOLS", "RANK_USERS", "RANK_CANDIDATES"}
    assert (
        set(declared)
        <= set(COMMON) | set(TEACHER) | set(ENRICH) | {"DOMAIN", "KSHOT_SIZES", "N_VALID", "N_TEST"} | extra
    )
    assert {k: v for k, v in declared.items() if v != SCHEMA[k].default} == {}
    own = {
        "02_item_descriptions": {
            "DESCRIPTION_WORDS",
            "DESCRIPTIONS_IMPORT",
            "PLOT_SOURCE",
            "PLOTS_CSV",
            "PLOT_RATE_LIMIT_S",
            "ENRICH_SCOPE",
        },
        "03_user_profiles": {"PROFILE_WORDS", "PROFILES_IMPORT", "ENRICH_SCOPE"},
        "05_reasoning_generation": {"REASONING_WORDS"},
    }[name]
    assert own <= set(declared)


@pytest.mark.parametrize("name", list(NB))
def test_papermill_infers_every_declared_parameter(name, caplog):
    """A comment holding '=' makes papermill skip the line ("Unable to parse line") and then warn
    "Passed unknown parameter" for a parameter the notebook does declare."""
    from papermill.inspection import _infer_parameters
    from papermill.iorw import load_notebook_node

    with caplog.at_level("WARNING", logger="papermill"):
        inferred = {
            p.name for p in _infer_parameters(load_notebook_node(str(NB[name])), name="rrlib", language="python")
        }
    assert inferred == set(notebook_parameters(NB[name]))
    assert not [r.message for r in caplog.records if "Unable to parse" in r.message]


def _exec_notebook_in_process(path: Path, overrides: dict) -> dict:
    """Run a notebook's code cells in this process (so a fake backend can be patched in), with
    ``overrides`` applied after the parameters cell as papermill would inject them."""
    import matplotlib

    matplotlib.use("Agg")
    nb = json.loads(path.read_text())
    namespace: dict = {"__name__": "__notebook__"}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            namespace.update(overrides)
    return namespace


@pytest.mark.parametrize("references", [True, False])
def test_notebook_04_writes_training_reasoning_and_test_references_apart(tmp_path, monkeypatch, references):
    from test_enrich import CountingBackend, _descriptions, synthetic_tables
    from test_reasoning import _profiles

    import rrlib.llm
    from rrlib.data.storage import Tables, write_tables
    from rrlib.enrich import write_table

    t = synthetic_tables()
    paths = RunPaths.of(tmp_path / "run")
    write_tables(Tables(**t), paths)
    write_table(_descriptions(t), paths.item_descriptions)
    write_table(
        _profiles([f"u{n}" for n in range(8)]).assign(detail="", attempts=1, truncated_prompt=False, n_profile_items=3),
        paths.user_profiles,
    )
    stale = pd.DataFrame({"example_id": ["test:old"], "reasoning": ["stale"], "status": ["ok"]})
    write_table(stale, paths.reference_reasoning)  # left by an earlier run of this folder
    backend = CountingBackend()
    monkeypatch.setattr(rrlib.llm, "teacher_backend", lambda cfg: backend)
    ns = _exec_notebook_in_process(
        NB["05_reasoning_generation"],
        {
            "RUN_DIR": str(paths.root),
            "CACHE_DIR": str(tmp_path / "cache"),
            "KSHOT_SIZES": [4],
            "N_TEST": 3,
            "REFERENCE_REASONING": references,
            "METHODS": ["reasoningrec", "tallrec"],
        },
    )

    train = pd.read_parquet(paths.reasoning)
    assert train["example_id"].tolist() == ["train:u0", "train:u1", "train:u2", "train:u3"]
    (rec,) = _results(paths, "05_reasoning_generation")
    res = rec["results"]
    assert res["n"] == 4 and res["product"] == "training" and res["generation"]["training"]["generated"] == 4
    assert res["views"] == {"reasoningrec": "full"}  # tallrec writes no reasoning
    assert rec["params"]["REFERENCE_REASONING"] is references and rec["params"]["N_TEST"] == 3
    refs_res = res["test_references"]
    if references:
        refs = pd.read_parquet(paths.reference_reasoning)
        assert list(refs.columns)[: len(REASONING_COLUMNS)] == REASONING_COLUMNS
        assert refs["example_id"].tolist() == ["test:u0", "test:u1", "test:u2"]
        assert refs_res["enabled"] and refs_res["n"] == 3 and res["generation"]["test_references"]["generated"] == 3
        assert refs_res["by_status"] == refs["status"].value_counts().to_dict()
        assert {r.tag for r in backend.calls} == set(train["example_id"]) | set(refs["example_id"])
    else:
        assert not paths.reference_reasoning.exists()
        assert refs_res == {**refs_res, "enabled": False, "n": 0, "removed_stale_file": True}
        assert res["generation"]["test_references"]["generated"] == 0
        assert {r.tag for r in backend.calls} == set(train["example_id"])
    assert (paths.root / "reasoning/reasoning_lengths.png").is_file()
    assert {name for name, part in ns["products"].items() if len(part)} == (
        {"training", "test references"} if references else {"training"}
    )


def _run(name, tmp_path, params):
    import papermill as pm

    out = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(
        str(NB[name]),
        str(out),
        kernel_name="rrlib",
        cwd=str(PROJECT_ROOT),
        parameters={k: v for k, v in params.items() if k in notebook_parameters(NB[name])},
        progress_bar=False,
    )
    return out


def _results(paths, step):
    files = sorted(paths.results.glob(f"{step}-*.json"))
    return [json.loads(f.read_text()) for f in files]


@pytest.mark.slow
def test_notebooks_02_to_04_in_the_smoke_run(smoke_run, tmp_path):
    """02-05 ran headless through the runner on params/smoke.yaml (the session's smoke run)."""
    run_dir, manifest, _, _ = smoke_run
    params = manifest["params"]
    k_max, n_test = max(params["KSHOT_SIZES"]), params["N_TEST"]
    paths = RunPaths.of(run_dir, create=False)
    tables = load_tables(paths)
    full = {**defaults(), **params}
    scope = enrichment_scope(tables.items, tables.users, tables.examples, Config.full(full), tables.interactions)

    desc = pd.read_parquet(paths.item_descriptions)
    assert list(desc.columns)[: len(DESCRIPTION_COLUMNS)] == DESCRIPTION_COLUMNS
    assert sorted(desc["item_id"]) == sorted(scope.item_ids)
    assert set(desc["status"]) <= set(STATUSES) and (desc["source"] == "generated").all()
    assert (desc["n_words"] <= full["DESCRIPTION_WORDS"]).all()

    prof = pd.read_parquet(paths.user_profiles)
    assert list(prof.columns)[: len(PROFILE_COLUMNS)] == PROFILE_COLUMNS
    assert sorted(prof["user_id"]) == sorted(scope.user_ids)
    assert set(prof["status"]) <= set(STATUSES) | {"no_history"}
    assert (prof["n_words"] <= full["PROFILE_WORDS"]).all()

    reas = pd.read_parquet(paths.reasoning)
    assert list(reas.columns)[: len(REASONING_COLUMNS)] == REASONING_COLUMNS
    train = tables.examples[(tables.examples["split"] == "train") & (tables.examples["sample_rank"] < k_max)]
    # one row per training example and teacher view (ablations get reasoning written from their own view)
    for view, rows in reas.groupby("view"):
        assert sorted(rows["example_id"]) == sorted(train["example_id"]), view
    assert "full" in set(reas["view"])
    assert set(reas["status"]) <= set(STATUSES)
    assert (reas["n_words"] <= 2 * full["REASONING_WORDS"] + 4).all()  # two parts + their markers
    refs = pd.read_parquet(paths.reference_reasoning)  # BERTScore references, test subsample only
    assert list(refs.columns)[: len(REASONING_COLUMNS)] == REASONING_COLUMNS
    test = tables.examples[(tables.examples["split"] == "test") & (tables.examples["sample_rank"] < n_test)]
    explained = reasoning_test_examples(tables.examples, Config.full(full))  # the first N_REASONING_TEST
    assert 0 < len(explained) <= len(test) and set(explained["example_id"]) <= set(test["example_id"])
    for view, rows in refs.groupby("view"):
        assert sorted(rows["example_id"]) == sorted(explained["example_id"]), view
    assert set(refs["status"]) <= set(STATUSES)

    for step, table in (("02_item_descriptions", desc), ("03_user_profiles", prof), ("05_reasoning_generation", reas)):
        (rec,) = _results(paths, step)
        res = rec["results"]
        assert res["n"] == len(table) and res["by_status"] == table["status"].value_counts().to_dict()
        # 05 counts its two products (training reasoning, test references) apart
        gen = res["generation"]["training"] if step == "05_reasoning_generation" else res["generation"]
        assert gen["generated"] > 0 and gen["completion_tokens"] > 0
        assert rec["params"]["KSHOT_SIZES"] == params["KSHOT_SIZES"]
    # the runner counts every teacher job of a notebook (04's extractions, 05's EXP3RT reasoning too)
    (pref,) = _results(paths, "04_review_preferences")
    extraction = pref["results"]["generation"]["extraction"]  # the smoke preset retries nothing
    assert extraction["generated"] + extraction["cached"] == pref["results"]["extraction"]["n_reviews"] > 0
    for step in ("04_review_preferences", "05_reasoning_generation"):
        jobs = _results(paths, step)[0]["results"]["generation"].values()
        assert manifest["notebooks"][step]["tokens"]["generated"] == sum(j.get("generated", 0) for j in jobs) > 0
    assert _results(paths, "05_reasoning_generation")[0]["results"]["generation"]["rating_reasoning"]["generated"] > 0
    # every parsed teacher task was decoded under its grammar; its parse rate is in the results and the manifest
    for step, jobs in (
        ("04_review_preferences", {"preference_extraction", "review_user_profile", "review_item_profile"}),
        ("05_reasoning_generation", {"reasoning", "rating_reasoning"}),
    ):
        rates = _results(paths, step)[0]["results"]["parse_rates"]
        assert jobs <= set(rates) and all(r["constrained"] for r in rates.values()), rates
        assert all(rates[j]["n"] > 0 for j in jobs), rates
        assert manifest["notebooks"][step]["parse_rates"] == rates == manifest["parse_rates"][step]
    assert manifest["parse_rates"]["05_reasoning_generation"]["rating_reasoning"]["rate"] >= 0.9
    refs_res = _results(paths, "05_reasoning_generation")[0]["results"]["test_references"]
    assert refs_res["enabled"] and refs_res["n"] == len(refs) == len(explained) * refs["view"].nunique()
    assert refs_res["by_status"] == refs["status"].value_counts().to_dict()
    for fig in ("enrich/description_lengths.png", "enrich/profile_lengths.png", "reasoning/reasoning_lengths.png"):
        assert (run_dir / fig).is_file()

    # a rerun of 02 does no model work: every answer comes from the cache, the table is identical
    _run("02_item_descriptions", tmp_path, {**params, "RUN_DIR": str(run_dir)})
    runs = _results(paths, "02_item_descriptions")
    assert len(runs) == 2
    assert runs[1]["results"]["generation"]["generated"] == 0
    assert runs[1]["results"]["generation"]["cached"] == runs[0]["results"]["generation"]["generated"]
    pd.testing.assert_frame_equal(pd.read_parquet(paths.item_descriptions), desc)
