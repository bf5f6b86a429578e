"""The offline sentence encoder (shipped all-MiniLM-L6-v2): unit vectors that put similar texts
close, deterministic, and a durable cache keyed by model identity and text that makes reruns
free, survives a torn last line, and never mixes vectors of different settings."""

from __future__ import annotations

import numpy as np
import pytest

from rrlib.errors import EmbeddedModelError
from rrlib.io import JsonlWarning
from rrlib.llm.encoder import TextEncoder

TEXTS = [
    "a moisturizing cream for very dry skin",
    "a rich hydrating cream for dry skin",
    "a red matte lipstick",
    "a moisturizing cream for very dry skin",
    "",
]


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(cache_dir=None)


def test_unit_vectors_and_similarity(encoder):
    v = encoder.encode(TEXTS)
    assert v.shape == (5, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # two dry-skin creams are closer than cream vs lipstick
    np.testing.assert_array_equal(v[0], v[3])  # a repeated text is embedded once
    np.testing.assert_array_equal(encoder.encode(TEXTS), v)  # deterministic
    with pytest.raises(ValueError, match="must be strings"):
        encoder.encode(["ok", None])


def test_cache_makes_reruns_free_and_is_keyed_by_identity(tmp_path, encoder):
    first = TextEncoder(cache_dir=tmp_path)
    v = first.encode(TEXTS)
    assert first.stats == {"cached": 0, "computed": 4}
    np.testing.assert_allclose(v, encoder.encode(TEXTS), atol=1e-6)
    files = list((tmp_path / "embeddings").glob("*.jsonl"))
    assert len(files) == 1 and len(files[0].read_text().splitlines()) == 4

    again = TextEncoder(cache_dir=tmp_path)
    w = again.encode(TEXTS)
    assert again.stats == {"cached": 5, "computed": 0} and again._model is None  # the model never loaded
    np.testing.assert_array_equal(w, v)  # bit-for-bit from the cache

    # a kill mid-write leaves a torn last line: skipped with a warning, that text recomputed
    with open(files[0], "ab") as f:
        f.write(b'{"key": "abc", "v": "AAAA')
    with pytest.warns(JsonlWarning, match="damaged"):
        torn = TextEncoder(cache_dir=tmp_path)
        torn.encode(["a new text about shampoo"])
    assert torn.stats["computed"] == 1

    # other settings = another identity = another file; no vector is reused across them
    short = TextEncoder(cache_dir=tmp_path, max_length=16)
    assert short.identity != first.identity
    short.encode(TEXTS[:1])
    assert short.stats == {"cached": 0, "computed": 1}
    assert len(list((tmp_path / "embeddings").glob("*.jsonl"))) == 2

    # cache=False neither reads nor writes
    lines = len(files[0].read_text().splitlines())
    off = TextEncoder(cache_dir=tmp_path)
    off.encode(["never stored"], cache=False)
    assert off.stats == {"cached": 0, "computed": 1} and len(files[0].read_text().splitlines()) == lines


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(EmbeddedModelError, match="holds no config.json"):
        TextEncoder(tmp_path)
