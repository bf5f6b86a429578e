"""Yes/No scoring: the scored position is the training sequence's answer position on three
chat templates (ChatML, Llama-2-chat, Mistral-instruct), token-id discovery on real tokenizers,
agreement with a hand computation on a fixed prompt, batching invariance, the durable score
cache."""

import copy
import tempfile
from pathlib import Path

import numpy as np
import pytest

from rrlib.student import ScoreCache, ScoringPrompt, answer_tokens, chat_token_ids, scoring_prompt, yes_no_probabilities

FIXED_PROMPT = [
    {"role": "system", "content": "You are a recommender system for beauty and personal-care products."},
    {
        "role": "user",
        "content": "The customer liked a lavender shampoo and disliked a plastic comb. "
        'Will the customer like an argan oil hair mask? Answer "Prediction: Yes" or '
        '"Prediction: No".',
    },
]
OTHER_PROMPT = [
    {
        "role": "user",
        "content": "The customer hated every perfume they tried. Will they like a new "
        'perfume? Answer "Prediction: Yes" or "Prediction: No".',
    }
]

#: built once per machine and shared by test sessions (de-quantizing takes ~20 s)
SHARED_CACHE = Path(tempfile.gettempdir()) / "rrlib-test-shared-cache"

# Chat templates written for this test in the layouts of the Llama-2-chat and Mistral-instruct
# families: Llama-2 wraps the system prompt in <<SYS>> inside the first [INST] and opens the
# answer with a space after [/INST]; Mistral-instruct folds the system prompt into the first
# user turn and starts the answer right after [/INST].
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}{% set turns = messages[1:] %}"
    "{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
    "{% for m in turns %}"
    "{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' + (system if loop.first else '') + m['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] + '\\n\\n' %}{% set turns = messages[1:] %}"
    "{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
    "{% for m in turns %}"
    "{% if m['role'] == 'user' %}{{ '[INST] ' + (system if loop.first else '') + m['content'] + ' [/INST]' }}"
    "{% else %}{{ m['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)
TEMPLATES = {"chatml": None, "llama2": LLAMA2_TEMPLATE, "mistral": MISTRAL_TEMPLATE}


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


def _with_template(tokenizer, name):
    tok = copy.deepcopy(tokenizer)
    if TEMPLATES[name] is not None:
        tok.chat_template = TEMPLATES[name]
    return tok


def _old_string_method(tok, messages) -> list[int]:
    # what scoring did before: the rendered generation prompt with "Prediction:" appended
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + "Prediction:"
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_scored_ids_are_the_training_sequence_up_to_the_answer(tokenizer, name):
    from trl.data_utils import _tokenize, common_prefix_length

    tok = _with_template(tokenizer, name)
    for label, answer in ((1, "Prediction: Yes\nThe customer likes hair oils."), (0, "Prediction: No\nToo oily.")):
        # trl's own prompt-completion tokenization (SFTTrainer tokenize_fn, trl 1.16)
        completion = [{"role": "assistant", "content": answer}]
        prompt_ids = _tokenize(tok, FIXED_PROMPT, add_generation_prompt=True)["input_ids"]
        train_ids = _tokenize(tok, FIXED_PROMPT + completion)["input_ids"]
        completion_start = common_prefix_length(prompt_ids, train_ids)
        sp = scoring_prompt(tok, FIXED_PROMPT)
        at = len(sp.ids)
        assert list(sp.ids) == train_ids[:at]
        assert train_ids[at] == (sp.yes_id if label else sp.no_id)
        assert completion_start <= at < len(train_ids)  # the answer token is trained on (a completion token)
        assert chat_token_ids(tok, FIXED_PROMPT + completion) == train_ids
    assert tok.decode([sp.yes_id]).strip() == "Yes" and tok.decode([sp.no_id]).strip() == "No"


def test_the_old_string_method_read_the_wrong_position_for_llama2(tokenizer):
    same = {
        name: _old_string_method(_with_template(tokenizer, name), FIXED_PROMPT)
        == list(scoring_prompt(_with_template(tokenizer, name), FIXED_PROMPT).ids)
        for name in TEMPLATES
    }
    # Llama-2 puts a space between [/INST] and the answer: "[/INST]Prediction:" is not what training saw
    assert same == {"chatml": True, "llama2": False, "mistral": True}
    text = _with_template(tokenizer, "llama2").decode(
        list(scoring_prompt(_with_template(tokenizer, "llama2"), FIXED_PROMPT).ids)
    )
    assert text.endswith("[/INST] Prediction:")


def test_token_ids_on_embedded_tokenizer(tokenizer):
    sp = scoring_prompt(tokenizer, FIXED_PROMPT)
    tokens = answer_tokens(tokenizer, [sp, scoring_prompt(tokenizer, OTHER_PROMPT)])
    # byte-level BPE: the answer token carries the leading space ("Ġ")
    assert (tokens.yes_token, tokens.no_token) == ("ĠYes", "ĠNo")
    assert tokens.yes_id == tokenizer.convert_tokens_to_ids("ĠYes") != tokenizer.convert_tokens_to_ids("Yes")
    assert tokenizer.decode(list(sp.ids)).endswith("<|im_start|>assistant\nPrediction:")


def test_token_ids_on_a_wordpiece_tokenizer():
    # a tokenizer without leading-space markers (lower-cased WordPiece): discovery adapts
    from transformers import AutoTokenizer

    from rrlib.llm.embedded import embedded_bertscore_model

    tok = AutoTokenizer.from_pretrained(embedded_bertscore_model())
    tok.chat_template = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + ' [SEP] ' }}{% endfor %}"
    tokens = answer_tokens(tok, [scoring_prompt(tok, FIXED_PROMPT)])
    assert (tokens.yes_token, tokens.no_token) == ("yes", "no")


@pytest.mark.slow
def test_yes_no_scoring_agrees_with_hand_computation(model, tokenizer):
    import torch

    sp = scoring_prompt(tokenizer, FIXED_PROMPT)
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=torch.tensor([list(sp.ids)])).logits[0, -1].double(), dim=-1)
    p_yes_tok = probs[tokenizer.convert_tokens_to_ids("ĠYes")].item()
    p_no_tok = probs[tokenizer.convert_tokens_to_ids("ĠNo")].item()
    hand = p_yes_tok / (p_yes_tok + p_no_tok)

    # batched with a shorter prompt, so the fixed prompt is scored next to left padding
    other = scoring_prompt(tokenizer, OTHER_PROMPT)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    scores = yes_no_probabilities(model, [other, sp], batch_size=2, pad_id=pad)
    assert scores.p_yes[1] == pytest.approx(hand, abs=1e-4)
    assert scores.yes_no_mass[1] == pytest.approx(p_yes_tok + p_no_tok, rel=1e-3)
    alone = yes_no_probabilities(model, [other], batch_size=1, pad_id=pad)
    assert scores.p_yes[0] == pytest.approx(alone.p_yes[0], abs=1e-4)
    assert 0.0 < hand < 1.0 and abs(scores.p_yes[0] - scores.p_yes[1]) > 1e-6
    # a token budget that splits the pair into two batches gives the same scores
    split = yes_no_probabilities(model, [other, sp], batch_size=2, pad_id=pad, batch_tokens=len(sp.ids))
    np.testing.assert_allclose(split.p_yes, scores.p_yes, atol=1e-4)


def test_score_cache_is_durable_and_keyed_by_identity_and_ids(tmp_path):
    base = {"name": "m", "adapter_sha256": None}
    tuned = {"name": "m", "adapter_sha256": "abc"}
    p1, p2 = ScoringPrompt((5, 6, 7), 1, 2), ScoringPrompt((5, 6, 8), 1, 2)
    k_base, k_tuned = ScoreCache.key(base, p1), ScoreCache.key(tuned, p1)
    assert k_base != k_tuned != ScoreCache.key(tuned, p2)
    assert ScoreCache.key(base, p1) != ScoreCache.key(base, ScoringPrompt((5, 6, 7), 2, 1))
    path = tmp_path / "scores.jsonl"
    ScoreCache(path).put_many([{"key": k_base, "p_yes": 0.25, "yes_no_mass": 0.5}])
    with open(path, "a") as f:
        f.write('{"key": "half-writ')  # an interrupted write is skipped, not fatal
    again = ScoreCache(path)
    assert again.get(k_base)["p_yes"] == 0.25 and again.get(k_tuned) is None


# --- the greedy answer format, read from the scoring pass ------------------------------------
@pytest.mark.parametrize("name", list(TEMPLATES))
def test_answer_start_marks_what_greedy_decoding_must_write(tokenizer, name):
    tok = _with_template(tokenizer, name)
    sp = scoring_prompt(tok, FIXED_PROMPT)
    generation = chat_token_ids(tok, FIXED_PROMPT, add_generation_prompt=True)
    assert sp.answer_start == len(generation) and list(sp.ids[: sp.answer_start]) == generation
    assert tok.decode(list(sp.ids[sp.answer_start :])).strip() == "Prediction:"


class _BigramModel:
    """A stand-in causal LM whose next token depends only on the current one (``table``), so
    greedy decoding is known by hand. Enough of the transformers call signature for scoring."""

    def __init__(self, table):
        import torch

        self.table = torch.as_tensor(table, dtype=torch.float32)
        self.training = False
        self._p = torch.nn.Parameter(torch.zeros(1))

    def parameters(self):
        return iter([self._p])

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def __call__(self, input_ids, logits_to_keep=1, **_):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.table[input_ids][:, -logits_to_keep:, :])


def _greedy_table(vocab: int, follows: dict[int, int], default: int = 0):
    table = np.zeros((vocab, vocab))
    for tok in range(vocab):
        table[tok, follows.get(tok, default)] = 5.0
    return table


def test_greedy_format_is_true_only_when_greedy_writes_the_prefix_then_an_answer():
    yes, no, pred, colon = 7, 8, 5, 6
    # prompt ... 3 | answer prefix "Prediction" ":" | answer
    good = ScoringPrompt((1, 2, 3, pred, colon), yes, no, answer_start=3)
    short = ScoringPrompt((2, 3, pred, colon), yes, no, answer_start=2)  # batched next to left padding
    unknown = ScoringPrompt((1, 3, pred, colon), yes, no)  # answer_start -1: the format is not known
    follows = {3: pred, pred: colon, colon: no}
    scores = yes_no_probabilities(
        _BigramModel(_greedy_table(9, follows)), [good, short, unknown], batch_size=3, prefix_reuse=False
    )
    assert scores.greedy_format[:2].tolist() == [1.0, 1.0] and np.isnan(scores.greedy_format[2])
    assert scores.p_yes[0] < 0.5  # greedy says No
    # the model would answer something else after "Prediction:" (token 4, neither Yes nor No)
    off_answer = yes_no_probabilities(
        _BigramModel(_greedy_table(9, {**follows, colon: 4})), [good], batch_size=1, prefix_reuse=False
    )
    # the model would not write "Prediction" after the prompt (it writes token 4)
    off_prefix = yes_no_probabilities(
        _BigramModel(_greedy_table(9, {**follows, 3: 4})), [good], batch_size=1, prefix_reuse=False
    )
    assert off_answer.greedy_format.tolist() == [0.0] and off_prefix.greedy_format.tolist() == [0.0]


@pytest.mark.slow
def test_greedy_format_from_scoring_agrees_with_greedy_generation(model, tokenizer):
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [scoring_prompt(tokenizer, m) for m in (FIXED_PROMPT, OTHER_PROMPT)]
    scores = yes_no_probabilities(model, prompts, batch_size=2, pad_id=pad, prefix_reuse=False)
    reused = yes_no_probabilities(model, prompts, batch_size=2, pad_id=pad, prefix_reuse=True)
    np.testing.assert_array_equal(reused.greedy_format, scores.greedy_format)
    for sp, got in zip(prompts, scores.greedy_format):
        start = torch.tensor([list(sp.ids[: sp.answer_start])])
        n_new = len(sp.ids) - sp.answer_start + 1
        with torch.no_grad():
            out = model.generate(start, max_new_tokens=n_new, do_sample=False, pad_token_id=pad)[0, start.shape[1] :]
        written = out.tolist()
        expected = written[:-1] == list(sp.ids[sp.answer_start :]) and written[-1] in (sp.yes_id, sp.no_id)
        assert got == float(expected)
