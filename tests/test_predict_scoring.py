"""Yes/No scoring: token-id discovery on real tokenizers, agreement with a hand computation
on a fixed prompt, batching invariance, and the durable score cache."""
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from rrlib.student import ScoreCache, YesNoTokens, scoring_text, yes_no_probabilities, yes_no_token_ids

FIXED_PROMPT = [
    {"role": "system", "content": "You are a recommender system for beauty and personal-care products."},
    {"role": "user", "content": "The customer liked a lavender shampoo and disliked a plastic comb. "
                                "Will the customer like an argan oil hair mask? Answer \"Prediction: Yes\" or "
                                "\"Prediction: No\"."},
]
OTHER_PROMPT = [{"role": "user", "content": "The customer hated every perfume they tried. Will they like a new "
                                            "perfume? Answer \"Prediction: Yes\" or \"Prediction: No\"."}]

#: built once per machine and shared by test sessions (de-quantizing takes ~20 s)
SHARED_CACHE = Path(tempfile.gettempdir()) / "rrlib-test-shared-cache"


def embedded_folder() -> Path:
    from rrlib.llm.embedded import embedded_checkpoint

    return embedded_checkpoint(SHARED_CACHE)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_folder())


@pytest.fixture(scope="module")
def model():
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(embedded_folder(), dtype=torch.float32).eval()


def test_token_ids_on_embedded_tokenizer(tokenizer):
    tokens = yes_no_token_ids(tokenizer)
    # byte-level BPE: the answer token carries the leading space ("Ġ")
    assert (tokens.yes_token, tokens.no_token) == ("ĠYes", "ĠNo")
    assert tokens.yes_id == tokenizer.convert_tokens_to_ids("ĠYes") != tokenizer.convert_tokens_to_ids("Yes")
    assert tokenizer("Prediction: Yes", add_special_tokens=False)["input_ids"][-1] == tokens.yes_id
    assert tokenizer("Prediction: No", add_special_tokens=False)["input_ids"][-1] == tokens.no_id


def test_token_ids_on_a_wordpiece_tokenizer():
    # a tokenizer without leading-space markers (lower-cased WordPiece): discovery adapts
    from transformers import AutoTokenizer

    from rrlib.llm.embedded import embedded_bertscore_model

    tok = AutoTokenizer.from_pretrained(embedded_bertscore_model())
    tokens = yes_no_token_ids(tok)
    assert (tokens.yes_token, tokens.no_token) == ("yes", "no")


def test_scoring_text_ends_the_prompt_where_training_puts_the_prediction(tokenizer):
    text = scoring_text(tokenizer, FIXED_PROMPT)
    assert text.endswith("<|im_start|>assistant\nPrediction:")
    full = tokenizer.apply_chat_template(FIXED_PROMPT + [{"role": "assistant", "content": "Prediction: Yes\nx"}],
                                         tokenize=False)
    ids_full = tokenizer(full, add_special_tokens=False)["input_ids"]
    ids_text = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids_full[:len(ids_text)] == ids_text
    assert ids_full[len(ids_text)] == yes_no_token_ids(tokenizer).yes_id


@pytest.mark.slow
def test_yes_no_scoring_agrees_with_hand_computation(model, tokenizer):
    import torch

    text = scoring_text(tokenizer, FIXED_PROMPT)
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids).logits[0, -1].double(), dim=-1)
    p_yes_tok = probs[tokenizer.convert_tokens_to_ids("ĠYes")].item()
    p_no_tok = probs[tokenizer.convert_tokens_to_ids("ĠNo")].item()
    hand = p_yes_tok / (p_yes_tok + p_no_tok)

    # batched with a shorter prompt, so the fixed prompt is scored next to left padding
    other = scoring_text(tokenizer, OTHER_PROMPT)
    scores = yes_no_probabilities(model, tokenizer, [other, text], batch_size=2)
    assert scores.p_yes[1] == pytest.approx(hand, abs=1e-4)
    assert scores.yes_no_mass[1] == pytest.approx(p_yes_tok + p_no_tok, rel=1e-3)
    alone = yes_no_probabilities(model, tokenizer, [other], batch_size=1)
    assert scores.p_yes[0] == pytest.approx(alone.p_yes[0], abs=1e-4)
    assert 0.0 < hand < 1.0 and abs(scores.p_yes[0] - scores.p_yes[1]) > 1e-6


def test_score_cache_is_durable_and_keyed_by_identity(tmp_path):
    tokens = YesNoTokens(1, 2, "ĠYes", "ĠNo")
    base = {"name": "m", "adapter_sha256": None}
    tuned = {"name": "m", "adapter_sha256": "abc"}
    k_base, k_tuned = ScoreCache.key(base, "t", tokens), ScoreCache.key(tuned, "t", tokens)
    assert k_base != k_tuned != ScoreCache.key(tuned, "t2", tokens)
    path = tmp_path / "scores.jsonl"
    ScoreCache(path).put_many([{"key": k_base, "p_yes": 0.25, "yes_no_mass": 0.5}])
    with open(path, "a") as f:
        f.write('{"key": "half-writ')  # an interrupted write is skipped, not fatal
    again = ScoreCache(path)
    assert again.get(k_base)["p_yes"] == 0.25 and again.get(k_tuned) is None
