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
        on_disk["data"]["tables"]
    )
    assert on_disk["data"]["raw_inputs"], "the raw input files were not recorded"
    assert len(on_disk["models"]["teacher"]["embedded"]["sha256"]) == 64

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["metrics"]["auc"] and metrics["run_id"] == "smoke" and metrics["n_test"] == 16

    import pandas as pd

    test_ids = set(pd.read_parquet(run_dir / "evaluate" / "predictions.parquet").query("split == 'test'")["example_id"])
    page = (run_dir / "inspect" / "report.html").read_text(encoding="utf-8")
    shown = [e for e in test_ids if f'data-example-id="{e}"' in page]
    assert shown, "the HTML report shows no test example"


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_smoke_results_table_has_every_recpie_method(smoke_run):
    """The hybrid, its ablations and the reward-tuned variant are rows of the results table with a
    paired difference to the strongest bias baseline; 06 logged its RL rounds, 07 drew the
    data-efficiency plot and exported the blind sheets, 08 recorded the score shift."""
    import pandas as pd

    from rrlib.methods import registry

    run_dir = smoke_run[0]
    results = pd.read_csv(run_dir / "evaluate" / "results.csv")
    recpie = registry.names(family="recpie")
    assert "recpie_rl" in recpie and len(recpie) == 5
    rows = results[results["method"].isin(recpie)].set_index("method")
    assert sorted(rows.index) == sorted(recpie), f"results.csv lacks {sorted(set(recpie) - set(rows.index))}"
    assert rows["auc"].between(0, 1).all() and rows["delta_auc"].notna().all()
    assert (rows["reference"] == results.loc[results["method"] == "user_like_rate", "reference"].iloc[0]).all()
    rounds = [json.loads(line)["round"] for line in (run_dir / "recpie" / "rl" / "log.jsonl").read_text().splitlines()]
    assert rounds == [0, 1]
    assert (run_dir / "recpie" / "data_efficiency.png").stat().st_size > 0
    efficiency = pd.read_csv(run_dir / "recpie" / "data_efficiency.csv")
    assert set(efficiency["method"]) >= {"sasrec", "recpie_hybrid"} and (efficiency["n_seeds"] >= 3).all()
    assert efficiency.loc[efficiency["method"] != "sasrec", "delta_auc"].notna().all()  # paired with SASRec
    # recpie_rl explains every evaluated test user (issue 20): its row is not a no-text fallback
    rl_row = results[results["method"] == "recpie_rl"].iloc[0]
    assert rl_row["n"] == results[results["method"] == "bias_logreg"]["n"].iloc[0], rl_row["note"]
    preds = pd.read_parquet(run_dir / "evaluate" / "predictions.parquet").query("method == 'recpie_rl'")
    if preds["reasoning"].fillna("").str.strip().ne("").any():  # a test user was among RECPIE_RL_USERS
        assert (run_dir / "evaluate" / "human_eval_recpie" / "sheet.html").is_file()
    shift = pd.read_parquet(run_dir / "recpie" / "score_shift.parquet")
    assert {"recpie_rl", "recpie_hybrid", "recpie_user_text"} <= set(shift["method"])


@pytest.mark.slow
def test_every_registered_method_has_a_row_in_the_smoke_run_tables(smoke_run):
    """A method is one registry entry plus its code: params/smoke.yaml asks for every registered
    method, and each must reach a results table (like and rating rows in results.csv, ranking rows
    in ranking_results.csv). A new entry that the pipeline cannot run fails here."""
    import pandas as pd

    from rrlib.methods import registry

    run_dir, manifest, _, _ = smoke_run
    asked = set(manifest["params"]["METHODS"]) | set(manifest["params"]["EVAL_METHODS"])
    assert set(registry.REGISTRY) - asked == set(), "params/smoke.yaml must list every registered method"
    results = pd.read_csv(run_dir / "evaluate" / "results.csv")
    ranking = pd.read_csv(run_dir / "evaluate" / "ranking_results.csv")
    shown = set(results["method"]) | set(ranking["method"])
    assert set(registry.REGISTRY) - shown == set(), "registered methods without a row in the smoke tables"
    for name, spec in registry.REGISTRY.items():
        table = ranking if spec.task == "ranking" else results
        assert (table["method"] == name).any(), f"{name} ({spec.task}) is missing from its table"
