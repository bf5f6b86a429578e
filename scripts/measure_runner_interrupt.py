"""Ctrl-C on a batch run (issue 23): how long until ``python -m rrlib run`` stops, what it leaves
running, and whether ``--resume`` reuses what was generated before the interrupt.

Starts the runner on a preset with a cold generation cache in its own process group (as a shell
does), waits until notebook 02 has saved ``--after`` teacher answers, then sends SIGINT to the group
(a terminal's Ctrl-C). Reports the seconds to exit, the exit code, 02's status in the manifest, the
kernel and llama-server processes still alive on the machine 5 s later, and then resumes the run up to
02 and reports how many answers came from the cache.

    .venv/bin/python scripts/measure_runner_interrupt.py --work /tmp/interrupt -f params/smoke.yaml

Run it on a quiet machine: it starts the run's own teacher engine. Prints one JSON line per run and
writes ``results.json`` into ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
STEP = "02_item_descriptions"


def runner(args, run_id: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rrlib", "run", "--run-id", run_id, "--outputs", str(args.work / "outputs")]
    cmd += [x for f in args.preset for x in ("-f", f)]
    cmd += ["-p", "CACHE_DIR", str(args.work / "cache"), "--no-progress", *extra]
    log = open(args.work / f"{run_id}{'-resume' if '--resume' in extra else ''}.log", "w")
    return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def saved_answers(run_dir: Path) -> int:
    """The answers 02's progress file counts so far (0 before it starts)."""
    path = run_dir / "notebooks" / f".{STEP}.progress.json"
    try:
        return int(json.loads(path.read_text()).get("n", 0))
    except (OSError, ValueError):
        return 0


def live_processes(pid: int) -> dict[str, list[int]]:
    """What is still alive on the machine: the runner ``pid``, any kernel, any llama-server (run it on
    a quiet machine, so these are the run's)."""
    out: dict[str, list[int]] = {"runner": [], "kernel": [], "llama_server": []}
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["pid"] == pid:
            out["runner"].append(pid)
        elif "ipykernel_launcher" in cmd and p.info["pid"] != os.getpid():
            out["kernel"].append(p.info["pid"])
        elif "llama-server" in (p.info["name"] or "") or "llama-server" in cmd:
            out["llama_server"].append(p.info["pid"])
    return out


def interrupt_once(args, run_id: str) -> dict:
    proc = runner(args, run_id)
    run_dir = args.work / "outputs" / run_id
    deadline = time.time() + args.wait_s
    while saved_answers(run_dir) < args.after:
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"the run ended or 02 saved no {args.after} answers in {args.wait_s} s; see its log")
        time.sleep(0.5)
    before = saved_answers(run_dir)
    t0 = time.perf_counter()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        rc = proc.wait(timeout=args.stop_s)
    except subprocess.TimeoutExpired:
        rc = None
    seconds = time.perf_counter() - t0
    time.sleep(5.0)
    left = live_processes(proc.pid)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    if rc is None:  # did not stop: end it so the next measurement starts clean
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return {
        "answers_before_interrupt": before,
        "seconds_to_exit": round(seconds, 1) if rc is not None else f">{args.stop_s}",
        "exit_code": rc,
        "step_status": manifest["notebooks"].get(STEP, {}).get("status"),
        "alive_5s_later": left,
    }


def resume(args, run_id: str) -> dict:
    proc = runner(args, run_id, "--resume", "--only", "01,02")
    rc = proc.wait()
    written = sorted((args.work / "outputs" / run_id / "results").glob(f"{STEP}-*.json"))
    gen = json.loads(written[-1].read_text())["results"].get("generation", {}) if written else {}
    return {"resume_exit_code": rc, "resume_cached": gen.get("cached"), "resume_generated": gen.get("generated")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("-f", dest="preset", action="append", default=None, help="preset(s) (default: params/smoke.yaml)")
    ap.add_argument("--after", type=int, default=3, help="interrupt once 02 has saved this many answers")
    ap.add_argument("--wait-s", type=float, default=900, help="give up when 02 has not got there by then")
    ap.add_argument("--stop-s", type=float, default=120, help="longest wait for the runner to exit")
    ap.add_argument("--no-resume", action="store_true")
    args = ap.parse_args()
    args.preset = args.preset or ["params/smoke.yaml"]
    args.work.mkdir(parents=True, exist_ok=True)
    run_id = f"interrupt-{int(time.time())}"
    row = {"run_id": run_id, "preset": args.preset, **interrupt_once(args, run_id)}
    if not args.no_resume:
        row.update(resume(args, run_id))
    print(json.dumps(row), flush=True)
    (args.work / "results.json").write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
