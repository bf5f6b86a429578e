#!/usr/bin/env python
"""fp32 vs bf16 autocast for LoRA training of the student on this CPU: two copies of the same
LoRA model (same initialisation, fp32 master weights) take the same optimizer steps on the
same K-shot examples, interleaved step by step so both see the same machine load; per-step time
and loss of each, and the full-logits loss path for reference.

    python scripts/benchmark_precision.py --work /tmp/student-bench --steps 6

Uses the bench run folder of scripts/benchmark_student.py (built there on first use) and the
training loss of :mod:`rrlib.finetune` (logits on completion positions only). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps (one example each)")
    ap.add_argument("--method", default="reasoningrec")
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args(argv)

    import torch
    from peft import LoraConfig, get_peft_model

    from rrlib.config.params import Config, load_params
    from rrlib.config.paths import RunPaths
    from rrlib.data import domain_of
    from rrlib.finetune import lm_head_in_fp32, training_data
    from rrlib.student import chat_token_ids, load_student_for_training, scoring_prompt
    from rrlib.student.prompts import PromptContext

    work = Path(args.work).resolve()
    default = Path(__file__).resolve().parents[1] / "params" / "default.yaml"
    params = load_params([default], {"RUN_DIR": str(work / "run"), "CACHE_DIR": str(work / "cache")})
    cfg = Config(params)
    paths = RunPaths.of(work / "run")
    if not paths.reasoning.is_file():
        raise SystemExit(f"build the bench run first: python scripts/benchmark_student.py --work {work}")
    ctx = PromptContext.from_run(paths, domain_of(params), args.method)
    data = training_data(args.method, cfg.student.train_kshots[0], cfg, paths, ctx)
    tok = data.backend.tokenizer
    batches = []
    for pair in data.pairs[: args.steps]:
        ids = chat_token_ids(tok, pair["prompt"] + pair["completion"])
        start = len(scoring_prompt(tok, pair["prompt"]).ids)  # the completion starts at the answer
        labels = [-100] * start + ids[start:]
        batches.append((torch.tensor([ids]), torch.tensor([labels])))

    st = cfg.student
    models = {}
    for name in ("fp32", "bf16-autocast"):
        base, _ = load_student_for_training(cfg)
        torch.manual_seed(0)
        lora = LoraConfig(
            r=st.lora_r,
            lora_alpha=st.lora_alpha,
            lora_dropout=0.0,
            target_modules=list(st.lora_target_modules),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(base, lora)
        models[name] = (model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr))

    def step(name, ids, labels):
        model, opt = models[name]
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != -100
        ctx_ = torch.autocast("cpu", dtype=torch.bfloat16) if name != "fp32" else contextlib.nullcontext()
        t0 = time.perf_counter()
        with ctx_, lm_head_in_fp32(model):
            logits = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels[:, 1:][keep[:, :-1]])
        loss.backward()
        opt.step()
        opt.zero_grad()
        return time.perf_counter() - t0, float(loss.detach())

    out = {n: {"step_s": [], "loss": []} for n in models}
    tokens = 0
    for i, (ids, labels) in enumerate(batches):
        order = list(models) if i % 2 == 0 else list(models)[::-1]  # alternate who goes first
        for name in order:
            seconds, loss = step(name, ids, labels)
            out[name]["step_s"].append(round(seconds, 2))
            out[name]["loss"].append(round(loss, 4))
        tokens += ids.shape[1]
    for r in out.values():
        r["mean_step_s"] = sum(r["step_s"][1:]) / max(len(r["step_s"]) - 1, 1)  # first step warms up
        r["tokens_per_s"] = tokens / sum(r["step_s"])
    print(
        json.dumps(
            {
                "steps": len(batches),
                "mean_tokens": tokens / len(batches),
                "results": out,
                "load_avg": os.getloadavg()[0],
                "cpus": os.cpu_count(),
                "threads": torch.get_num_threads(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
