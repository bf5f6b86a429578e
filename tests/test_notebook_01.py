"""Notebook 01 runs headless (papermill) on the All_Beauty audit example and leaves the tables, data
card, plots and results it promises, with figures equal to what the library computes."""

from __future__ import annotations

import json

import nbformat
import pytest
from audit_example import EMBEDDED_BEAUTY

from rrlib.config.params import COMMON, DATA, SCHEMA, notebook_parameters
from rrlib.config.paths import PROJECT_ROOT, RunPaths
from rrlib.data import figure_paths, load_dataset, load_tables
from rrlib.data import processing as P
from rrlib.data.collapse import collapse_copies

NOTEBOOK = PROJECT_ROOT / "notebooks" / "01_data_prep.ipynb"


def test_parameters_cell_declares_common_and_data_with_schema_defaults():
    declared = notebook_parameters(NOTEBOOK)
    assert set(COMMON) | set(DATA) <= set(declared)
    assert {k: v for k, v in declared.items() if v != SCHEMA[k].default} == {}


def test_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "rrlib"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


@pytest.mark.slow
def test_papermill_run_on_embedded_default(tmp_path):
    import papermill as pm

    run_dir = tmp_path / "run"
    out = tmp_path / "01_data_prep.ipynb"
    pm.execute_notebook(
        str(NOTEBOOK),
        str(out),
        kernel_name="rrlib",
        cwd=str(PROJECT_ROOT),
        parameters=EMBEDDED_BEAUTY | {"RUN_DIR": str(run_dir), "CACHE_DIR": str(tmp_path / "cache")},
        progress_bar=False,
    )
    paths = RunPaths.of(run_dir, create=False)
    for p in (
        paths.interactions,
        paths.items,
        paths.users,
        paths.examples,
        paths.data_card_json,
        paths.data_card_md,
        *figure_paths(paths).values(),
    ):
        assert p.is_file(), p
    results = sorted(paths.results.glob("01_data_prep-*.json"))
    assert len(results) == 1
    recorded = json.loads(results[0].read_text())
    assert recorded["params"]["DATASET"] == "embedded_beauty" and recorded["seed"] == 42
    card = json.loads(paths.data_card_json.read_text())
    assert recorded["results"]["final"] == card["final"]
    # figures match the loader and the tables
    raw = load_dataset("embedded_beauty").interactions
    assert card["raw"]["interactions"] == len(raw) == 5269
    collapsed, _ = collapse_copies(raw)  # COLLAPSE_COPIES (default) runs before DEDUP
    deduped, _ = P.deduplicate(collapsed, "keep_last")
    n_kcore = int((deduped.groupby("user_id").size() >= 5).sum())
    t = load_tables(paths)
    assert card["final"]["users"] == n_kcore == t.users.shape[0]
    assert card["final"]["interactions"] == len(t.interactions)
    assert card["splits"]["test"]["examples"] == int((t.examples["split"] == "test").sum())
    # the executed notebook shows the data card and both plots
    executed = nbformat.read(out, as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
    assert any("# Data card" in o.get("data", {}).get("text/markdown", "") for o in outputs)
    # the leakage audit is shown as a table and recorded in the results file
    assert any("copied-label share" in o.get("data", {}).get("text/html", "") for o in outputs)
    assert recorded["results"]["audit"]["passed"] and recorded["results"]["audit"] == card["audit"]
