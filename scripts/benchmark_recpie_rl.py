#!/usr/bin/env python
"""Time and peak memory of each phase of one RecPIE explainer round (load, explain, GRPO
update, reward calls, recommender refit) on a finished run folder (notebooks 01-05 done), in a
scratch rounds folder so the run itself is untouched.

    python scripts/benchmark_recpie_rl.py -f params/recpie_cpu.yaml --run-dir outputs/<run-id> \\
        -p CACHE_DIR outputs/cache -p RECPIE_RL_STEPS 1

Runs rounds 0 and 1 (RECPIE_RL_ROUNDS is set to 1). Prints one line per phase call (seconds, peak
RSS of this process during it, sampled every 50 ms) and a JSON line with each phase's peak.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any


def main(argv: list[str] | None = None) -> int:
    import psutil

    from rrlib.config.params import Config, load_params, parse_override
    from rrlib.config.paths import RunPaths
    from rrlib.data import domain_of, load_tables
    from rrlib.finetune import rl

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-f", "--file", dest="files", action="append", default=[], required=True)
    ap.add_argument("-p", "--param", dest="overrides", action="append", nargs=2, default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--run-dir", required=True, help="run folder with notebooks 01-05 done")
    args = ap.parse_args(argv)
    overrides = {n: parse_override(n, v) for n, v in args.overrides}
    params = load_params(args.files, {**overrides, "RUN_DIR": args.run_dir, "RECPIE_RL_ROUNDS": 1})
    cfg = Config.full(params)

    proc, phase, peaks = psutil.Process(), ["setup"], {}

    def sample() -> None:
        while True:
            peaks[phase[0]] = max(peaks.get(phase[0], 0.0), proc.memory_info().rss / 2**20)
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()

    def timed(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(fn)  # trl names the reward's log keys after the function
        def wrapper(*a: Any, **k: Any) -> Any:
            outer, phase[0], start = phase[0], label, time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                print(f"{label}: {time.perf_counter() - start:.1f} s, peak {peaks.get(label, 0):.0f} MiB", flush=True)
                phase[0] = outer

        return wrapper

    paths = RunPaths.of(args.run_dir, create=False)
    run = rl.rl_run_for(cfg, paths, load_tables(paths), domain_of(params))
    run = dataclasses.replace(run, out_dir=tempfile.mkdtemp(prefix="recpie-rl-bench-"), explanations_out=None)
    for name, label in (("load", "explainer_load"), ("generate", "explain"), ("update", "grpo_update")):
        setattr(run.explainer, name, timed(getattr(run.explainer, name), label))
    rl.fit_hybrid = timed(rl.fit_hybrid, "recommender_fit")  # type: ignore[assignment]
    make_reward = rl.make_reward
    rl.make_reward = lambda *a, **k: timed(make_reward(*a, **k), "reward")  # type: ignore[assignment]
    rl.run_explainer_rl(run)
    print(json.dumps({"peak_rss_mib": {k: round(v) for k, v in peaks.items()}, "rounds_dir": str(run.out_dir)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
