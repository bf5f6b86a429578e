"""Is the teacher engine a good neighbour? Two measurements, for issue 23; run them on a quiet machine.

1. ``poll``: llama-server's ``--poll`` level (how hard its threads spin waiting for work). For each
   level, one llama-server (16 slots, the embedded model, TEACHER_ENGINE_WEIGHTS auto) is started and
   measured three ways: its CPU use while idle (no request) for ``--idle-s`` seconds; the rate of a
   CPU-bound neighbour process (a one-thread Python loop, "what another job gets") beside the idle
   engine, against the neighbour alone; and the item-description benchmark (``--n`` prompts of
   scripts/benchmark_generation.py) alone and beside the neighbour (wall seconds, the neighbour's rate
   meanwhile). Choose LLAMA_SERVER_POLL (rrlib/llm/engines.py) from it: the level whose generation
   beside a neighbour is fastest, unless another costs the neighbour (or the idle machine) clearly less.

2. ``notebook02``: notebook 02's time (the runner's manifest) alone, and beside a concurrent run that
   is in its own 02/03 meanwhile (another CACHE_DIR, so nothing is shared through the cache), for
   ``before`` (TEACHER_ENGINE_IDLE_S 0: an engine per notebook, as before issue 23) and ``after``
   (TEACHER_ENGINE_IDLE_S 120: one engine shared by both runs). Every run starts with a cold
   generation cache; the converted weights and the engine probe are reused from a warm-up run.

    .venv/bin/python scripts/benchmark_engine_sharing.py --work /tmp/engine-bench            # both parts
    .venv/bin/python scripts/benchmark_engine_sharing.py --work /tmp/engine-bench --parts poll --polls 0,1,50,100
    .venv/bin/python scripts/benchmark_engine_sharing.py --work /tmp/eb --quick              # a tiny check of the script

Prints one table per part and writes ``results.json`` into ``--work``. ``--quick`` runs a tiny
workload (few prompts, a small slice, short waits): its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

NEIGHBOUR = (
    "import sys, time\n"
    "end = time.perf_counter() + float(sys.argv[1]); n = 0\n"
    "while time.perf_counter() < end:\n"
    "    n += sum(i * i for i in range(200))\n"
    "print(n / float(sys.argv[1]))\n"
)


def neighbour(seconds: float) -> subprocess.Popen:
    """A one-thread CPU-bound process that prints its work rate when done."""
    return subprocess.Popen([sys.executable, "-c", NEIGHBOUR, str(seconds)], stdout=subprocess.PIPE, text=True)


def neighbour_rate(proc: subprocess.Popen) -> float:
    out, _ = proc.communicate()
    return float(out.strip().splitlines()[-1])


def cpu_seconds(pid: int) -> float:
    import psutil

    p = psutil.Process(pid)
    procs = [p, *p.children(recursive=True)]
    return sum(sum(x.cpu_times()[:2]) for x in procs)


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------------------
# 1. --poll
# ---------------------------------------------------------------------------------------
def part_poll(args, cache: Path) -> list[dict]:
    from benchmark_generation import DATA_CANDIDATES, build_requests, load_reviews, timed, warmup_request

    from rrlib.llm.engine_backend import EngineBackend
    from rrlib.llm.engines import EngineConfig, engine_spec, not_installed_reason, resolve_engine_weights

    why = not_installed_reason("llama_server")
    if why:
        print(f"poll: skipped ({why})")
        return []
    data = next(p for p in DATA_CANDIDATES if p.is_file())
    reqs = build_requests(load_reviews(data), 5, 40, 64, 0)[: args.n]
    alone = neighbour_rate(neighbour(args.neighbour_s))
    rows = []
    for poll in [int(x) for x in args.polls.split(",")]:
        config = EngineConfig(
            "llama_server",
            weights=resolve_engine_weights("auto"),
            threads=args.threads,
            parallel=16,
            poll=poll,
        )
        spec = engine_spec(config, cache)
        with EngineBackend(spec, timeout_s=1800, retries=0, log_dir=cache / "engines" / "logs") as be:
            be.start()
            be.generate([warmup_request(reqs[0].settings)] * 2)
            pid = be.process.proc.pid
            time.sleep(1.0)
            c0 = cpu_seconds(pid)
            time.sleep(args.idle_s)
            idle_cpu = (cpu_seconds(pid) - c0) / args.idle_s
            c0 = cpu_seconds(pid)
            beside_idle = neighbour_rate(neighbour(args.neighbour_s))
            idle_cpu_beside = (cpu_seconds(pid) - c0) / args.neighbour_s
            gen_alone = timed(be, reqs)
            hog = neighbour(args.neighbour_s * 20)  # outlives the generation; stopped below
            gen_beside = timed(be, reqs)
            hog.terminate()
            hog.wait()
            during = neighbour(min(args.neighbour_s, max(1.0, gen_alone["wall_s"])))
            gen_during = timed(be, reqs)
            neighbour_during = neighbour_rate(during)
        row = {
            "poll": poll,
            "idle_engine_cpu_cores": round(idle_cpu, 3),
            "idle_engine_cpu_cores_beside_neighbour": round(idle_cpu_beside, 3),
            "neighbour_rate_beside_idle_engine": round(beside_idle / alone, 3),
            "generation_alone_s": round(gen_alone["wall_s"], 1),
            "generation_beside_neighbour_s": round(gen_beside["wall_s"], 1),
            "generation_while_neighbour_measured_s": round(gen_during["wall_s"], 1),
            "neighbour_rate_during_generation": round(neighbour_during / alone, 3),
            "completion_tok_s_alone": round(gen_alone["tok_s"], 1),
            "load_avg": load_avg(),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(
        f"\nllama-server --poll ({args.n} item descriptions, {args.threads} thread(s); neighbour rates relative to alone)"
    )
    print(
        "| poll | idle CPU (cores) | neighbour beside idle engine | gen alone s | gen beside neighbour s | neighbour during gen |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['poll']} | {r['idle_engine_cpu_cores']} | {r['neighbour_rate_beside_idle_engine']} | "
            f"{r['generation_alone_s']} | {r['generation_beside_neighbour_s']} | {r['neighbour_rate_during_generation']} |"
        )
    return rows


# ---------------------------------------------------------------------------------------
# 2. notebook 02 alone and beside a concurrent run
# ---------------------------------------------------------------------------------------
def _run(args, run_id: str, cache: Path, only: str, idle_s: float, seed: int, background: bool = False):
    cmd = [
        sys.executable,
        "-m",
        "rrlib",
        "run",
        *sum((["-f", f] for f in args.preset), []),
        "-p",
        "CACHE_DIR",
        str(cache),
        "-p",
        "TEACHER_ENGINE_IDLE_S",
        str(idle_s),
        "-p",
        "SEED",
        str(seed),
        *sum((["-p", k, v] for k, v in args.param), []),
        "--only",
        only,
        "--run-id",
        run_id,
        "--outputs",
        str(args.work / "outputs"),
        "--no-progress",
    ]
    log = open(args.work / f"{run_id}.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if background:
        return proc
    if proc.wait() != 0:
        raise SystemExit(f"run {run_id} failed; see {args.work / f'{run_id}.log'}")
    return _seconds(args, run_id, "02_item_descriptions")


def _manifest(args, run_id: str) -> dict:
    path = args.work / "outputs" / run_id / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _seconds(args, run_id: str, step: str) -> float:
    return float(_manifest(args, run_id)["notebooks"][step]["seconds"])


def _fresh_cache(args, name: str, warm: Path) -> Path:
    """A cold generation cache that reuses the warm-up run's converted weights and engine probe."""
    cache = args.work / "caches" / name
    if cache.exists():
        shutil.rmtree(cache)
    (cache / "engines").mkdir(parents=True)
    for sub in ("models", "fitted"):
        if (warm / sub).exists():
            (cache / sub).symlink_to(warm / sub, target_is_directory=True)
    if (warm / "engines" / "probes.json").is_file():
        shutil.copy(warm / "engines" / "probes.json", cache / "engines" / "probes.json")
    return cache


def part_notebook02(args) -> list[dict]:
    stamp = time.strftime("%H%M%S")
    warm = args.work / "caches" / "warm"
    print("warm-up run (weights, engine probe) ...", flush=True)
    _run(args, f"warm-{stamp}", warm, "01,02", 120.0, 42)
    rows = []
    for mode, idle_s in (("before", 0.0), ("after", 120.0)):
        if mode not in args.modes:
            continue
        alone = _run(args, f"{mode}-alone-{stamp}", _fresh_cache(args, f"{mode}-alone", warm), "01,02", idle_s, 42)
        bg_id = f"{mode}-bg-{stamp}"
        bg = _run(args, bg_id, _fresh_cache(args, f"{mode}-bg", warm), "01,02,03", idle_s, 7, background=True)
        deadline = time.monotonic() + 3600
        while (_manifest(args, bg_id).get("notebooks", {}).get("02_item_descriptions", {}).get("status")) != "running":
            if bg.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the background run never reached 02; see {args.work / f'{bg_id}.log'}")
            time.sleep(1.0)
        beside = _run(args, f"{mode}-beside-{stamp}", _fresh_cache(args, f"{mode}-beside", warm), "01,02", idle_s, 42)
        bg_status = _manifest(args, bg_id).get("notebooks", {})
        bg.terminate() if args.stop_background else bg.wait()
        row = {
            "mode": mode,
            "TEACHER_ENGINE_IDLE_S": idle_s,
            "02_alone_s": round(alone, 1),
            "02_beside_a_run_s": round(beside, 1),
            "background_02_s": bg_status.get("02_item_descriptions", {}).get("seconds"),
            "load_avg": load_avg(),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    print("\nnotebook 02 (cold generation cache), alone and beside a second run in its own 02/03")
    print("| mode | 02 alone s | 02 beside a run s | the other run's 02 s |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['02_alone_s']} | {r['02_beside_a_run_s']} | {r['background_02_s']} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (caches, run folders, logs, results.json)")
    ap.add_argument("--parts", default="poll,notebook02")
    ap.add_argument("--polls", default="0,50,100", help="llama-server --poll levels to compare")
    ap.add_argument("--threads", type=int, default=2, help="llama-server threads (TEACHER_ENGINE_THREADS)")
    ap.add_argument("--n", type=int, default=85, help="item-description prompts per generation")
    ap.add_argument("--idle-s", type=float, default=20.0)
    ap.add_argument("--neighbour-s", type=float, default=15.0)
    ap.add_argument("--modes", default="before,after")
    ap.add_argument("-f", dest="preset", action="append", default=None, help="preset(s) for part 2 (default: none)")
    ap.add_argument("-p", dest="param", action="append", nargs=2, default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--stop-background", action="store_true", help="stop the background run once measured")
    ap.add_argument("--quick", action="store_true", help="a tiny workload to check the script (numbers mean nothing)")
    args = ap.parse_args(argv)
    args.preset = args.preset or []
    if args.quick:
        args.n, args.idle_s, args.neighbour_s, args.polls = 4, 2.0, 2.0, "0,50"
        args.param += [["MAX_USERS", "8"], ["KSHOT_SIZES", "[4]"], ["TRAIN_KSHOTS", "[4]"], ["N_VALID", "4"]]
        args.param += [["N_TEST", "4"], ["DESCRIPTION_WORDS", "8"], ["PROFILE_WORDS", "10"]]
        args.stop_background = True
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RRLIB_ENGINE_DIR", str(args.work / "engines"))  # shared engines of this benchmark only
    results: dict = {"load_avg_at_start": load_avg(), "argv": sys.argv[1:]}
    cache = args.work / "caches" / "poll"
    if "poll" in args.parts:
        results["poll"] = part_poll(args, cache)
    if "notebook02" in args.parts:
        results["notebook02"] = part_notebook02(args)
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
