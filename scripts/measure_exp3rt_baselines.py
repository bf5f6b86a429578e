"""Measure the non-LLM EXP3RT baselines on a dataset: the rating baselines (RMSE / MAE with 95%
intervals and the paired difference with the strongest) on every test user, and the retrievers
(NDCG / Recall / HitRate @k with intervals and the paired difference) on every ranking user (a
liked held-out item) under both ranking protocols of rrlib.methods.retrieval.

    python scripts/measure_exp3rt_baselines.py                       # embedded Beauty
    python scripts/measure_exp3rt_baselines.py -p DATASET ml1m -p DATA_DIR ../shared/data/ml-1m -p KCORE 20

``-p NAME VALUE`` sets any notebook-01 parameter (rrlib.config.params). Prints Markdown tables;
``--out DIR`` also writes rating.csv and ranking.csv there.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from rrlib.config.params import Config, parse_override
from rrlib.config.paths import RunPaths
from rrlib.data import eval_subset, load_tables, prepare
from rrlib.evaluate.ranking import score_rankings
from rrlib.evaluate.rating import rating_results
from rrlib.evaluate.tables import markdown_table
from rrlib.methods import rating, registry, retrieval


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--cutoffs", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--protocols", nargs="+", default=list(retrieval.PROTOCOLS), choices=retrieval.PROTOCOLS)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    params = {name: parse_override(name, value) for name, value in args.p}
    params.setdefault("N_TEST", 0)  # every test user
    cfg = Config.full(params)
    with tempfile.TemporaryDirectory() as tmp:
        paths = RunPaths.of(Path(tmp) / "run")
        prepare(dict(cfg.params), paths, progress=False)
        data = load_tables(paths)
    test = eval_subset(data.examples, "test", cfg.data.n_test)
    print(
        f"{cfg.common.dataset}: {len(data.interactions)} interactions, {len(data.users)} users, "
        f"{len(data.items)} items; {len(test)} test users\n"
    )
    t0 = time.perf_counter()
    rows, info = rating.predict(registry.names(kind="rating_baseline"), data, test, cfg)
    rating_table = rating_results(rows, n_boot=args.n_boot, seed=cfg.common.seed, dataset=cfg.common.dataset)
    print(f"## Rating baselines ({time.perf_counter() - t0:.1f} s; MF best epoch {info['mf']['best_epoch']})\n")
    print(
        markdown_table(
            rating_table[
                [
                    "method",
                    "n",
                    "rmse",
                    "rmse_ci_low",
                    "rmse_ci_high",
                    "mae",
                    "auc",
                    "rating_reference",
                    "delta_rmse",
                    "delta_rmse_ci_low",
                    "delta_rmse_ci_high",
                ]
            ]
        )
    )
    t0 = time.perf_counter()
    rank_users = retrieval.ranking_examples(data.examples)
    ranked, rinfo = retrieval.predict(registry.names(kind="retriever"), data, rank_users, cfg, args.protocols)
    ranking_table, _ = score_rankings(
        ranked, n_boot=args.n_boot, seed=cfg.common.seed, cutoffs=args.cutoffs, dataset=cfg.common.dataset
    )
    inserted = rinfo["bpr_mf"]["protocols"].get("retrieved", {}).get("inserted")
    print(
        f"## Retrievers on {len(rank_users)} ranking users ({time.perf_counter() - t0:.1f} s; lists of "
        f"{cfg.exp3rt.rank_candidates}; BPR best epoch {rinfo['bpr_mf']['best_epoch']}; "
        f"{rinfo['bpr_mf']['targets_not_in_training_items']} held-out items never occur in training; "
        f"protocol (a) inserted {inserted} held-out items)\n"
    )
    print(
        markdown_table(
            ranking_table[
                [
                    "protocol",
                    "method",
                    "cutoff",
                    "n_users",
                    "ndcg",
                    "ndcg_ci_low",
                    "ndcg_ci_high",
                    "hit",
                    "reference",
                    "delta_ndcg",
                    "delta_ndcg_ci_low",
                    "delta_ndcg_ci_high",
                    "delta_ndcg_p",
                ]
            ]
        )
    )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        rating_table.to_csv(out / "rating.csv", index=False)
        pd.DataFrame(ranking_table).to_csv(out / "ranking.csv", index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
