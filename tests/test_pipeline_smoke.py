"""The whole pipeline, notebooks 01 -> 07, through the runner (papermill, embedded model) on the
tiny slice of params/smoke.yaml. A few minutes on 2 CPU cores."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rrlib.config.paths import STEPS
from rrlib.workbook.runner import NOTEBOOK_DIR

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_smoke_pipeline_01_to_07(smoke_run):
    missing = [s for s in STEPS if not (NOTEBOOK_DIR / f"{s}.ipynb").is_file()]
    assert not missing, f"notebooks missing: {missing}"
    run_dir, manifest, wall, logs = smoke_run
    print(f"smoke pipeline wall time {wall:.0f} s; peak RSS {manifest.get('peak_rss_mb')} MiB")
    for line in logs:
        print(line)

    assert manifest["status"] == "completed"
    assert [manifest["notebooks"][s]["status"] for s in STEPS] == ["completed"] * len(STEPS)
    for step in STEPS:
        assert (run_dir / "notebooks" / f"{step}.ipynb").is_file()
        assert list((run_dir / "results").glob(f"{step}-*.json")), f"{step} wrote no results file"
    on_disk = json.loads((run_dir / "manifest.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["params"]["N_TEST"] == 16
    assert {"data/interactions.parquet", "data/examples.parquet", "evaluate/predictions.parquet"} <= set(
        on_disk["data"]["tables"])
    assert on_disk["data"]["raw_inputs"], "the raw input files were not recorded"
    assert len(on_disk["models"]["teacher"]["embedded"]["sha256"]) == 64

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["metrics"]["auc"] and metrics["run_id"] == "smoke" and metrics["n_test"] == 16

    import pandas as pd
    test_ids = set(pd.read_parquet(run_dir / "evaluate" / "predictions.parquet").query("split == 'test'")[
        "example_id"])
    page = (run_dir / "inspect" / "report.html").read_text(encoding="utf-8")
    shown = [e for e in test_ids if f'data-example-id="{e}"' in page]
    assert shown, "the HTML report shows no test example"
