"""EXP3RT's rating student: the rating position across chat templates, single-token ratings
(and a clear error where they are not), the expectation over the rating tokens on fake logits
(exact numbers) and on the embedded model (hand computation), the answer split, the cache."""
import copy

import numpy as np
import pytest

from rrlib.prompts.exp3rt import rating_answer, rating_completion, split_rating_answer
from rrlib.student import (
    RATINGS,
    RatingPrompt,
    RatingScoreCache,
    RatingTokenError,
    chat_token_ids,
    rating_probabilities,
    rating_scores_from_log_probs,
    rating_scoring_prompt,
)
from tests.test_predict_scoring import FIXED_PROMPT, OTHER_PROMPT, TEMPLATES, _with_template, embedded_folder

REASONING = "Analysis: the user values warm tone and the guitar is praised for its warm tone."


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_folder())


def test_expectation_over_rating_tokens_exact_numbers():
    # P over 1..5 = (0.1, 0.2, 0.3, 0.3, 0.1) times any common factor (mass 0.5 of the vocabulary)
    p = np.array([[0.1, 0.2, 0.3, 0.3, 0.1], [0.0, 0.0, 0.0, 0.0, 1.0]]) * 0.5
    with np.errstate(divide="ignore"):
        lp = np.log(p)
    s = rating_scores_from_log_probs(lp)
    assert s.expected[0] == pytest.approx(1 * .1 + 2 * .2 + 3 * .3 + 4 * .3 + 5 * .1)  # 3.1
    assert s.expected[0] == pytest.approx(3.1)
    assert s.argmax.tolist() == [3.0, 5.0]  # equal 3 and 4: the lower one
    assert s.expected[1] == pytest.approx(5.0)
    np.testing.assert_allclose(s.probs[0], [0.1, 0.2, 0.3, 0.3, 0.1])
    np.testing.assert_allclose(s.mass, [0.5, 0.5])


@pytest.mark.parametrize("name", list(TEMPLATES))
@pytest.mark.parametrize("reasoning", ["", REASONING])
def test_rating_position_is_the_training_sequence_position(tokenizer, name, reasoning):
    from trl.data_utils import _tokenize

    tok = _with_template(tokenizer, name)
    rp = rating_scoring_prompt(tok, FIXED_PROMPT, reasoning)
    at = len(rp.ids)
    for r, rid in zip(RATINGS, rp.rating_ids):
        train_ids = _tokenize(tok, FIXED_PROMPT + [{"role": "assistant", "content": rating_answer(reasoning, r)}])[
            "input_ids"]
        assert list(rp.ids) == train_ids[:at] and train_ids[at] == rid
        assert tok.decode([rid]).strip() == str(r)
    assert tok.decode(list(rp.ids)).rstrip().endswith("Rating:")


def test_embedded_tokenizer_has_single_token_digits(tokenizer):
    rp = rating_scoring_prompt(tokenizer, FIXED_PROMPT, REASONING)
    assert len(set(rp.rating_ids)) == 5
    assert [tokenizer.decode([i]).strip() for i in rp.rating_ids] == ["1", "2", "3", "4", "5"]


def test_a_tokenizer_that_merges_digits_is_refused(tokenizer):
    tok = copy.deepcopy(tokenizer)
    # a template that writes the rating twice: "Rating: 44" is not one token per rating in this BPE
    tok.chat_template = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}"
                         "{% if m['role'] == 'assistant' %}{{ m['content'][-1] * 3 }}{% endif %}{% endfor %}")
    with pytest.raises(RatingTokenError, match="not one token each|decodes to"):
        rating_scoring_prompt(tok, FIXED_PROMPT)


def test_split_rating_answer():
    a = split_rating_answer(REASONING + "\nRating: 4\nextra")
    assert (a.reasoning, a.stated, a.format_ok) == (REASONING, 4.0, True)
    b = split_rating_answer("Analysis: cut off mid")
    assert (b.reasoning, b.stated, b.format_ok) == ("Analysis: cut off mid", None, False)
    assert split_rating_answer(None).format_ok is False
    assert rating_completion(REASONING, 3).endswith("\nRating: 3")
    assert rating_answer("", 2) == "Rating: 2"


def test_rating_cache_keyed_by_identity_and_ids(tmp_path):
    cache = RatingScoreCache(tmp_path / "r.jsonl")
    p = RatingPrompt((1, 2, 3), (11, 12, 13, 14, 15))
    k1, k2 = RatingScoreCache.key({"m": "a"}, p), RatingScoreCache.key({"m": "b"}, p)
    assert k1 != k2 and k1 != RatingScoreCache.key({"m": "a"}, RatingPrompt((1, 2), p.rating_ids))
    cache.put_many([{"key": k1, "log_probs": [0.0] * 5}])
    assert RatingScoreCache(tmp_path / "r.jsonl").get(k1)["log_probs"] == [0.0] * 5


@pytest.mark.slow
def test_rating_scores_agree_with_hand_computation(tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(embedded_folder(), dtype=torch.float32).eval()
    rp = rating_scoring_prompt(tokenizer, FIXED_PROMPT, REASONING)
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=torch.tensor([list(rp.ids)])).logits[0, -1].double(), dim=-1)
    p = np.array([probs[i].item() for i in rp.rating_ids])
    hand = float((p / p.sum()) @ np.arange(1, 6))
    other = rating_scoring_prompt(tokenizer, OTHER_PROMPT)
    s = rating_probabilities(model, [other, rp], batch_size=2, pad_id=tokenizer.eos_token_id)
    assert s.expected[1] == pytest.approx(hand, abs=1e-4)
    assert s.mass[1] == pytest.approx(p.sum(), rel=1e-3)
    assert 1.0 <= s.expected[0] <= 5.0 and s.argmax[1] == float(np.argmax(p) + 1)
    assert chat_token_ids(tokenizer, FIXED_PROMPT)  # the tokenizer renders the prompt
