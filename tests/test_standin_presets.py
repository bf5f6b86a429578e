"""Every paper and GPU preset runs end to end on a CPU stand-in (issue 22): the preset file itself,
with only model names, a data slice and budgets layered over it (tests/standin/<preset>.yaml and
tests/standin.py), through the runner, notebooks 01 -> 08. Everything else the preset sets is read
and used: each of its other keys reaches the notebooks with the preset's value, the quantization
flags load through bitsandbytes on the CPU (0.50.2 has a CPU backend: tests/test_gpu_flags.py),
each finetuned method trains at each K of the preset's list with the preset's learning rate,
schedule, early stopping and LoRA settings, and the server presets' teacher is a server.

One hardware concession, recorded in the test and in docs/scale.md: on a CPU without native bf16
(AVX2 only; AVX-512-BF16 or AMX have it) a preset's TEACHER_DTYPE bfloat16 is run in float32 (nf4
layers computing in emulated bf16 took minutes of CPU per batch of 16 descriptions here); the
preset's own bf16 teacher then generates one short answer first, so the bf16 path still runs.

Shared work: one CACHE_DIR for the session (the embedded checkpoint is de-quantized and the tiny
student built once), one data slice per dataset (ML-1M serves paper_ml1m and recpie_gpu, the
All_Beauty file three presets)."""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import pytest
import standin
import yaml

ROOT = Path(__file__).resolve().parents[1]
PRESETS = list(standin.PRESET_DATA)
#: what a stand-in layer may change: model names, the data slice, budgets (sizes, words, tokens,
#: epochs, steps). Anything else (quantization, dtypes, backends, learning rate, schedule, early
#: stopping, LoRA, methods, scope, generation mode, templates) must come from the preset.
MODEL_KEYS = {"TEACHER_MODEL", "STUDENT_MODEL", "SERVER_MODEL", "BERTSCORE_MODEL", "BERTSCORE_NUM_LAYERS"}
DATA_KEYS = {"DATA_DIR", "MAX_USERS", "HISTORY_LEN", "PROFILE_ITEMS"}
BUDGET_KEYS = {
    "KSHOT_SIZES", "TRAIN_KSHOTS", "N_VALID", "N_TEST", "N_VALID_EVAL", "N_REASONING_TEST", "REVIEW_WORDS",
    "DESCRIPTION_WORDS", "PROFILE_WORDS", "REASONING_WORDS", "MAX_EPOCHS", "REASONING_MAX_NEW_TOKENS",
    "BOOTSTRAP_SAMPLES", "SEQ_EPOCHS", "MAX_OUTPUT_RETRIES", "RANK_USERS", "RANK_CANDIDATES",
    "EXP3RT_REVIEW_WORDS", "EXP3RT_REVIEWS_PER_USER", "EXP3RT_REVIEWS_PER_ITEM", "EXP3RT_PROFILE_WORDS",
    "EXP3RT_REASONING_WORDS", "RECPIE_EPOCHS", "RECPIE_MAX_LEN", "RECPIE_RL_ROUNDS", "RECPIE_RL_STEPS",
    "RECPIE_RL_PROMPTS_PER_STEP", "RECPIE_NUM_GENERATIONS", "RECPIE_MAX_COMPLETION_TOKENS", "RECPIE_REWARD_TARGETS",
    "RECPIE_EXPLAIN_HISTORY", "RECPIE_EXPLANATION_WORDS",
}  # fmt: skip
#: set by the test itself: where the slice and the cache are, the stand-in server's URL, and the
#: bf16 concession above
RUNTIME_KEYS = {"DATA_DIR", "CACHE_DIR", "SERVER_URL", "TEACHER_DTYPE"}


def _layer(preset: str) -> dict:
    return yaml.safe_load((standin.STANDIN_DIR / f"{preset}.yaml").read_text())


def _preset(preset: str) -> dict:
    return yaml.safe_load((ROOT / "params" / f"{preset}.yaml").read_text())


@pytest.mark.parametrize("preset", PRESETS)
def test_a_standin_layer_changes_only_models_data_and_budgets(preset):
    from rrlib.config.params import load_params

    layer = _layer(preset)
    stray = sorted(set(layer) - MODEL_KEYS - DATA_KEYS - BUDGET_KEYS)
    assert not stray, f"tests/standin/{preset}.yaml sets {stray}, which are neither model names, data nor budgets"
    load_params(standin.standin_files(preset))  # validates
    text = (standin.STANDIN_DIR / f"{preset}.yaml").read_text()
    assert text.startswith(f"# CPU stand-in of params/{preset}.yaml")


def test_every_paper_and_gpu_preset_has_a_standin():
    gpu = {p.stem for p in (ROOT / "params").glob("*.yaml") if p.stem.startswith(("paper_", "exp3rt_paper_"))}
    assert gpu | {"recpie_gpu", "release_beauty"} == set(PRESETS)


# ---------------------------------------------------------------------------------------
# the runs
# ---------------------------------------------------------------------------------------
class StandIns:
    def __init__(self, base: Path, shared: Path):
        self.base, self.shared = base, shared
        cache = os.environ.get("RRLIB_STANDIN_CACHE")  # reuse between local runs (cold in CI)
        self.cache = Path(cache) if cache else base / "cache"
        self.slices: dict[str, Path] = {}

    def data_dir(self, kind: str) -> str:
        if not kind:
            return ""
        if kind not in self.slices:
            self.slices[kind] = standin.build_slice(kind, self.shared, self.base / "data" / kind)
            if kind == "ml1m":
                assert standin.seed_plot_cache(self.cache, self.slices[kind], self.shared) > 1000
        return str(self.slices[kind])


@pytest.fixture(scope="session")
def standins(tmp_path_factory, shared_data):
    return StandIns(tmp_path_factory.mktemp("standin"), shared_data)


def _bf16_concession(params: dict) -> dict:
    import torch

    from rrlib.llm.local import cpu_has_fast_bf16

    if params.get("TEACHER_DTYPE") == "bfloat16" and not torch.cuda.is_available() and not cpu_has_fast_bf16():
        return {"TEACHER_DTYPE": "float32"}
    return {}


def _bf16_teacher_answers(params: dict) -> dict:
    """The preset's own teacher settings (bf16, its quantization) generate one short answer."""
    from rrlib.config.params import Config
    from rrlib.llm import teacher_backend
    from rrlib.llm.base import GenerationRequest, GenerationSettings

    backend = teacher_backend(Config(params))
    msgs = ({"role": "user", "content": "Name one colour."},)
    res = backend.generate([GenerationRequest(msgs, GenerationSettings(max_new_tokens=4), "check", "1")])[0]
    backend.close()
    assert res.completion_tokens > 0 and res.text.strip(), res
    return dict(backend.identity)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(
    not os.environ.get("RRLIB_STANDIN_RUNS"),
    reason="opt-in (RRLIB_STANDIN_RUNS=1): not yet passing; paper_beauty's stand-in ran 01-05 with the 4-bit teacher "
    "and 8-bit student and stopped in 06 because the 135M teacher at the paper's repetition penalty 1.0 wrote no "
    "usable reasoning for K=2 (docs/scale.md)",
)
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_runs_end_to_end_on_its_cpu_standin(preset, standins):
    from contextlib import nullcontext

    from rrlib.config.params import load_params
    from rrlib.config.paths import STEPS
    from rrlib.workbook.runner import run_pipeline

    files = standin.standin_files(preset)
    overrides = {"CACHE_DIR": str(standins.cache), "DATA_DIR": standins.data_dir(standin.PRESET_DATA[preset])}
    merged = load_params(files, overrides)
    concession = _bf16_concession(merged)
    if concession:
        ident = _bf16_teacher_answers(merged)
        assert ident["dtype"] == "bfloat16" and ident["quantization"] == merged["TEACHER_QUANTIZATION"]
    overrides.update(concession)
    server = nullcontext()
    if merged["TEACHER_BACKEND"] == "server":
        server = standin.EmbeddedChatServer(standins.cache, merged["SERVER_MODEL"])
    logs: list[str] = []
    cpu0, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    with server as srv:
        if srv is not None:
            overrides["SERVER_URL"] = srv.url
        manifest = run_pipeline(
            files, overrides, run_id=preset, outputs_dir=standins.base / "outputs", log=logs.append, progress_bar=False
        )
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    print(f"{preset}: {time.monotonic() - start:.0f} s wall, {cpu:.0f} s CPU in the notebooks' kernels")
    for line in logs:
        print(line)
    run_dir = standins.base / "outputs" / preset

    # every notebook ran
    assert manifest["status"] == "completed", logs[-5:]
    assert [manifest["notebooks"][s]["status"] for s in STEPS] == ["completed"] * len(STEPS)

    # everything else the preset sets reached the notebooks with the preset's value
    preset_keys, layer = _preset(preset), _layer(preset)
    changed = set(layer) | set(overrides)
    used = {k for rec in manifest["notebooks"].values() for k in rec.get("params", {})}
    as_preset = load_params([ROOT / "params" / f"{preset}.yaml"])
    for key in preset_keys:
        if key in changed:
            continue
        assert manifest["params"][key] == as_preset[key], key
        assert key in used, f"{preset} sets {key}, which no notebook of the run read"
    assert set(overrides) <= RUNTIME_KEYS

    # the teacher: its backend and quantization as the preset asks
    teacher = manifest["models"]["teacher"]
    recorded = [r["teacher"] for r in teacher.get("recorded", {}).values() if "teacher" in r]
    if merged["TEACHER_BACKEND"] == "server":
        assert srv is not None and srv.requests_served > 0
        assert all(r.get("backend") == "server" for r in recorded), recorded
    elif recorded:
        assert all(r["quantization"] == merged["TEACHER_QUANTIZATION"] for r in recorded), recorded

    # the students: every finetuned method at every K, with the preset's training settings
    from rrlib.methods import registry

    finetuned = [m for m in merged["METHODS"] if registry.get(m).kind == "finetuned_llm"]
    summaries = [json.loads(p.read_text()) for p in (run_dir / "finetune").glob("*/training_summary.json")]
    got = {(s["method"], int(s["k"])) for s in summaries}
    assert got >= {(m, k) for m in finetuned for k in merged["TRAIN_KSHOTS"]}, got
    for s in summaries:
        assert s["model_identity"]["quantization"] == merged["STUDENT_QUANTIZATION"], s["model_identity"]
        assert s["lr_scheduler"] == merged["LR_SCHEDULER"]
        config = json.loads((Path(s["adapter_dir"]) / "train_config.json").read_text())["params"]
        for key in ("LEARNING_RATE", "EARLY_STOPPING_PATIENCE", "LORA_R", "LORA_ALPHA", "LORA_TARGET_MODULES"):
            assert config[key] == merged[key], (key, config[key], merged[key])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["run_id"] == preset
    assert (run_dir / "inspect" / "report.html").is_file()
