"""Command line: ``python -m rrlib {run,validate,params,status}``.

python -m rrlib run -f params/default.yaml [-f more.yaml ...] [-p KEY VALUE ...]
                    [--run-id ID] [--resume] [--only 01,02]
python -m rrlib validate -f params/paper_beauty.yaml -p N_TEST 100
python -m rrlib params [--section student] [--yaml]
python -m rrlib status RUN_ID
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

EXIT_FAILED, EXIT_USAGE = 1, 2


def _add_param_args(p: argparse.ArgumentParser) -> None:
    from rrlib.config.params import add_parameter_arguments

    add_parameter_arguments(p)
    p.add_argument("--run-id", help="name of the run folder under outputs/ (default: <preset>-<UTC time>)")
    p.add_argument("--only", metavar="STEPS", help="run only these notebooks, e.g. 01,02 or 03-05")
    p.add_argument(
        "--resume", action="store_true", help="continue the run --run-id from its failed or unfinished notebook"
    )
    p.add_argument("--outputs", metavar="DIR", help="outputs folder (default: outputs/ of the project)")
    p.add_argument("--notebooks", metavar="DIR", help=argparse.SUPPRESS)  # tests use fake notebooks
    p.add_argument("--kernel", help="Jupyter kernel (default: rrlib when registered, else python3)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rrlib", description="ReasoningRec workbook runner.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run notebooks 01..07 through papermill into outputs/<run-id>/")
    _add_param_args(run)
    run.add_argument("--no-progress", action="store_true", help="hide papermill's per-cell progress bar")
    run.add_argument("--log-output", action="store_true", help="stream the notebooks' printed output here")
    val = sub.add_parser("validate", help="check parameters, notebooks and run id; run nothing")
    _add_param_args(val)
    par = sub.add_parser("params", help="list every parameter with type, default and help")
    par.add_argument("--section", help="only this section: " + ", ".join(_sections()))
    par.add_argument("--yaml", action="store_true", help="print as a commented YAML file of defaults")
    st = sub.add_parser("status", help="show a run's per-notebook status from its manifest")
    st.add_argument("run_id")
    st.add_argument("--outputs", metavar="DIR", help="outputs folder (default: outputs/ of the project)")
    return parser


def _sections() -> list[str]:
    from rrlib.config.params import SECTIONS

    return list(SECTIONS)


def _plan(args: argparse.Namespace):
    from rrlib.workbook import runner as run

    overrides = run.parse_overrides(args.overrides)
    return run.plan_run(
        args.files,
        overrides,
        run_id=args.run_id,
        resume=args.resume,
        only=args.only,
        notebook_dir=args.notebooks,
        outputs_dir=args.outputs,
        kernel=args.kernel,
    )


def _cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from rrlib.workbook import runner as run

    plan = _plan(args)
    if args.log_output:  # papermill logs cell output at INFO level
        import logging

        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        logging.getLogger("papermill").setLevel(logging.INFO)
    try:
        run.execute_plan(
            plan,
            progress_bar=not args.no_progress,
            log_output=args.log_output,
            command=["python", "-m", "rrlib", *argv],
        )
    except run.NotebookFailed as e:
        print(f"error: {run.mask(e, plan.params)}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from rrlib.config.params import defaults

    plan = _plan(args)
    for w in plan.warnings:
        print(f"warning: {w}")
    base = defaults()
    changed = {k: v for k, v in plan.params.items() if k != "RUN_DIR" and v != base.get(k)}
    print(f"parameters OK ({len(plan.params)} total, {len(changed)} differ from the defaults)")
    for k, v in sorted(changed.items()):
        print(f"  {k} = {v!r}")
    print(f"run id: {plan.run_id} -> {plan.run_dir}")
    print(f"notebooks to run ({plan.kernel} kernel): {', '.join(plan.to_run) or 'none'}")
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    from rrlib.config.params import SECTIONS, notebook_parameters
    from rrlib.workbook.runner import NOTEBOOK_DIR, discover_notebooks

    if args.section and args.section not in SECTIONS:
        print(f"error: unknown section {args.section!r}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return EXIT_USAGE
    users: dict[str, list[str]] = {}
    try:
        for step, nb in discover_notebooks(NOTEBOOK_DIR).items():
            for name in notebook_parameters(nb):
                users.setdefault(name, []).append(step[:2])
    except Exception:
        pass  # notebooks missing or broken: list the schema anyway
    for section, params in SECTIONS.items():
        if args.section and section != args.section:
            continue
        print(f"# --- {section} ---")
        for name, p in params.items():
            extra = f" (one of {list(p.choices)})" if p.choices else ""
            extra += f" (>= {p.min:g})" if p.min is not None else ""
            used = f" [notebooks {','.join(users[name])}]" if name in users else ""
            if args.yaml:
                print(f"# {p.help}{extra}{used}")
                # PyYAML writes floats that it reads back as floats (JSON's 5e-05 reads as a string)
                value = yaml.safe_dump(p.default, default_flow_style=True, width=10**6).removesuffix("...\n")
                print(f"{name}: {value.strip()}")
            else:
                print(f"{name:<26} {p.type:<10} default {json.dumps(p.default)}")
                print(f"{'':<26} {p.help}{extra}{used}")
        print()
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from rrlib.workbook.manifest import read_manifest
    from rrlib.workbook.runner import OUTPUTS_DIR, live_status

    run_dir = Path(args.outputs or OUTPUTS_DIR) / args.run_id
    manifest = read_manifest(run_dir)
    status = live_status(manifest)
    if status != manifest.get("status"):
        pid = (manifest.get("attempts") or [{}])[-1].get("pid")
        status = f"{status} (the manifest says {manifest.get('status')}, but runner process {pid} is gone)"
    print(
        f"run {manifest['run_id']}: {status} (git {str(manifest.get('git', {}).get('commit'))[:10]}"
        f"{', dirty' if manifest.get('git', {}).get('dirty') else ''})"
    )
    for step, rec in manifest.get("notebooks", {}).items():
        secs = f"{rec['seconds']:.1f} s" if rec.get("seconds") is not None else ""
        mem = f"{rec['peak_rss_mb']:.0f} MiB" if rec.get("peak_rss_mb") else ""
        tok = f"{rec['tokens'].get('total_tokens', '')} tokens" if rec.get("tokens") else ""
        step_status = rec.get("status", "")
        if step_status == "running" and status.startswith("interrupted"):
            step_status = "interrupted"
        print(f"  {step:<26} {step_status:<12} {secs:>10} {mem:>10} {tok}")
        if rec.get("error"):
            err = rec["error"]
            print(f"    cell {err.get('cell_index')}: {err.get('first_line')}\n    {err.get('message')}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from rrlib.errors import RRLibError, mask_secrets

    try:
        if args.command == "run":
            return _cmd_run(args, argv)
        if args.command == "validate":
            return _cmd_validate(args)
        if args.command == "params":
            return _cmd_params(args)
        return _cmd_status(args)
    except (RRLibError, FileNotFoundError) as e:
        print(f"error: {mask_secrets(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
