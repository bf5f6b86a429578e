"""Loading the student: the right dtype, the base model or an adapter on it, and the model used
for training."""

from __future__ import annotations

import logging
from pathlib import Path

from rrlib.config.params import Config
from rrlib.config.paths import resolve_path
from rrlib.errors import MissingArtifactError
from rrlib.llm import check_model_path, checked_quantization
from rrlib.llm.local import LocalBackend, load_model_and_tokenizer

log = logging.getLogger(__name__)

#: most (prompt + new tokens) x rows in one student generation batch: the default's 32 reasoning
#: prompts in one batch rose 2.6 GB above the loaded model and took 40 s; at 12288 (3 batches)
#: 1.3 GB and 33 s (less padding, a smaller KV cache to extend at every step)
GENERATION_BATCH_TOKENS = 12288

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
ADAPTER_SUBDIR = "adapter"


# ---------------------------------------------------------------------------------------
# The student model (through the shared local backend, which loads lazily)
# ---------------------------------------------------------------------------------------
def student_dtype(cfg: Config) -> str:
    """STUDENT_DTYPE, except that 'auto' with 8-bit weights computes in fp16 as in the paper."""
    chosen = cfg.student.student_dtype
    if chosen == "auto" and cfg.student.student_quantization == "8bit":
        return "float16"
    return chosen


def resolve_adapter(adapter_dir: Path | None) -> Path | None:
    """The folder that holds exactly the adapter files: ``<adapter_dir>/adapter`` as written by
    :func:`rrlib.finetune.train`, or ``adapter_dir`` itself when it holds them."""
    if adapter_dir is None:
        return None
    adapter_dir = Path(adapter_dir)
    for folder in (adapter_dir / ADAPTER_SUBDIR, adapter_dir):
        if all((folder / f).is_file() for f in ADAPTER_FILES):
            return folder
    raise MissingArtifactError(
        f"{adapter_dir} holds no finished LoRA adapter (expected {list(ADAPTER_FILES)} in "
        f"{adapter_dir / ADAPTER_SUBDIR}); run notebook 06_finetune (or scripts/train.py) "
        f"for this method and K first."
    )


def student_backend(cfg: Config, adapter_dir: Path | None = None) -> LocalBackend:
    """A lazy :class:`rrlib.llm.local.LocalBackend` for STUDENT_MODEL (+ adapter): its
    ``identity`` (with the adapter's hash), tokenizer and prompt-fitting cost no model load.
    Reads STUDENT_MODEL/REVISION/DTYPE/QUANTIZATION, PREDICT_BATCH_SIZE, MAX_SEQ_LENGTH,
    TRUST_REMOTE_CODE and CACHE_DIR."""

    s = cfg.student
    check_model_path(s.student_model, "STUDENT_MODEL")
    return LocalBackend(
        s.student_model,
        cache_dir=resolve_path(cfg.common.cache_dir),
        revision=s.student_revision,
        dtype=student_dtype(cfg),
        quantization=checked_quantization(s.student_quantization, "STUDENT_QUANTIZATION"),
        batch_size=cfg.evaluate.predict_batch_size,
        batch_tokens=GENERATION_BATCH_TOKENS,
        max_prompt_tokens=s.max_seq_length,
        trust_remote_code=cfg.teacher.trust_remote_code,
        adapter=resolve_adapter(adapter_dir),
        role="student",
    )


def load_student_for_training(cfg: Config):
    """(model, tokenizer) of the base student ready for LoRA training."""
    s = cfg.student
    return load_model_and_tokenizer(
        s.student_model,
        revision=s.student_revision,
        quantization=s.student_quantization,
        dtype=student_dtype(cfg),
        cache_dir=resolve_path(cfg.common.cache_dir),
        trust_remote_code=cfg.teacher.trust_remote_code,
        for_training=True,
    )
