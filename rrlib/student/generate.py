"""Greedy generation by the student (reasoning and answers), in batches bounded by tokens."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rrlib.llm.base import Message
from rrlib.student.scoring import chat_token_ids, pad_token_id

log = logging.getLogger(__name__)


def greedy_generate(
    model, tokenizer, messages: Sequence[Sequence[Message]], max_new_tokens: int, batch_size: int = 8
) -> list[str]:
    """Greedy answers of the model being trained (validation of reasoning-first students):
    the chat template's generation prompt, left-padded batches, special tokens dropped."""
    import torch

    was_training = model.training
    model.eval()
    pad = pad_token_id(tokenizer)
    device = next(model.parameters()).device
    out: list[str] = []
    try:
        with torch.inference_mode():
            for start in range(0, len(messages), batch_size):
                seqs = [
                    chat_token_ids(tokenizer, m, add_generation_prompt=True)
                    for m in messages[start : start + batch_size]
                ]
                width = max(len(q) for q in seqs)
                x = torch.full((len(seqs), width), pad, dtype=torch.long)
                att = torch.zeros((len(seqs), width), dtype=torch.long)
                for row, q in enumerate(seqs):
                    x[row, width - len(q) :] = torch.tensor(q)
                    att[row, width - len(q) :] = 1
                gen = model.generate(
                    input_ids=x.to(device),
                    attention_mask=att.to(device),
                    do_sample=False,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad,
                )
                out += tokenizer.batch_decode(gen[:, width:].cpu(), skip_special_tokens=True)
    finally:
        model.train(was_training)
    return out
