#!/usr/bin/env python
"""Wall time of notebooks 05 + 06 in fresh runs that share CACHE_DIR: the first run fills the
caches (training, or the adapter store; scores; generations), the next ones should find
everything there.

    python scripts/benchmark_warm_rerun.py --source /tmp/student-bench/run --outputs /tmp/student-bench/outputs \\
        -f params/default.yaml -p CACHE_DIR /tmp/student-bench/cache -p METHODS "[reasoningrec]" --runs 2

Each run is a new run folder under --outputs (``warm-<n>-<time>``) into which notebooks
01-04's outputs are copied from --source (a run folder, e.g. the bench run of
scripts/benchmark_student.py), then the runner executes 05 and 06. Prints one JSON line per run:
seconds and peak RSS per notebook (from the manifest), the training status of each 05 run and
what 06 computed (scores, generations) versus found cached.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from rrlib.config.params import parse_override
    from rrlib.config.paths import RunPaths
    from rrlib.workbook.runner import execute_plan, plan_run

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True, help="run folder holding the outputs of notebooks 01-04")
    ap.add_argument("--outputs", required=True, help="folder for the new run folders")
    ap.add_argument("-f", "--file", dest="files", action="append", default=[])
    ap.add_argument("-p", "--param", dest="overrides", action="append", nargs=2, default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args(argv)
    overrides = {n: parse_override(n, v) for n, v in args.overrides}
    source = RunPaths.of(args.source)
    for n in range(1, args.runs + 1):
        plan = plan_run(
            args.files, overrides, run_id=f"warm-{n}-{time.strftime('%H%M%S')}", only="05-06", outputs_dir=args.outputs
        )
        for sub in ("data", "enrich", "reasoning"):
            shutil.copytree(source.root / sub, plan.run_dir / sub, dirs_exist_ok=True)
        start = time.monotonic()
        manifest = execute_plan(plan, progress_bar=False, log=lambda s: print(s, file=sys.stderr))
        wall = time.monotonic() - start
        results = {p.stem: json.loads(p.read_text()) for p in sorted((plan.run_dir / "results").glob("*.json"))}
        r05 = next((v for k, v in results.items() if k.startswith("05")), {}).get("results", {})
        r06 = next((v for k, v in results.items() if k.startswith("06")), {}).get("results", {})
        print(
            json.dumps(
                {
                    "run": plan.run_id,
                    "wall_s": round(wall, 1),
                    "notebooks": {
                        s: {"seconds": r.get("seconds"), "peak_rss_mb": r.get("peak_rss_mb")}
                        for s, r in manifest["notebooks"].items()
                        if s in plan.to_run
                    },
                    "training_status": [row.get("status") for row in r05.get("table", [])],
                    "llm": {
                        m: {
                            "scores_computed": st.get("scores_computed"),
                            "scores_cached": st.get("scores_cached"),
                            "generated": st.get("generation", {}).get("generated"),
                            "generation_cached": st.get("generation", {}).get("cached"),
                        }
                        for m, st in r06.get("llm", {}).items()
                    },
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
