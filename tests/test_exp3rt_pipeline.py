"""EXP3RT through the runner: the smoke run (params/smoke.yaml, shared session fixture) lists
every EXP3RT method; its tables must hold a row for each, and notebooks 04-08 their EXP3RT outputs."""

import json

import pandas as pd
import pytest

from rrlib.methods import registry

pytestmark = pytest.mark.slow

EXP3RT_RATING = ["exp3rt", "tallrec_rating", "exp3rt_zeroshot"]
RATING_BASELINES = registry.names(kind="rating_baseline")
RANKING = registry.names(task="ranking")


def test_smoke_tables_hold_every_exp3rt_method(smoke_run):
    run_dir, manifest, _, _ = smoke_run
    assert manifest["status"] == "completed"
    results = pd.read_csv(run_dir / "evaluate" / "results.csv")
    rating = results[results["task"] == "rating"]
    assert set(EXP3RT_RATING + RATING_BASELINES) <= set(rating["method"])
    assert rating["rmse"].notna().all() and rating["mae"].notna().all()
    best = rating["rating_reference"].dropna().unique()
    assert len(best) == 1 and best[0] in RATING_BASELINES
    ranking = pd.read_csv(run_dir / "evaluate" / "ranking_results.csv")
    assert set(RANKING) <= set(ranking["method"]) and 10 in set(ranking["cutoff"])
    assert set(ranking["protocol"]) == {"retrieved", "sampled"}  # both protocols, named (issue 20)
    reranked = ranking[ranking["method"].isin(registry.names(kind="reranker"))]
    assert (reranked["reference"] == "bpr_mf").all()
    assert (reranked["delta_n_users"] > 0).all() and reranked["delta_ndcg"].notna().all()  # paired on shared users
    assert (
        "protocol (a) retriever's top-N, held-out item inserted"
        in (run_dir / "evaluate" / "ranking_results.md").read_text()
    )
    faith = pd.read_csv(run_dir / "evaluate" / "faithfulness.csv")
    assert {"exp3rt", "exp3rt_zeroshot", "reasoningrec"} <= set(faith["method"])
    assert (run_dir / "reasoning" / "rating_reasoning.parquet").is_file()
    sheets = run_dir / "inspect" / "human_eval_exp3rt"
    assert (sheets / "sheet.csv").is_file() and not (sheets / "key.csv").exists()
    summaries = [json.loads(p.read_text()) for p in (run_dir / "finetune").glob("*/training_summary.json")]
    rmse = {s["method"]: s["best_valid_rmse"] for s in summaries if s.get("task") == "rating"}
    assert set(rmse) == {"exp3rt", "tallrec_rating"} and all(0 < v < 4 for v in rmse.values())
