#!/usr/bin/env python
"""The GPU check (issue 22): what a CUDA machine must do before a paper preset runs on it, in
under 8 minutes on one GPU. Run it through ``scripts/gpu_check.sh`` (which caps the time).

Each step prints one line, ``PASS``, ``FAIL`` or ``SKIP``, its name and its figure:

    torch       the CUDA build of torch sees the GPU: name, torch and CUDA versions, bf16 matmul TFLOP/s
    bnb-8bit    the embedded student loads in 8-bit (LLM.int8) through rrlib's loader: footprint, load time,
                P(Yes) on the check prompts against the unquantized model
    bnb-4bit    the same in 4-bit nf4 (bf16 compute), as the paper loads its teacher
    lora-bf16   five LoRA steps (dry run: three) of the embedded student under bf16 autocast: loss before -> after, ms/step
    lora-fp16   the same under fp16 autocast with a gradient scaler (the paper's 8-bit student computes in fp16)
    yes-no      Yes/No scoring on the GPU (bf16) agrees with the CPU (fp32): max |P(Yes) difference| <= 0.02
    smoke       the smoke preset through the runner on the GPU (01-07; its 06 and 07 timed): 06 s, 07 s, rows
    vllm        vLLM (if installed) serves the embedded teacher on the GPU: completion tok/s over 32 requests

``--dry-run`` runs the same steps on the CPU with the tiny random student (``embedded-tiny``), so
that the script itself is tested where no GPU is (tests/test_gpu_check.py): the CUDA-only steps
report their CPU counterpart (bitsandbytes 4/8-bit on its CPU backend, CPU autocast, fp32 against
bf16 on the CPU), the smoke step validates the preset instead of running it, and vLLM is SKIP when
it is not installed. Exit status: 0 when no step failed, 1 otherwise.

    scripts/gpu_check.sh              # on the GPU machine
    scripts/gpu_check.sh --dry-run    # anywhere
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: GPU bf16 scoring against CPU fp32: bf16 keeps 8 mantissa bits, so logits move by ~1e-2 and a
#: normalised two-way probability by less; 0.02 is the line beyond which a GPU run's AUC would not
#: be the CPU run's (README: P(Yes) moves by <= 0.007 with shared-prefix reuse in bf16)
YES_NO_TOLERANCE = 0.02
CHECK_PROMPTS = [
    ("a 2019 science-fiction film about a lonely astronaut", "Interstellar; The Martian; Gravity"),
    ("a slow French romantic drama", "Die Hard; Speed; Mad Max: Fury Road"),
    ("a hydrating face cream for dry skin", "a gentle cleanser; a vitamin C serum; a night cream"),
    ("a heavy metal guitar distortion pedal", "a jazz piano songbook; a ukulele for kids; a violin rosin"),
    ("a children's animated musical", "Frozen; Moana; Coco"),
    ("a four-hour documentary about tax law", "Fast & Furious 7; Transformers; Godzilla"),
    ("a set of bright guitar strings", "a guitar tuner; a capo; a strap"),
    ("a perfume with strong musk notes", "an unscented lotion; fragrance-free soap; a hypoallergenic cream"),
]


class Step:
    def __init__(self, name: str):
        self.name, self.status, self.figure = name, "", ""

    def done(self, status: str, figure: str) -> None:
        self.status, self.figure = status, figure
        print(f"{status:<5} {self.name:<10} {figure}", flush=True)


def _messages(item: str, history: str) -> list[dict[str, str]]:
    return [
        {
            "role": "system",
            "content": "You predict whether a user will like an item. Answer 'Prediction: Yes' or 'Prediction: No'.",
        },
        {"role": "user", "content": f"The user liked: {history}.\nWill the user like {item}?"},
    ]


def _scoring_prompts(tokenizer):
    from rrlib.student import scoring_prompt

    return [scoring_prompt(tokenizer, _messages(item, history)) for item, history in CHECK_PROMPTS]


def _p_yes(model, tokenizer) -> list[float]:
    import torch

    from rrlib.student import pad_token_id, yes_no_probabilities

    with torch.no_grad():
        scores = yes_no_probabilities(
            model, _scoring_prompts(tokenizer), 8, pad_id=pad_token_id(tokenizer), desc="check"
        )
    return [float(x) for x in scores.p_yes]


class Check:
    def __init__(self, dry_run: bool, cache_dir: Path, work: Path):
        import torch

        self.dry_run, self.cache_dir, self.work = dry_run, cache_dir, work
        self.device = "cpu" if dry_run else "cuda"
        self.model = "embedded-tiny" if dry_run else "embedded"
        self.torch = torch
        self.reference: list[float] | None = None  # P(Yes), unquantized fp32 on the CPU

    # helpers ------------------------------------------------------------------------------
    def load(
        self, *, quantization: str = "none", dtype: str = "float32", device: str | None = None, training: bool = False
    ):
        from rrlib.llm.local import load_model_and_tokenizer

        device = device or self.device
        model, tok = load_model_and_tokenizer(
            self.model, quantization=quantization, dtype=dtype, cache_dir=self.cache_dir, for_training=training
        )
        if quantization == "none":
            model = model.to(device)
        return model, tok

    def cpu_reference(self) -> list[float]:
        if self.reference is None:
            model, tok = self.load(device="cpu")
            self.reference = _p_yes(model, tok)
            del model
        return self.reference

    # steps --------------------------------------------------------------------------------
    def step_torch(self) -> tuple[str, str]:
        torch = self.torch
        if self.dry_run:
            a = torch.randn(1024, 1024)
            start = time.perf_counter()
            for _ in range(5):
                a @ a
            gflops = 5 * 2 * 1024**3 / (time.perf_counter() - start) / 1e9
            return (
                "PASS",
                f"torch {torch.__version__} on the CPU (dry run: no CUDA asked), fp32 matmul {gflops:.0f} GFLOP/s",
            )
        if not torch.cuda.is_available():
            return "FAIL", (
                f"torch {torch.__version__} sees no CUDA GPU (torch.version.cuda={torch.version.cuda}); install the "
                f"CUDA build: pip install torch==<pinned> --index-url https://download.pytorch.org/whl/cu128"
            )
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        a @ a
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(20):
            a @ a
        torch.cuda.synchronize()
        tflops = 20 * 2 * 8192**3 / (time.perf_counter() - start) / 1e12
        name = torch.cuda.get_device_name(0)
        mem = torch.cuda.get_device_properties(0).total_memory / 2**30
        return "PASS", (
            f"{name} ({mem:.0f} GiB), torch {torch.__version__} (CUDA {torch.version.cuda}), "
            f"bf16 matmul {tflops:.0f} TFLOP/s, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'NO'}"
        )

    def _step_bnb(self, quantization: str) -> tuple[str, str]:
        import bitsandbytes

        start = time.perf_counter()
        model, tok = self.load(quantization=quantization, dtype="float16" if quantization == "8bit" else "bfloat16")
        seconds = time.perf_counter() - start
        kinds = {type(m).__name__ for m in model.modules() if "bitsandbytes" in type(m).__module__}
        if not kinds:
            return "FAIL", f"loaded without bitsandbytes layers ({quantization} asked)"
        p = _p_yes(model, tok)
        ref = self.cpu_reference()
        diff = max(abs(a - b) for a, b in zip(p, ref))
        footprint = model.get_memory_footprint() / 2**20
        where = "CPU backend (dry run)" if self.dry_run else "GPU"
        if not all(math.isfinite(x) for x in p):
            return "FAIL", f"P(Yes) not finite in {quantization}: {p}"
        return "PASS", (
            f"bitsandbytes {bitsandbytes.__version__} on the {where}: {'/'.join(sorted(kinds))}, "
            f"{footprint:.0f} MiB, load {seconds:.1f} s, max |P(Yes) - unquantized fp32| {diff:.3f}"
        )

    def step_bnb_8bit(self) -> tuple[str, str]:
        return self._step_bnb("8bit")

    def step_bnb_4bit(self) -> tuple[str, str]:
        return self._step_bnb("4bit")

    def _step_lora(self, dtype: str) -> tuple[str, str]:
        from peft import LoraConfig, get_peft_model

        torch = self.torch
        model, tok = self.load(training=True)
        model = get_peft_model(
            model,
            LoraConfig(
                r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
            ),
        )
        # the dry run keeps it small: bf16/fp16 autocast on a CPU without native half precision is slow
        n_steps, prompts, lr = (3, CHECK_PROMPTS[:2], 1e-2) if self.dry_run else (5, CHECK_PROMPTS, 1e-3)
        texts = [
            tok.apply_chat_template(
                [
                    *_messages(item, history),
                    {"role": "assistant", "content": f"Prediction: {'Yes' if i % 2 else 'No'}"},
                ],
                tokenize=False,
            )
            for i, (item, history) in enumerate(prompts)
        ]
        batch = tok(texts, return_tensors="pt", padding=True).to(self.device)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
        amp = getattr(torch, dtype)
        scaler = torch.amp.GradScaler(self.device, enabled=dtype == "float16" and self.device == "cuda")
        losses, start = [], time.perf_counter()
        for _ in range(n_steps):
            with torch.autocast(self.device, dtype=amp):
                loss = model(**batch, labels=labels).loss
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
            losses.append(float(loss.detach()))
        if self.device == "cuda":
            torch.cuda.synchronize()
        ms = (time.perf_counter() - start) / n_steps * 1000
        if not all(math.isfinite(x) for x in losses):
            return "FAIL", f"non-finite loss under {dtype} autocast: {losses}"
        if not losses[-1] < losses[0]:
            return (
                "FAIL",
                f"loss did not fall in {n_steps} steps under {dtype} autocast: {losses[0]:.3f} -> {losses[-1]:.3f}",
            )
        return "PASS", f"{dtype} autocast on {self.device}: loss {losses[0]:.3f} -> {losses[-1]:.3f}, {ms:.0f} ms/step"

    def step_lora_bf16(self) -> tuple[str, str]:
        return self._step_lora("bfloat16")

    def step_lora_fp16(self) -> tuple[str, str]:
        return self._step_lora("float16")

    def step_yes_no(self) -> tuple[str, str]:
        ref = self.cpu_reference()
        model, tok = self.load(dtype="bfloat16")
        p = _p_yes(model, tok)
        diff = max(abs(a - b) for a, b in zip(p, ref))
        what = f"{self.device} bf16 vs CPU fp32 on {len(p)} prompts: max |dP(Yes)| {diff:.4f} (tolerance {YES_NO_TOLERANCE})"
        return ("PASS" if diff <= YES_NO_TOLERANCE else "FAIL"), what

    def step_smoke(self) -> tuple[str, str]:
        preset = ROOT / "params" / "smoke.yaml"
        py = sys.executable
        if self.dry_run:
            out = subprocess.run(
                [py, "-m", "rrlib", "validate", "-f", str(preset), "-p", "CACHE_DIR", str(self.cache_dir)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if out.returncode != 0:
                return "FAIL", f"validate exited {out.returncode}: {out.stderr.strip()[-300:]}"
            line = next((s for s in out.stdout.splitlines() if s.startswith("notebooks to run")), "")
            return "PASS", f"dry run: params/smoke.yaml validates ({line.split(':', 1)[-1].strip()})"
        outputs = self.work / "outputs"
        cmd = [
            py, "-m", "rrlib", "run", "-f", str(preset), "--run-id", "gpu-check", "--outputs", str(outputs),
            "--only", "01,02,03,04,05,06,07", "--no-progress", "-p", "CACHE_DIR", str(self.cache_dir),
        ]  # fmt: skip
        start = time.perf_counter()
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=330)
        wall = time.perf_counter() - start
        manifest_path = outputs / "gpu-check" / "manifest.json"
        if out.returncode != 0 or not manifest_path.is_file():
            return "FAIL", f"smoke run exited {out.returncode} after {wall:.0f} s: {out.stderr.strip()[-400:]}"
        nbs = json.loads(manifest_path.read_text())["notebooks"]
        sec = {s[:2]: rec.get("seconds") or 0.0 for s, rec in nbs.items()}
        device = "?"
        summaries = list((outputs / "gpu-check" / "finetune").glob("*/training_summary.json"))
        if summaries:
            device = json.loads(summaries[0].read_text()).get("device", "?")
        import pandas as pd

        results = pd.read_csv(outputs / "gpu-check" / "evaluate" / "results.csv")
        status = "PASS" if device == "cuda" else "FAIL"
        return status, (
            f"01-07 in {wall:.0f} s; 06 {sec.get('06', 0):.0f} s, 07 {sec.get('07', 0):.0f} s on {device}; "
            f"{len(results)} result rows, {len(summaries)} adapters"
        )

    def step_vllm(self) -> tuple[str, str]:
        python = _vllm_python()
        if python is None:
            return (
                "SKIP",
                "vLLM is not installed (no .venv-vllm, RRLIB_VLLM_PYTHON or importable vllm): `make vllm` on CPU, `pip install vllm` on a GPU",
            )
        if self.dry_run:
            return (
                "SKIP",
                f"dry run: vLLM found at {python}; it is started on the GPU only (tests/test_vllm_server.py runs its CPU build)",
            )
        from rrlib.llm.embedded import embedded_checkpoint
        from rrlib.llm.engines import EngineProcess

        model = embedded_checkpoint(self.cache_dir)
        cmd = [
            str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--host", "127.0.0.1",
            "--port", "{port}", "--served-model-name", "teacher", "--max-model-len", "2048",
            "--gpu-memory-utilization", "0.3", "--disable-log-stats",
        ]  # fmt: skip
        env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_NO_USAGE_STATS="1")
        env.pop("PYTHONPATH", None)
        proc = EngineProcess(cmd, name="vllm", log_path=self.work / "vllm.log", startup_timeout_s=240, env=env)
        start = time.perf_counter()
        with proc:
            url = proc.url
            startup = time.perf_counter() - start
            import concurrent.futures

            import requests

            def one(i: int) -> int:
                body = {
                    "model": "teacher",
                    "messages": [{"role": "user", "content": f"Describe product number {i} in 40 words."}],
                    "max_tokens": 64,
                    "temperature": 0.0,
                }
                r = requests.post(f"{url}/chat/completions", json=body, timeout=120)
                r.raise_for_status()
                return int(r.json()["usage"]["completion_tokens"])

            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(32) as pool:
                tokens = sum(pool.map(one, range(32)))
            rate = tokens / (time.perf_counter() - t0)
        return (
            "PASS",
            f"vLLM served the embedded teacher: startup {startup:.0f} s, {tokens} tokens, {rate:.0f} completion tok/s",
        )


def _vllm_python() -> Path | None:
    from rrlib.llm.engines import vllm_python

    found = vllm_python()
    if found is not None:
        return found
    import importlib.util

    return Path(sys.executable) if importlib.util.find_spec("vllm") is not None else None


STEPS: list[tuple[str, str]] = [
    ("torch", "step_torch"),
    ("bnb-8bit", "step_bnb_8bit"),
    ("bnb-4bit", "step_bnb_4bit"),
    ("lora-bf16", "step_lora_bf16"),
    ("lora-fp16", "step_lora_fp16"),
    ("yes-no", "step_yes_no"),
    ("smoke", "step_smoke"),
    ("vllm", "step_vllm"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="the same steps on the CPU with the tiny student")
    parser.add_argument("--cache", help="CACHE_DIR for the models and the smoke run (default: a temporary folder)")
    parser.add_argument("--only", help="comma-separated step names")
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")  # one line per step, no progress bars
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    work = Path(tempfile.mkdtemp(prefix="rrlib-gpu-check-"))
    cache = Path(args.cache) if args.cache else work / "cache"
    wanted = [s.strip() for s in args.only.split(",")] if args.only else [n for n, _ in STEPS]
    unknown = sorted(set(wanted) - {n for n, _ in STEPS})
    if unknown:
        parser.error(f"unknown step(s) {unknown}; steps: {', '.join(n for n, _ in STEPS)}")
    print(f"gpu_check: {'DRY RUN on the CPU' if args.dry_run else 'GPU'}; work folder {work}", flush=True)
    total = time.perf_counter()
    try:
        check = Check(args.dry_run, cache, work)
    except Exception as e:  # noqa: BLE001 - torch itself is broken: nothing else can run
        Step("torch").done("FAIL", f"{type(e).__name__}: {e}")
        return 1
    results: list[Step] = []
    for name, method in STEPS:
        if name not in wanted:
            continue
        step = Step(name)
        start = time.perf_counter()
        fn: Callable[[], tuple[str, str]] = getattr(check, method)
        try:
            status, figure = fn()
        except Exception as e:  # noqa: BLE001 - one failed step must not hide the others
            status, figure = "FAIL", f"{type(e).__name__}: {str(e).strip()[:400]}"
            if os.environ.get("RRLIB_GPU_CHECK_TRACE"):
                traceback.print_exc()
        step.done(status, f"{figure} [{time.perf_counter() - start:.1f} s]")
        results.append(step)
        if name == "torch" and status == "FAIL":
            break
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    print(
        f"gpu_check: {counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['SKIP']} SKIP in "
        f"{time.perf_counter() - total:.0f} s",
        flush=True,
    )
    if not args.cache:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
