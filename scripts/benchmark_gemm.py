#!/usr/bin/env python
"""This machine's matrix-product peak (torch, square GEMMs) and how close a LoRA step comes to it.

    python scripts/benchmark_gemm.py                          # fp32 and bf16, 2048 x 2048, all cores
    python scripts/benchmark_gemm.py --train-tokens-per-s 210 # also: a LoRA step's share of the fp32 peak

A LoRA step on a frozen base does about 4 x params FLOPs per token (the forward's 2 x params, the
backward's input gradients 2 x params; no weight gradients but the adapters'), so a training rate of
``t`` tokens/s is ``4 x params x t`` FLOP/s. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

SMOLLM2_135M_PARAMS = 134.5e6


def gemm_gflops(n: int, dtype: torch.dtype, seconds: float = 3.0) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--train-tokens-per-s", type=float, default=0.0, help="a measured LoRA training rate")
    parser.add_argument("--params", type=float, default=SMOLLM2_135M_PARAMS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out: dict = {"threads": args.threads, "n": args.n, "load_average": os.getloadavg()[0]}
    for name in args.dtypes.split(","):
        out[f"{name}_gflops"] = round(gemm_gflops(args.n, getattr(torch, name)), 1)
    if args.train_tokens_per_s:
        achieved = 4 * args.params * args.train_tokens_per_s / 1e9
        out["lora_step_gflops"] = round(achieved, 1)
        out["lora_step_share_of_fp32_peak"] = round(achieved / out["float32_gflops"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
