#!/usr/bin/env python
"""Finetune one student method for one K outside the notebooks (same code as notebook 06).

    python scripts/train.py -f params/default.yaml --method reasoningrec --k 64
    python scripts/train.py -f params/paper_beauty.yaml -p RUN_DIR outputs/beauty --method tallrec --k 128

Several GPUs: the same command under accelerate (data parallel; each process loads the
student, only the main process writes files). With STUDENT_QUANTIZATION 8bit each process
must hold its own copy of the 8-bit model on its own GPU.

    accelerate launch --num_processes 4 scripts/train.py -f params/paper_beauty.yaml --method reasoningrec --k 256

Prints the training summary (JSON) and exits 0; a parameter or data problem exits 2 with
the message; an interrupted run resumes from its last epoch checkpoint when started again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    from rrlib.config.params import Config, add_parameter_arguments, load_params, parse_override
    from rrlib.config.paths import RunPaths
    from rrlib.errors import RRLibError
    from rrlib.methods.registry import names

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_parameter_arguments(parser)
    parser.add_argument("--method", required=True, choices=names(kind="finetuned_llm"))
    parser.add_argument("--seed", type=int, default=None, help="K-shot sample and training seed (default: SEED)")
    parser.add_argument("--k", type=int, required=True, help="training-set size (one of KSHOT_SIZES)")
    args = parser.parse_args(argv)

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING, format=f"%(asctime)s [rank {rank}] %(name)s: %(message)s"
    )
    try:
        overrides = {name: parse_override(name, value) for name, value in args.overrides}
        params = load_params(args.files, overrides)
        from rrlib.llm import check_device_params

        check_device_params(params, {"STUDENT_QUANTIZATION"})  # before any work: a flag this machine cannot run
    except RRLibError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from rrlib.data import domain_of
    from rrlib.finetune import check_run, train
    from rrlib.student.prompts import PromptContext

    cfg = Config(params)
    paths = RunPaths.of(cfg.common.run_dir)
    try:
        check_run(args.method, args.k, cfg)
        ctx = PromptContext.from_run(paths, domain_of(params), args.method)
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout carries only the JSON
            summary = train(args.method, args.k, cfg, paths, ctx, seed=args.seed)
    except (RRLibError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if rank == 0:
        summary.pop("environment", None)
        print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
