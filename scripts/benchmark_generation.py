"""Generation speed on the item-description task: tokens/s of the local transformers backend
(batch 1 and batched) and of a llama.cpp server on the same GGUF and prompts.

    .venv/bin/python scripts/benchmark_generation.py                      # everything
    .venv/bin/python scripts/benchmark_generation.py --engines local --batch-sizes 32,64,96

tokens/s = completion tokens / wall seconds of the whole generate call (prompt processing
included; "all tok/s" counts prompt tokens too). The generation cache is bypassed. Prompts: each item of the embedded Beauty
dataset (85 items) with its variant and a few of its reviews, asking for a 25-word
description, with the paper's item-description settings (temperature 0.01, top_p 0.9,
64 new tokens). The CPU is shared: the load average is printed with the table.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import requests

from rrlib.llm import GenerationRequest, GenerationSettings, LocalBackend, ServerBackend
from rrlib.llm.embedded import embedded_gguf

REPO = Path(__file__).resolve().parents[1]
DATA_CANDIDATES = [REPO / "rrlib" / "resources" / "embedded_beauty" / "All_Beauty_5.json.gz",
                   REPO.parent / "shared" / "data" / "amazon_beauty_2018_5core" / "All_Beauty_5.json.gz"]
SYSTEM = "You write short, factual product descriptions for an online beauty shop."


def load_reviews(path: Path) -> dict[str, list[dict]]:
    by_item: dict[str, list[dict]] = defaultdict(list)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            by_item[r["asin"]].append(r)
    return by_item


def build_requests(by_item: dict[str, list[dict]], n_reviews: int, review_words: int, max_new_tokens: int,
                   seed: int) -> list[GenerationRequest]:
    out = []
    for asin in sorted(by_item):
        reviews = sorted(by_item[asin], key=lambda r: (-len(r.get("reviewText", "")), r["reviewerID"]))[:n_reviews]
        style = next((r["style"] for r in by_item[asin] if r.get("style")), {})
        variant = ", ".join(f"{k.rstrip(':')}: {v.strip()}" for k, v in style.items()) or "not stated"
        lines = []
        for i, r in enumerate(reviews, 1):
            words = " ".join(r.get("reviewText", "").split()[:review_words])
            lines.append(f"{i}. ({r['overall']:.0f} stars) {r.get('summary', '')}: {words}")
        user = (f"Product {asin} (variant: {variant}).\nCustomer reviews:\n" + "\n".join(lines) +
                "\n\nWrite a 25-word description of this product: what it is, its strong points and its weak "
                "points according to the reviews. Answer with the description only.")
        out.append(GenerationRequest(({"role": "system", "content": SYSTEM}, {"role": "user", "content": user}),
                                     GenerationSettings(temperature=0.01, top_p=0.9, max_new_tokens=max_new_tokens,
                                                        seed=seed), "benchmark_item_description", "1", tag=asin))
    return out


def timed(backend, reqs) -> dict:
    start = time.perf_counter()
    results = backend.generate(reqs)
    wall = time.perf_counter() - start
    comp = sum(r.completion_tokens for r in results)
    return {"prompts": len(reqs), "prompt_tokens": sum(r.prompt_tokens for r in results),
            "completion_tokens": comp, "wall_s": wall, "tok_s": comp / wall, "sample": results[0].text}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(n_parallel: int, threads: int, n_ctx: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf()), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--model_alias", "smollm2", "--n_threads", str(threads),
           "--n_batch", "512"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            if requests.get(f"{url}/models", timeout=2).ok:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("llama_cpp.server did not start")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="local,server", help="comma list: local, server")
    ap.add_argument("--batch-sizes", default="16,32,64,96", help="local batched sizes to try")
    ap.add_argument("--batch1-prompts", type=int, default=6, help="prompts for the batch-1 run (slow)")
    ap.add_argument("--n-items", type=int, default=0, help="limit the items (0 = all 85)")
    ap.add_argument("--reviews", type=int, default=4, help="reviews per item in the prompt")
    ap.add_argument("--review-words", type=int, default=40, help="words per review")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--dtype", default="auto", help="local dtype: auto, bfloat16, float32")
    ap.add_argument("--kv-cache", default="dynamic", help="local KV cache: dynamic or static")
    ap.add_argument("--server-concurrency", default="1,4", help="client concurrency levels for the server")
    ap.add_argument("--cache-dir", default=str(REPO / "outputs" / "cache"), help="for the de-quantized model")
    ap.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = ap.parse_args(argv)

    data = next((p for p in DATA_CANDIDATES if p.is_file()), None)
    if data is None:
        raise SystemExit(f"no embedded Beauty data at {[str(p) for p in DATA_CANDIDATES]}")
    reqs = build_requests(load_reviews(data), args.reviews, args.review_words, args.max_new_tokens, seed=42)
    if args.n_items:
        reqs = reqs[: args.n_items]
    engines = args.engines.split(",")
    rows = []
    print(f"{len(reqs)} prompts from {data}; torch threads: ", end="")
    if "local" in engines:
        import torch

        print(torch.get_num_threads())
        be = LocalBackend("embedded", cache_dir=args.cache_dir, dtype=args.dtype, batch_size=1,
                          batch_tokens=1 << 30, kv_cache=args.kv_cache)
        be.generate(reqs[:2])  # load + warm up
        dtype = be.identity["dtype"]
        r = timed(be, reqs[: args.batch1_prompts])
        rows.append({"engine": "transformers (local backend)", "setting": f"batch 1, {dtype}", **r})
        print(rows[-1])
        for bs in [int(x) for x in args.batch_sizes.split(",") if x]:
            be.batch_size = bs
            r = timed(be, reqs)
            rows.append({"engine": "transformers (local backend)", "setting": f"batch {bs}, {dtype}", **r})
            print(rows[-1])
        del be
    else:
        print("-")
    if "server" in engines:
        levels = [int(x) for x in args.server_concurrency.split(",") if x]
        proc, url = start_llama_server(n_parallel=max(levels), threads=os.cpu_count() or 2, n_ctx=2048)
        try:
            sb = ServerBackend(url, "smollm2", concurrency=1, api_key_env="")
            sb.generate(reqs[:1])  # warm up
            for c in levels:
                sb.concurrency = c
                r = timed(sb, reqs)
                rows.append({"engine": "llama.cpp server (llama-cpp-python)", "setting": f"{c} client stream(s), "
                             "Q4_1 GGUF", **r})
                print(rows[-1])
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    print(f"\nload average during run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs\n")
    print("| engine | setting | prompts | prompt tok | completion tok | wall s | completion tok/s | all tok/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        total = (r["prompt_tokens"] + r["completion_tokens"]) / r["wall_s"]
        print(f"| {r['engine']} | {r['setting']} | {r['prompts']} | {r['prompt_tokens']} | {r['completion_tokens']} "
              f"| {r['wall_s']:.1f} | {r['tok_s']:.0f} | {total:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
