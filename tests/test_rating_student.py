"""EXP3RT's rating student: the rating position across chat templates, single-token ratings
(and a clear error where they are not), the expectation over the rating tokens on fake logits
(exact numbers) and on the embedded model (hand computation), the answer split, the cache."""

import copy

import numpy as np
import pandas as pd
import pytest
from test_predict_scoring import FIXED_PROMPT, OTHER_PROMPT, TEMPLATES, _with_template, embedded_folder

from rrlib.errors import RatingTokenError
from rrlib.prompts.exp3rt import rating_answer, rating_completion, split_rating_answer
from rrlib.student import (
    RATINGS,
    RatingPrompt,
    RatingScoreCache,
    chat_token_ids,
    rating_probabilities,
    rating_scores_from_log_probs,
    rating_scoring_prompt,
)

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
    assert s.expected[0] == pytest.approx(1 * 0.1 + 2 * 0.2 + 3 * 0.3 + 4 * 0.3 + 5 * 0.1)  # 3.1
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
            "input_ids"
        ]
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
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}"
        "{% if m['role'] == 'assistant' %}{{ m['content'][-1] * 3 }}{% endif %}{% endfor %}"
    )
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


# ---------------------------------------------------------------------------------------
# Leakage: no held-out review reaches steps 1-3 or the rating student's training pairs
# ---------------------------------------------------------------------------------------
class _EchoTeacher:
    """Copies what it reads into its answers, so a leaked review would show downstream."""

    identity = {"name": "echo"}

    def __init__(self):
        self.calls = []

    def generate(self, requests):
        import re

        from rrlib.llm.base import GenerationResult

        self.calls.extend(requests)
        out = []
        for r in requests:
            user = r.messages[-1]["content"]
            if r.template == "preference_extraction":
                review = next(line for line in user.splitlines() if line.startswith("Review: "))[len("Review: ") :]
                text = f"Liked: {' '.join(review.split()[:4])}\nDisliked: none"
            elif r.template in ("exp3rt_user_profile", "exp3rt_item_profile"):
                liked = re.findall(r"Liked: ([^|\n]+)", user)
                first, second = (
                    ("Values:", "Avoids:") if r.template == "exp3rt_user_profile" else ("Strengths:", "Weaknesses:")
                )
                text = (
                    f"{first} they keep praising {liked[-1].strip()} and similar qualities in their purchases.\n"
                    f"{second} nothing that they reported."
                )
            else:
                rating = re.search(r"rated this \w+ (\d) out of 5", user).group(1)
                text = f"Analysis: {user.splitlines()[1]}\nRating: {rating}"
            out.append(GenerationResult(text=text, prompt_tokens=5, completion_tokens=9, finish_reason="stop"))
        return out

    def count_tokens(self, messages):
        return 1


class _WordBackend:
    """The lazy student backend's interface that building training pairs uses (no model)."""

    class tokenizer:  # noqa: N801 - mimics a tokenizer object
        def __new__(cls, text, add_special_tokens=False):
            return {"input_ids": str(text).split()}

    def fit_prompt(self, messages, budget):
        return list(messages), False


def test_no_held_out_review_reaches_steps_1_to_3_or_the_rating_student():
    from test_enrich import DirectGenerator, synthetic_tables
    from test_exp3rt_enrich import _cfg, _with_reviews

    from rrlib.enrich.preferences import (
        build_profiles,
        extract_preferences,
        item_reviews,
        usable_profiles,
        user_reviews,
    )
    from rrlib.finetune import build_rating_conversations
    from rrlib.prompts import exp3rt as xp
    from rrlib.prompts.items import ItemCatalog
    from rrlib.reasoning import generate_rating_reasoning

    t = synthetic_tables()
    inter = _with_reviews(t)  # every train/valid/test target's review reads "TARGET REVIEW ..."
    teacher, cfg = _EchoTeacher(), _cfg()
    gen = DirectGenerator(teacher)
    catalog = ItemCatalog.from_tables(t["items"])
    users = sorted(inter["user_id"].unique())
    reviews = pd.concat([user_reviews(inter, users, 8, 50), item_reviews(t["items"], catalog.titles, 5, 50)])
    prefs = extract_preferences(reviews, catalog, domain="beauty", cfg=cfg, generator=gen).table
    profiles = {
        kind: usable_profiles(build_profiles(prefs, kind, ids, catalog, domain="beauty", cfg=cfg, generator=gen).table)
        for kind, ids in (("user", users), ("item", list(catalog.titles)))
    }
    ctx = xp.RatingContext(catalog, profiles["user"], profiles["item"], "beauty")
    examples = t["examples"].copy()
    examples["target_rating"] = 4.0
    train = examples[examples["split"] == "train"]
    step3 = generate_rating_reasoning(train, ctx, cfg=cfg, generator=gen)
    reasoning = dict(zip(step3.table["example_id"], step3.table["reasoning"]))
    pairs, _ = build_rating_conversations(train, ctx, reasoning, _WordBackend(), 4096)
    valid_test = [
        ctx.student_messages(r.user_id, r.target_item_id) for r in examples[examples["split"] != "train"].itertuples()
    ]
    texts = (
        [m["content"] for r in teacher.calls for m in r.messages]
        + [str(x) for x in reasoning.values()]
        + [m["content"] for p in pairs for m in p["prompt"] + p["completion"]]
        + [m["content"] for msgs in valid_test for m in msgs]
    )
    assert not any("TARGET" in x for x in texts)
    # the check can fail: allowed reviews do travel from step 1 to the student's prompt
    assert any("review u0" in m["content"] for p in pairs for m in p["prompt"])
