"""Issue 11, what a kill can lose: LocalBackend yields each row of a batch the moment it ends,
while the rest of the batch is still generating, so the cache holds it before the batch is done."""

from __future__ import annotations

from pathlib import Path

import pytest

import rrlib
from rrlib.llm import GenerationRequest, GenerationSettings, LocalBackend

MODEL_CACHE = Path(rrlib.__file__).resolve().parents[1] / "outputs" / "cache"  # shared with test_llm_local


@pytest.mark.slow
def test_a_row_that_ends_early_is_yielded_before_its_batch_ends(monkeypatch):
    be = LocalBackend("embedded", cache_dir=MODEL_CACHE, batch_size=8, dtype="float32")
    settings = GenerationSettings(max_new_tokens=32)
    long = GenerationRequest(
        ({"role": "user", "content": "Count from 1 to 100, separated by commas."},), settings, "t", "1", tag="long"
    )
    short = GenerationRequest(
        ({"role": "user", "content": "Reply with just the word OK."},), settings, "t", "1", tag="short"
    )
    net = be.model
    steps = [0]  # forward passes so far: one per generated token of the batch
    forward = net.forward

    def counting_forward(*args, **kwargs):
        steps[0] += 1
        return forward(*args, **kwargs)

    monkeypatch.setattr(net, "forward", counting_forward)
    finals = []  # what the finished batch computed for every row
    original = LocalBackend._generate_batch

    def keep_final(self, batch, **kw):
        out = original(self, batch, **kw)
        finals.append({p[0]: r for p, r in zip(batch, out)})
        return out

    monkeypatch.setattr(LocalBackend, "_generate_batch", keep_final)
    seen = [(i, r, steps[0]) for i, r in be.iter_generate([long, short])]

    assert [i for i, _, _ in seen] == [1, 0], "the row that ends first must come first"
    (_, r_short, at_short), (_, r_long, at_long) = seen
    assert r_short.finish_reason == "stop" and r_short.completion_tokens < 28, r_short
    assert r_long.finish_reason == "length" and r_long.completion_tokens == 32
    assert at_long == 32 and at_short < at_long - 3, "the early row waited for its batch"
    # the early row is exactly what the finished batch computed for it
    (final,) = finals
    for i, r in ((0, r_long), (1, r_short)):
        assert (r.text, r.completion_tokens, r.finish_reason) == (
            final[i].text,
            final[i].completion_tokens,
            final[i].finish_reason,
        )
