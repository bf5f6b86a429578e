#!/usr/bin/env python
"""Cold and warm runs of a whole preset (default: ``make demo``'s), one after the other, in fresh
run folders that share one CACHE_DIR: the first run on an empty cache is the cold time, the next
ones should find every generation, adapter, score and fitted baseline there.

    python scripts/benchmark_demo.py --cache /tmp/demo-cache --outputs /tmp/demo-runs            # cold + warm
    python scripts/benchmark_demo.py --cache /tmp/demo-cache --outputs /tmp/demo-runs --runs 1   # cold only
    python scripts/benchmark_demo.py -f params/recpie_cpu.yaml --cache /tmp/c --outputs /tmp/r

Prints one JSON line per run: wall time, per-notebook seconds, peak RSS (the notebook kernel
and the engines it started, as the runner records it) and teacher tokens generated, the run's
largest peak, and its wall time as a share of the first run's. A cache that is not empty at the
start is reported (``cache_was_empty``), so a "cold" figure cannot silently be a warm one. The
CPU may be shared: the load average at start and end is in the line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _cache_is_empty(cache: Path) -> bool:
    return not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


def main(argv: list[str] | None = None) -> int:
    from rrlib.config.params import parse_override
    from rrlib.workbook.runner import execute_plan, plan_run

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-f", "--file", dest="files", action="append", default=[], help="preset (default: default.yaml)")
    ap.add_argument("-p", "--param", dest="overrides", action="append", nargs=2, default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--cache", required=True, help="CACHE_DIR shared by the runs (empty for a cold first run)")
    ap.add_argument("--outputs", required=True, help="folder for the run folders")
    ap.add_argument("--runs", type=int, default=2, help="runs in a row (1: cold only)")
    args = ap.parse_args(argv)
    files = args.files or [str(Path(__file__).resolve().parents[1] / "params" / "default.yaml")]
    overrides = {n: parse_override(n, v) for n, v in args.overrides}
    overrides["CACHE_DIR"] = args.cache
    first_wall = None
    for n in range(1, args.runs + 1):
        empty = _cache_is_empty(Path(args.cache))
        plan = plan_run(
            files, overrides, run_id=f"bench-{n}-{time.strftime('%Y%m%dT%H%M%S')}", outputs_dir=args.outputs
        )
        load_start = os.getloadavg()
        start = time.monotonic()
        manifest = execute_plan(plan, progress_bar=False, log=lambda s: print(s, file=sys.stderr, flush=True))
        wall = time.monotonic() - start
        first_wall = first_wall or wall
        notebooks = {
            step: {
                "seconds": rec.get("seconds"),
                "peak_rss_mb": rec.get("peak_rss_mb"),
                "completion_tokens": (rec.get("tokens") or {}).get("completion_tokens"),
            }
            for step, rec in manifest["notebooks"].items()
        }
        peaks = [v["peak_rss_mb"] for v in notebooks.values() if v["peak_rss_mb"] is not None]
        print(
            json.dumps(
                {
                    "run": plan.run_id,
                    "run_dir": str(plan.run_dir),
                    "presets": files,
                    "cache_was_empty": empty,
                    "wall_s": round(wall, 1),
                    "share_of_first_run": round(wall / first_wall, 3),
                    "max_peak_rss_mb": max(peaks) if peaks else None,
                    "notebooks": notebooks,
                    "loadavg_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
