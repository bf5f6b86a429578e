"""Constrained decoding on the transformers backend: each row of a batch that carries a grammar
(:attr:`rrlib.llm.base.GenerationRequest.grammar`, GBNF) is decoded under it with llguidance.

Why llguidance: it reads llama.cpp's GBNF as is, so one grammar text serves the transformers
backend, llama.cpp (``grammar``) and vLLM (``structured_outputs``); it is one small wheel with no
dependencies (xgrammar pulls in triton, outlines a stack of its own); and it computes a token mask
in well under a millisecond per row, so it costs nothing next to a CPU forward pass.

:class:`GrammarMask` is a logits processor. Before each step it feeds every constrained row's
previous token to that row's matcher, then sets the logits of the tokens the grammar forbids to
``-inf``; it runs after the repetition penalty and before the per-row sampler, so greedy and
sampled rows alike pick only allowed tokens. When a row's grammar is complete, only its
end-of-sequence token stays allowed. Rows without a grammar are left alone.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Sequence
from typing import Any

_LOCK = threading.Lock()
_TOKENIZERS: dict[int, Any] = {}


def llguidance_version() -> str:
    import llguidance

    return str(llguidance.__version__)


@functools.lru_cache(maxsize=256)
def compile_grammar(gbnf: str) -> str:
    """llguidance's grammar for a GBNF text; raises ValueError naming the problem."""
    import llguidance

    try:
        compiled = llguidance.grammar_from("gbnf", gbnf)
    except Exception as e:  # noqa: BLE001 - llguidance raises ValueError or its own errors
        raise ValueError(f"grammar does not compile: {e}\n{gbnf}") from e
    error = llguidance.LLMatcher.validate_grammar(compiled)
    if error:
        raise ValueError(f"grammar does not compile: {error}\n{gbnf}")
    return compiled


def ll_tokenizer(hf_tokenizer) -> Any:
    """The llguidance view of a fast HF tokenizer (built once per tokenizer object: ~1 s)."""
    import llguidance.hf

    with _LOCK:
        found = _TOKENIZERS.get(id(hf_tokenizer))
        if found is None or found[0] is not hf_tokenizer:
            found = (hf_tokenizer, llguidance.hf.from_tokenizer(hf_tokenizer))
            _TOKENIZERS[id(hf_tokenizer)] = found
        return found[1]


class GrammarMask:
    """A logits processor that keeps each constrained row inside its grammar (rows whose grammar
    is '' are free); once a row's grammar is complete only ``eos_ids`` stay allowed. ``errors``
    lists rows whose matcher failed (they are left unconstrained from there on)."""

    def __init__(self, hf_tokenizer, grammars: Sequence[str], eos_ids: Iterable[int]):
        import llguidance

        tok = ll_tokenizer(hf_tokenizer)
        self.matchers = [llguidance.LLMatcher(tok, compile_grammar(g)) if g else None for g in grammars]
        self.eos = sorted({int(e) for e in eos_ids})
        self.done = [m is None for m in self.matchers]
        self.errors: dict[int, str] = {}
        self._started = False

    def __call__(self, input_ids, scores):
        import numpy as np
        import torch

        if self._started:
            last = input_ids[:, -1].tolist()
            for j, m in enumerate(self.matchers):
                if m is None or self.done[j]:
                    continue
                if int(last[j]) in self.eos:  # the row ended
                    self.done[j] = True
                elif not m.is_stopped() and not m.consume_token(int(last[j])):
                    self._fail(j, m)
        self._started = True
        vocab = scores.shape[-1]
        for j, m in enumerate(self.matchers):
            if m is None or self.done[j]:
                continue
            allowed = np.zeros(vocab, dtype=bool)
            if m.is_stopped():  # the grammar is complete: end the answer here
                allowed[[e for e in self.eos if e < vocab]] = True
            else:
                bits = np.unpackbits(np.frombuffer(m.compute_bitmask(), dtype=np.uint8), bitorder="little")
                if m.is_error() or not bits.any():
                    self._fail(j, m)
                    continue
                n = min(vocab, len(bits))
                allowed[:n] = bits[:n].astype(bool)
            scores[j, torch.from_numpy(~allowed).to(scores.device)] = float("-inf")
        return scores

    def _fail(self, j: int, m) -> None:
        self.errors[j] = m.get_error() or "no token allowed"
        self.done[j] = True


__all__ = ["GrammarMask", "compile_grammar", "ll_tokenizer", "llguidance_version"]
