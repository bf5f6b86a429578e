#!/usr/bin/env python
"""Retries in rounds or in the running stream: replay one teacher task of a cold run (its first
attempts and the retries it needed, read from the run's generation cache) through the preset's
teacher engine both ways, alternated, each on a fresh cache and a fresh engine.

    python scripts/benchmark_retry_stream.py --from-cache /tmp/demo-cache --template user_profile --n 120
    python scripts/benchmark_retry_stream.py --from-cache /tmp/demo-cache --template item_description \
        --modes stream,rounds --repeats 2

``rounds`` is what ``generate_checked`` did before: all first attempts, then each round of retries
once the previous round is back. ``stream`` is ``CachedGenerator.generate_followups``: a retry is
sent as soon as the attempt it replaces is back. The same requests and seeds either way; a
request is retried here exactly when it was retried in the recorded run, so both modes do the
same work. Prints one JSON line per run: wall seconds and completion tokens per second. The CPU
may be shared: alternate the modes and compare within a line pair.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from rrlib.config.params import Config, load_params
from rrlib.llm import CachedGenerator, GenerationRequest, GenerationSettings, teacher_backend
from rrlib.prompts.postprocess import retry_settings

REPO = Path(__file__).resolve().parents[1]


def recorded_chains(cache_dir: Path, template: str, n: int) -> list[list[GenerationRequest]]:
    """Per recorded first attempt (lowest seed of its messages), the attempts of its chain."""
    chains: dict[str, list[dict]] = {}
    for path in sorted((cache_dir / "generations").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("template") == template:
                chains.setdefault(json.dumps(rec["messages"], sort_keys=True), []).append(rec)
    out = []
    for recs in list(chains.values())[: n or None]:
        recs.sort(key=lambda r: r["settings"]["seed"])
        s = recs[0]["settings"]
        first = GenerationRequest(
            tuple(recs[0]["messages"]),
            GenerationSettings(
                s["temperature"], s["top_p"], s["max_new_tokens"], s["seed"], s.get("repetition_penalty", 1.0)
            ),
            template,
            recs[0]["template_version"],
            recs[0]["tag"],
        )
        out.append([first] + [replace(first, settings=retry_settings(first.settings, a)) for a in range(1, len(recs))])
    return out


def run(mode: str, chains: list[list[GenerationRequest]], params: dict) -> dict:
    cache = Path(tempfile.mkdtemp(prefix=f"retry-{mode}-"))
    try:
        models = Path(params["CACHE_DIR"]) / "models"
        if models.is_dir():
            shutil.copytree(models, cache / "models")  # the converted weights, not the generations
        backend = teacher_backend(Config({**params, "CACHE_DIR": str(cache)}))
        gen = CachedGenerator(backend, cache, progress=False)
        firsts = [c[0] for c in chains]
        start = time.monotonic()
        if mode == "stream":
            origin, attempt = list(range(len(chains))), [0] * len(chains)

            def follow(j, req, res):
                i, a = origin[j], attempt[j] + 1
                if a >= len(chains[i]):
                    return None
                origin.append(i)
                attempt.append(a)
                return chains[i][a]

            gen.generate_followups(firsts, follow)
        else:
            gen.generate(firsts)
            for a in range(1, max(len(c) for c in chains)):
                gen.generate([c[a] for c in chains if len(c) > a])
        wall = time.monotonic() - start
        backend.close()
        return {
            "mode": mode,
            "requests": gen.stats["generated"] + gen.stats["cached"],
            "wall_s": round(wall, 1),
            "completion_tok_s": round(gen.stats["completion_tokens"] / wall, 1),
        }
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from-cache", required=True, help="CACHE_DIR of a finished cold run (its generations)")
    ap.add_argument(
        "--template", default="user_profile", help="teacher task: item_description, user_profile, reasoning"
    )
    ap.add_argument("--n", type=int, default=120, help="first attempts replayed (0: all)")
    ap.add_argument("--modes", default="stream,rounds")
    ap.add_argument("--repeats", type=int, default=2, help="alternations of the modes")
    ap.add_argument("-f", "--file", default=str(REPO / "params" / "default.yaml"), help="preset (teacher engine)")
    args = ap.parse_args(argv)
    source = Path(args.from_cache)
    chains = recorded_chains(source, args.template, args.n)
    if not chains:
        print(f"no {args.template!r} generations in {source / 'generations'}", file=sys.stderr)
        return 1
    retries = sum(len(c) - 1 for c in chains)
    print(json.dumps({"template": args.template, "first_attempts": len(chains), "retries": retries}), flush=True)
    params = load_params([args.file], {"CACHE_DIR": str(source)})
    for _ in range(args.repeats):
        for mode in args.modes.split(","):
            print(json.dumps(run(mode, chains, params)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
