"""The eight notebooks run in order exactly as committed, with no parameters injected, the way
JupyterLab runs them (nbclient, the rrlib kernel, working folder notebooks/): their own defaults
(the schema defaults: a 64-user slice of ml-latest-small) must be a coherent small run.

Only the ``outputs/`` folder moves, through the environment (``RRLIB_OUTPUTS``, see
rrlib/config/paths.py), so that RUN_DIR and CACHE_DIR, whose defaults are ``outputs/dev`` and
``outputs/cache``, land in a temporary folder. ``RRLIB_DEFAULTS_CACHE`` names a cache folder to
reuse between local runs (the first run is cold: every generation, finetune and fit is made).
About ten minutes on 2 cores with llama-server built (``make server``)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from rrlib.config.paths import STEPS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"


def _errors(nb) -> list[str]:
    return [
        f"cell {i}: {o.get('ename')}: {o.get('evalue')}"
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]


def _text(nb) -> str:
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            out.append(o.get("text", ""))
            out.extend(str(v) for v in o.get("data", {}).values())
    return "\n".join(out)


def _project_results() -> set[str]:
    return {p.name for p in (ROOT / "outputs" / "dev" / "results").glob("*.json")}


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_eight_notebooks_run_in_order_from_their_own_defaults(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    from rrlib.workbook.runner import choose_kernel

    outputs = tmp_path / "outputs"
    outputs.mkdir()
    if os.environ.get("RRLIB_DEFAULTS_CACHE"):
        (outputs / "cache").symlink_to(Path(os.environ["RRLIB_DEFAULTS_CACHE"]).resolve(), target_is_directory=True)
    monkeypatch.setenv("RRLIB_OUTPUTS", str(outputs))  # the kernels inherit it
    kernel = choose_kernel()
    before = _project_results()
    seconds: dict[str, float] = {}
    for step in STEPS:
        source = NOTEBOOK_DIR / f"{step}.ipynb"
        nb = nbformat.read(source, as_version=4)
        assert "injected-parameters" not in json.dumps(nb)
        client = NotebookClient(
            nb, kernel_name=kernel, timeout=1800, resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
        )
        start = time.monotonic()
        try:
            client.execute()
        finally:
            seconds[step] = round(time.monotonic() - start, 1)
            nbformat.write(nb, tmp_path / f"{step}.ipynb")
        assert not _errors(nb), f"{step}: {_errors(nb)}"
        if step == "01_data_prep":
            text = _text(nb)
            assert "NO: too large" not in text and "notebooks 02-06 stop on" not in text, (
                "01 flags a K-shot size its own defaults cannot hold"
            )
    print(f"notebooks from their defaults: {sum(seconds.values()):.0f} s in all; {seconds}")

    run = outputs / "dev"
    for artifact in (
        "data/examples.parquet",
        "enrich/item_descriptions.parquet",
        "enrich/user_profiles.parquet",
        "reasoning/reasoning.parquet",
        "evaluate/predictions.parquet",
        "inspect/report.html",
    ):
        assert (run / artifact).is_file(), f"{artifact} is missing from the default run folder"
    for step in STEPS:
        assert list((run / "results").glob(f"{step}-*.json")), f"{step} recorded no results"
    assert _project_results() == before, "a notebook wrote into the project's own outputs/, not RRLIB_OUTPUTS"
