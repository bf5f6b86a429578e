#!/usr/bin/env python
"""Student cost at the default preset's sizes: LoRA finetuning of one method (step time,
training tokens/s, final loss, peak RSS) and Yes/No scoring of the test examples (with and
without reuse of the shared prompt prefix's KV cache).

    python scripts/benchmark_student.py --work /tmp/student-bench                  # train + score
    python scripts/benchmark_student.py --work /tmp/student-bench --precision fp32 -p N_VALID_EVAL 8
    python scripts/benchmark_student.py --work /tmp/student-bench --no-train --score-repeats 2

The run folder is built once under --work from the embedded data (notebook 01's code) with
stand-in enrichment at the preset's word budgets (DESCRIPTION_WORDS, PROFILE_WORDS, 2 x
REASONING_WORDS) cut from the real reviews, so no teacher generation is needed; only the
sizes matter here, not the text. Every call retrains (the adapter store is bypassed) and scores
without the score cache. Prints one JSON line; the CPU may be shared, so the load average is in it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import pandas as pd


def _words(text: str, n: int) -> str:
    return " ".join(str(text).split()[:n])


def stand_in_enrichment(paths, cfg, methods) -> None:
    """Descriptions, profiles and training reasoning cut from the reviews, at the word budgets."""
    from rrlib.data import kshot, load_tables

    t = load_tables(paths)
    reviews = t.interactions.set_index(["user_id", "item_id"])["review_text"].to_dict()
    e = cfg.enrich
    desc = pd.DataFrame(
        {
            "item_id": t.items["item_id"],
            "description": [
                _words(" ".join(r["text"] for r in revs[:3]) or title, e.description_words)
                for revs, title in zip(t.items["sampled_reviews"], t.items["title"])
            ],
        }
    )
    desc["source"], desc["status"] = "generated", "ok"
    desc["n_words"] = desc["description"].str.split().str.len()
    paths.item_descriptions.parent.mkdir(parents=True, exist_ok=True)
    desc.to_parquet(paths.item_descriptions)
    titles = dict(zip(t.items["item_id"], t.items["title"]))
    rows = []
    for u in t.users.itertuples():
        liked = "; ".join(titles[x] for x, like in zip(u.profile_item_ids, u.profile_liked) if like)
        texts = " ".join(reviews.get((u.user_id, x), "") or "" for x in u.profile_item_ids)
        rows.append((u.user_id, _words(f"Liked: {liked or 'nothing yet'}. {texts} " * 3, e.profile_words)))
    prof = pd.DataFrame(rows, columns=["user_id", "profile"])
    prof["source"], prof["status"] = "generated", "ok"
    prof["n_words"] = prof["profile"].str.split().str.len()
    prof.to_parquet(paths.user_profiles)
    from rrlib.methods.registry import view_name
    from rrlib.reasoning import teacher_views

    views = {m: view_name(v) for m, v in teacher_views(methods, e.ablation_reasoning).items()}

    def table(examples):
        out = []
        for m in methods:
            for r in examples.itertuples():
                text = reviews.get((r.user_id, r.target_item_id), "") or "no review text"
                body = f"The customer {'liked' if r.label else 'disliked'} this product. In their words: {text} "
                out.append(
                    (r.example_id, m, views.get(m, "full"), int(r.label), _words(body * 6, 2 * e.reasoning_words), "ok")
                )
        df = pd.DataFrame(out, columns=["example_id", "method", "view", "label", "reasoning", "status"])
        df["n_words"] = df["reasoning"].str.split().str.len()
        return df

    paths.reasoning.parent.mkdir(parents=True, exist_ok=True)
    table(kshot(t.examples, max(cfg.data.kshot_sizes), base_seed=cfg.common.seed)).to_parquet(paths.reasoning)
    test = t.examples[t.examples["split"] == "test"]
    table(test).to_parquet(paths.reference_reasoning)  # BERTScore references of notebook 06


def generation_split(backend, messages, max_new_tokens: int) -> dict:
    """Seconds of one greedy generation batch and of its prefill forward pass alone."""
    import torch

    from rrlib.llm.base import GenerationRequest, GenerationSettings

    settings = GenerationSettings(temperature=0.0, top_p=1.0, seed=0, max_new_tokens=max_new_tokens)
    requests = [
        GenerationRequest(messages=tuple(m), settings=settings, template="bench", template_version="1")
        for m in messages
    ]
    backend.batch_size = max(backend.batch_size, len(requests))
    start = time.perf_counter()
    results = backend.generate(requests)
    total = time.perf_counter() - start
    tok, model = backend.tokenizer, backend.model
    enc = tok([backend.render(m) for m in messages], return_tensors="pt", padding=True, add_special_tokens=False)
    start = time.perf_counter()
    with torch.inference_mode():
        model(**enc, use_cache=True, logits_to_keep=1)
    prefill = time.perf_counter() - start
    return {
        "generation_rows": len(requests),
        "generation_s": total,
        "generation_prefill_s": prefill,
        "generation_prefill_share": prefill / total,
        "generated_tokens": sum(r.completion_tokens for r in results),
    }


def main(argv: list[str] | None = None) -> int:
    from rrlib.config.params import Config, load_params, parse_override
    from rrlib.config.paths import RunPaths

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="folder for the bench run and its cache")
    ap.add_argument("-f", "--file", dest="files", action="append", default=None, help="preset (default: default.yaml)")
    ap.add_argument("-p", "--param", dest="overrides", action="append", nargs=2, default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--method", default="reasoningrec")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16-autocast"), default="auto")
    ap.add_argument("--no-train", action="store_true", help="score with the base model only")
    ap.add_argument("--score-repeats", type=int, default=1, help="score this many times each way (best time kept)")
    ap.add_argument("--prefix", choices=("both", "off", "on"), default="both", help="prefix KV reuse when scoring")
    ap.add_argument(
        "--batch-tokens",
        type=int,
        default=0,
        help="rows x tokens per scoring batch (0: the default; halved when the prefix is reused)",
    )
    ap.add_argument(
        "--generation",
        type=int,
        default=0,
        metavar="N",
        help="also time greedy generation (REASONING_MAX_NEW_TOKENS) of N test prompts in one batch and "
        "its prefill alone (the share any prompt-prefix reuse could save)",
    )
    args = ap.parse_args(argv)

    work = Path(args.work).resolve()
    files = args.files or [str(Path(__file__).resolve().parents[1] / "params" / "default.yaml")]
    overrides = {n: parse_override(n, v) for n, v in args.overrides}
    params = load_params(files, {**overrides, "RUN_DIR": str(work / "run"), "CACHE_DIR": str(work / "cache")})
    cfg = Config(params)
    paths = RunPaths.of(work / "run")
    if not paths.examples.is_file():
        from rrlib.data import prepare

        prepare(params, paths, progress=False)
    if not paths.reasoning.is_file():
        stand_in_enrichment(paths, cfg, [args.method])

    import rrlib.finetune.sft as ft
    from rrlib.data import domain_of, eval_subset
    from rrlib.student import fit_scoring_messages, pad_token_id, scoring_prompt, student_backend, yes_no_probabilities
    from rrlib.student.prompts import PromptContext, build_messages

    if args.precision != "auto":
        ft.training_precision = lambda _cfg: args.precision  # the bench compares both on one machine
    ctx = PromptContext.from_run(paths, domain_of(params), args.method)
    k = cfg.student.train_kshots[0]
    report: dict = {
        "method": args.method,
        "k": k,
        "load_avg_start": os.getloadavg()[0],
        "max_seq_length": cfg.student.max_seq_length,
        "train_batch_size": cfg.student.train_batch_size,
        "grad_accum_steps": cfg.student.grad_accum_steps,
    }
    adapter = None
    if not args.no_train:
        out = paths.adapter_dir(args.method, k, cfg.common.seed, cfg.common.seed)
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(work / "cache" / "adapters", ignore_errors=True)
        s = ft.train(args.method, k, cfg, paths, ctx)
        steps = max(s["global_step"], 1)
        report.update(
            {
                k_: s.get(k_)
                for k_ in (
                    "precision",
                    "train_seconds",
                    "valid_seconds",
                    "train_tokens",
                    "tokens_per_s",
                    "global_step",
                    "final_train_loss",
                    "train_loss",
                    "best_valid_auc",
                )
            }
        )
        report["optimizer_step_s"] = s["train_seconds"] / steps
        report["peak_rss_after_train_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        adapter = out

    backend = student_backend(cfg, adapter)
    test = eval_subset(pd.read_parquet(paths.examples), "test", cfg.data.n_test)
    prompts = [
        scoring_prompt(
            backend.tokenizer,
            fit_scoring_messages(backend, build_messages(args.method, r, ctx), cfg.student.max_seq_length)[0],
        )
        for _, r in test.iterrows()
    ]
    model = backend.model
    pad = pad_token_id(backend.tokenizer)
    modes = {"both": (False, True), "off": (False,), "on": (True,)}[args.prefix]
    batch_tokens = {"batch_tokens": args.batch_tokens} if args.batch_tokens else {}
    scores = {}
    for reuse in modes:
        best = float("inf")
        for _ in range(args.score_repeats):
            start = time.perf_counter()
            scores[reuse] = yes_no_probabilities(
                model, prompts, cfg.evaluate.predict_batch_size, pad_id=pad, prefix_reuse=reuse, **batch_tokens
            )
            best = min(best, time.perf_counter() - start)
        report[f"score_s_prefix_{'on' if reuse else 'off'}"] = best
        report[f"peak_rss_after_prefix_{'on' if reuse else 'off'}_gib"] = (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        )
    if len(scores) == 2:
        report["prefix_max_abs_diff"] = float(abs(scores[True].p_yes - scores[False].p_yes).max())
    if args.generation:
        report.update(
            generation_split(
                backend,
                [
                    fit_scoring_messages(backend, build_messages(args.method, r, ctx), cfg.student.max_seq_length)[0]
                    for _, r in test.head(args.generation).iterrows()
                ],
                cfg.evaluate.reasoning_max_new_tokens,
            )
        )
    from rrlib.student import shared_prefix_length

    report.update(
        {
            "n_scored": len(prompts),
            "mean_prompt_tokens": sum(len(p.ids) for p in prompts) / len(prompts),
            "shared_prefix_tokens": shared_prefix_length(prompts),
            "scoring_dtype": str(model.dtype),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "load_avg_end": os.getloadavg()[0],
            "cpus": os.cpu_count(),
        }
    )
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
