"""Generation speed on the item-description task: every teacher engine on the same prompts in one
run, the generation cache bypassed.

    .venv/bin/python scripts/benchmark_generation.py                     # every installed engine
    .venv/bin/python scripts/benchmark_generation.py --engines transformers,llama_server \
        --llama-weights q4_1,q8_0 --slots 8,16

Engines (rrlib.llm.engines starts and stops each on a loopback port): ``transformers`` (the
local backend, batched), ``llama_server`` (llama.cpp's C++ server: --parallel slots, continuous
batching, prompt cache), ``llama_cpp_python`` (llama-cpp-python's server, one request at a time)
and ``vllm`` (CPU build in .venv-vllm: prefix caching, max_num_seqs). Engines that are not
installed are listed and skipped.

completion tok/s = completion tokens / wall seconds of the whole generate call (prompt processing
included); all tok/s counts prompt tokens too; startup s (not in either) is the engine's start
until it answers. Prompts: each item of the embedded Beauty dataset (85 items) with its variant
and a few of its reviews, asking for a 25-word description, with the paper's item-description
settings (temperature 0.01, top_p 0.9, 64 new tokens). ``--layout instructions-first`` puts the
task instructions before the item facts, so every prompt shares a longer prefix (the prefix
caches of llama-server and vLLM then skip it). The CPU is shared: the load average is printed
with the table, and figures are lower bounds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from rrlib.llm import GenerationRequest, GenerationSettings, LocalBackend
from rrlib.llm.engine_backend import EngineBackend
from rrlib.llm.engines import EngineConfig, engine_spec, not_installed_reason

REPO = Path(__file__).resolve().parents[1]
DATA_CANDIDATES = [
    REPO / "rrlib" / "resources" / "embedded_beauty" / "All_Beauty_5.json.gz",
    REPO.parent / "shared" / "data" / "amazon_beauty_2018_5core" / "All_Beauty_5.json.gz",
]
SYSTEM = "You write short, factual product descriptions for an online beauty shop."


def load_reviews(path: Path) -> dict[str, list[dict]]:
    by_item: dict[str, list[dict]] = defaultdict(list)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            by_item[r["asin"]].append(r)
    return by_item


INSTRUCTION = (
    "Write a 25-word description of this product: what it is, its strong points and its weak "
    "points according to the reviews. Answer with the description only."
)


def build_requests(
    by_item: dict[str, list[dict]],
    n_reviews: int,
    review_words: int,
    max_new_tokens: int,
    seed: int,
    layout: str = "facts-first",
) -> list[GenerationRequest]:
    out = []
    for asin in sorted(by_item):
        reviews = sorted(by_item[asin], key=lambda r: (-len(r.get("reviewText", "")), r["reviewerID"]))[:n_reviews]
        style = next((r["style"] for r in by_item[asin] if r.get("style")), {})
        variant = ", ".join(f"{k.rstrip(':')}: {v.strip()}" for k, v in style.items()) or "not stated"
        lines = []
        for i, r in enumerate(reviews, 1):
            words = " ".join(r.get("reviewText", "").split()[:review_words])
            lines.append(f"{i}. ({r['overall']:.0f} stars) {r.get('summary', '')}: {words}")
        facts = f"Product {asin} (variant: {variant}).\nCustomer reviews:\n" + "\n".join(lines)
        user = f"{facts}\n\n{INSTRUCTION}" if layout == "facts-first" else f"{INSTRUCTION}\n\n{facts}"
        out.append(
            GenerationRequest(
                ({"role": "system", "content": SYSTEM}, {"role": "user", "content": user}),
                GenerationSettings(temperature=0.01, top_p=0.9, max_new_tokens=max_new_tokens, seed=seed),
                f"benchmark_item_description_{layout}",
                "1",
                tag=asin,
            )
        )
    return out


def timed(backend, reqs) -> dict:
    start = time.perf_counter()
    results = backend.generate(reqs)  # straight to the backend: the generation cache is not involved
    wall = time.perf_counter() - start
    comp = sum(r.completion_tokens for r in results)
    prompt = sum(r.prompt_tokens for r in results)
    return {
        "prompts": len(reqs),
        "prompt_tokens": prompt,
        "completion_tokens": comp,
        "wall_s": wall,
        "tok_s": comp / wall,
        "all_tok_s": (prompt + comp) / wall,
        "sample": results[0].text,
    }


def warmup_request(settings: GenerationSettings) -> GenerationRequest:
    # same system prompt, other text: warms the engine without caching a timed prompt
    return GenerationRequest(
        (
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Warm-up: describe a plain white soap bar in ten words."},
        ),
        settings,
        "benchmark_warmup",
        "1",
    )


def run_engine(config: EngineConfig, reqs, cache_dir: str, setting: str) -> dict:
    spec = engine_spec(config, cache_dir)
    with EngineBackend(spec, timeout_s=900, retries=0, log_dir=Path(cache_dir) / "engines" / "logs") as be:
        start = time.perf_counter()
        be.start()
        startup = time.perf_counter() - start
        be.generate([warmup_request(reqs[0].settings)] * 2)
        r = timed(be, reqs)
    return {"engine": config.engine, "setting": setting, "startup_s": startup, **r}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--engines",
        default="transformers,llama_server,llama_cpp_python,vllm",
        help="comma list of transformers, llama_server, llama_cpp_python, vllm",
    )
    ap.add_argument("--batch-sizes", default="64", help="transformers batch sizes to try")
    ap.add_argument("--batch1-prompts", type=int, default=0, help="prompts for a transformers batch-1 run (slow)")
    ap.add_argument("--llama-weights", default="q4_1,q8_0,f16", help="GGUF weights for llama_server")
    ap.add_argument("--slots", default="16", help="llama_server --parallel slots to try")
    ap.add_argument("--llama-threads", default="", help="llama_server thread counts to try (default: --threads)")
    ap.add_argument(
        "--llama-configs",
        default="",
        help="explicit llama_server runs WEIGHTS:THREADS,... (instead "
        "of every --llama-weights x --llama-threads), e.g. q4_1:1,q8_0:1,f16:1,q8_0:2",
    )
    ap.add_argument("--llama-args", default="", help="more llama-server arguments, e.g. '--poll 0'")
    ap.add_argument("--llama-cpp-python-weights", default="q4_1", help="GGUF weights for llama_cpp_python")
    ap.add_argument("--vllm-seqs", default="64", help="vLLM max_num_seqs to try")
    ap.add_argument("--vllm-dtype", default="bfloat16")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of every engine")
    ap.add_argument("--layout", default="facts-first", choices=("facts-first", "instructions-first"))
    ap.add_argument("--n-items", type=int, default=0, help="limit the items (0 = all 85)")
    ap.add_argument("--reviews", type=int, default=4, help="reviews per item in the prompt")
    ap.add_argument("--review-words", type=int, default=40, help="words per review")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--dtype", default="auto", help="transformers dtype: auto, bfloat16, float32")
    ap.add_argument("--kv-cache", default="dynamic", help="transformers KV cache: dynamic or static")
    ap.add_argument("--cache-dir", default=str(REPO / "outputs" / "cache"), help="models, engine logs")
    ap.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = ap.parse_args(argv)

    data = next((p for p in DATA_CANDIDATES if p.is_file()), None)
    if data is None:
        raise SystemExit(f"no embedded Beauty data at {[str(p) for p in DATA_CANDIDATES]}")
    reqs = build_requests(
        load_reviews(data), args.reviews, args.review_words, args.max_new_tokens, seed=42, layout=args.layout
    )
    if args.n_items:
        reqs = reqs[: args.n_items]
    legacy = {"local": "transformers", "server": "llama_cpp_python"}
    engines = [legacy.get(e, e) for e in args.engines.split(",") if e]
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    rows, skipped = [], []
    print(f"{len(reqs)} prompts from {data}, layout {args.layout}, {args.threads} engine threads")
    for engine in engines:
        reason = not_installed_reason(engine)
        if reason:
            skipped.append(f"{engine}: {reason}")
            print(f"skip {skipped[-1]}")
            continue
        if engine == "transformers":
            import torch

            torch.set_num_threads(args.threads)
            be = LocalBackend(
                "embedded",
                cache_dir=args.cache_dir,
                dtype=args.dtype,
                batch_size=1,
                batch_tokens=1 << 30,
                kv_cache=args.kv_cache,
            )
            start = time.perf_counter()
            be.generate([warmup_request(reqs[0].settings)])  # load + warm up
            load = time.perf_counter() - start
            dtype = be.identity["dtype"]
            sizes = ([1] if args.batch1_prompts else []) + ints(args.batch_sizes)
            for bs in sizes:
                be.batch_size = bs
                r = timed(be, reqs[: args.batch1_prompts] if bs == 1 else reqs)
                rows.append({"engine": "transformers", "setting": f"batch {bs}, {dtype}", "startup_s": load, **r})
                print(rows[-1], flush=True)
            del be
        elif engine == "llama_server":
            runs = [(w, int(t)) for w, t in (c.split(":") for c in args.llama_configs.split(",") if c)] or [
                (w, t) for t in (ints(args.llama_threads) or [args.threads]) for w in args.llama_weights.split(",")
            ]
            for weights, threads in runs:
                for slots in ints(args.slots):
                    config = EngineConfig(
                        "llama_server",
                        weights=weights,
                        threads=threads,
                        parallel=slots,
                        ctx_per_slot=1024,
                        extra_args=tuple(args.llama_args.split()),
                    )
                    setting = f"{slots} slots, {weights.upper()}, {threads} thread(s)" + (
                        f", {args.llama_args}" if args.llama_args else ""
                    )
                    rows.append(run_engine(config, reqs, args.cache_dir, setting))
                    print(rows[-1], flush=True)
        elif engine == "llama_cpp_python":
            for weights in args.llama_cpp_python_weights.split(","):
                config = EngineConfig(
                    "llama_cpp_python", weights=weights, threads=args.threads, parallel=1, ctx_per_slot=2048
                )
                rows.append(run_engine(config, reqs, args.cache_dir, f"1 stream, {weights.upper()}"))
                print(rows[-1], flush=True)
        elif engine == "vllm":
            for seqs in ints(args.vllm_seqs):
                config = EngineConfig(
                    "vllm", dtype=args.vllm_dtype, threads=args.threads, parallel=seqs, ctx_per_slot=2048
                )
                rows.append(
                    run_engine(config, reqs, args.cache_dir, f"max_num_seqs {seqs}, prefix caching, {args.vllm_dtype}")
                )
                print(rows[-1], flush=True)
        else:
            raise SystemExit(f"unknown engine {engine!r}")
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    print(
        f"\nload average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs; "
        f"layout {args.layout}\n"
    )
    print(
        "| engine | setting | prompts | prompt tok | completion tok | wall s | completion tok/s | all tok/s "
        "| startup s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['engine']} | {r['setting']} | {r['prompts']} | {r['prompt_tokens']} | {r['completion_tokens']} "
            f"| {r['wall_s']:.1f} | {r['tok_s']:.0f} | {r['all_tok_s']:.0f} | {r['startup_s']:.0f} |"
        )
    for s in skipped:
        print(f"not measured: {s}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": rows, "skipped": skipped, "argv": sys.argv[1:], "load_average": load}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
