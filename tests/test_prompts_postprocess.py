"""Post-processing of teacher outputs: boilerplate, word budget, repetition, empty and
degenerate outputs, and retries that raise the temperature when decoding is (near-)greedy."""

from dataclasses import replace

import pytest

from rrlib.llm.base import GenerationRequest, GenerationResult, GenerationSettings
from rrlib.prompts.postprocess import (
    USABLE_STATUSES,
    clean_output,
    clean_sectioned,
    generate_checked,
    prompt_text_of,
    retry_request,
    retry_settings,
    strip_boilerplate,
    trim_to_words,
)

PROMPT = (
    "Describe the product below in at most 25 words.\nUse only the facts given here. Write plain "
    "sentences: no title, no list, no introduction.\nTitle: Rose Night Cream\n- [5] Lovely smell and "
    "it leaves my skin soft all night long without any grease at all"
)


def clean(raw, budget=25, **kw):
    return clean_output(raw, word_budget=budget, prompt_text=PROMPT, **kw)


@pytest.mark.parametrize(
    "raw",
    [
        "Sure, here is the description: A rich night cream with a lovely rose smell that softens skin.",
        "Certainly! Here's a 25-word description:\n\nA rich night cream with a lovely rose smell that softens skin.",
        "assistant: Description: A rich night cream with a lovely rose smell that softens skin.",
        "### Description\n**A rich night cream** with a lovely rose smell that softens skin.",
        "<|im_start|>assistant\nA rich night cream with a lovely rose smell that softens skin.<|im_end|>",
        "A rich night cream with a lovely rose smell that softens skin. I hope this helps! Let me know.",
        "Use only the facts given here. Write plain sentences: no title, no list, no introduction.\n"
        "A rich night cream with a lovely rose smell that softens skin. (13 words)",
    ],
)
def test_boilerplate_is_stripped(raw):
    out = clean(raw)
    assert out.text == "A rich night cream with a lovely rose smell that softens skin."
    assert out.status == "ok" and out.n_words == 12


def test_real_content_starting_like_boilerplate_is_kept():
    text = "Great value moisturiser that absorbs fast; some find the pump breaks."
    assert clean(text).text.endswith("the pump breaks.")


def test_word_budget_trims_at_sentence_boundary():
    raw = (
        "A rich rose night cream for dry skin. Reviewers praise its scent and softness. Some find it "
        "greasy and heavy under makeup, and a few report breakouts after a week of use every night."
    )
    out = clean(raw, budget=20)
    assert out.status == "too_long_trimmed" and out.status in USABLE_STATUSES
    assert out.text == "A rich rose night cream for dry skin. Reviewers praise its scent and softness."
    assert out.n_words <= 20


def test_word_budget_hard_cut_when_one_long_sentence():
    raw = " ".join(f"x{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(60))
    text, trimmed = trim_to_words(raw, 25)
    assert trimmed and len(text.split()) == 25 and text.endswith(".")


def test_unfinished_sentence_at_token_limit_is_dropped():
    raw = (
        "A rich rose night cream for dry skin that reviewers love. Its scent is strong and pleasant. "
        "Some users say that the"
    )
    out = clean(raw, budget=40, hit_length_limit=True)
    assert out.text.endswith("pleasant.") and out.status == "too_long_trimmed"
    assert clean(raw, budget=40).status == "ok"  # without the token limit the text is kept whole


@pytest.mark.parametrize(
    "raw,status",
    [
        ("", "empty"),
        ("   \n  ", "empty"),
        ("Sure, here is the description:", "empty"),
        ("!!! ??? ... 12345 ---- ////", "degenerate"),
        ("Cream.", "degenerate"),
        ("Title: Rose Night Cream", "degenerate"),  # only echoes a prompt line
        ("Lovely smell and it leaves my skin soft all night long without any grease at all", "degenerate"),
        ("Great cream. Great cream. Great cream. Great cream. Great cream. Great cream.", "repetitive"),
        ("The cream is very very very very good for skin and smells nice overall.", "repetitive"),
        ("It is soft and it is rich. It is soft and it is rich. Nice.", "repetitive"),
        ("the cream the cream the cream the cream the cream is nice", "repetitive"),
        (
            "B0012Y0ZG2: Great product X11 [B0012Y0ZG2]\nReviews: [5]\nStrengths: [5]\nWeaknesses: 5/5 10 ok",
            "degenerate",
        ),
        (
            "Title: Rose Night Cream\nReviews (rating from 1 to 5):\n- [5] Lovely smell and it leaves my skin soft all "
            "night long",
            "degenerate",
        ),  # the prompt's fields copied back
    ],
)
def test_bad_outputs_are_flagged(raw, status):
    out = clean(raw)
    assert out.status == status, out
    assert out.status not in USABLE_STATUSES
    if status != "empty":
        assert out.detail


def test_sectioned_reasoning_is_split_and_each_part_trimmed():
    long = " ".join(f"x{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(80)) + "."  # distinct words
    raw = (
        f"Sure! Here is my analysis:\nProfile analysis: The user likes gentle creams. {long}\n"
        f"Target analysis: The rose cream is gentle and rich, so they liked it."
    )
    out = clean_sectioned(raw, sections=("Profile analysis:", "Target analysis:"), words_per_section=30)
    lines = out.text.split("\n")
    assert lines[0].startswith("Profile analysis: The user likes gentle creams.")
    assert lines[1] == "Target analysis: The rose cream is gentle and rich, so they liked it."
    assert len(lines[0].split()) <= 32 and out.status == "too_long_trimmed"


def test_sectioned_without_markers_is_kept_as_one_text():
    raw = "The user likes gentle, fragrant creams and dislikes stinging toners, so the rose cream fits well."
    out = clean_sectioned(raw, sections=("Profile analysis:", "Target analysis:"), words_per_section=30)
    assert out.status == "ok" and "markers missing" in out.detail and out.text == raw


def test_sectioned_repetition_is_flagged():
    raw = "Profile analysis: " + "The user likes creams. " * 4 + "\nTarget analysis: They liked it a lot today."
    out = clean_sectioned(raw, sections=("Profile analysis:", "Target analysis:"), words_per_section=50)
    assert out.status == "repetitive"


def test_copied_field_labels_and_codes_are_removed_but_new_content_kept():
    raw = (
        "Title: A light rose cream [B000ABC123] that softens dry skin overnight.\n- [4] Some find the scent "
        "strong and the jar small."
    )
    out = clean_output(raw, word_budget=40, prompt_text=PROMPT + "\nTitle: Rose cream [B000ABC123]")
    assert out.text == (
        "A light rose cream that softens dry skin overnight. Some find the scent strong and the jar small."
    )
    assert out.status == "ok"


def test_strip_boilerplate_reports_echoed_lines():
    text, echoed = strip_boilerplate("Title: Rose Night Cream\nA cream.", PROMPT)
    assert text == "A cream." and echoed == 1


# ---------------------------------------------------------------------------------------
# Retries
# ---------------------------------------------------------------------------------------
def test_retry_settings_new_seed_and_a_real_temperature():
    greedy = GenerationSettings(temperature=0.0, top_p=1.0, max_new_tokens=64, seed=42)
    r1, r2 = retry_settings(greedy, 1), retry_settings(greedy, 2)
    assert (r1.seed, r1.temperature) == (43, 0.3) and (r2.seed, r2.temperature) == (44, 0.6)
    hot = GenerationSettings(temperature=0.9, top_p=0.9, max_new_tokens=64, seed=1)
    assert retry_settings(hot, 1).temperature == 0.9 and retry_settings(hot, 1).seed == 2


def test_a_retry_under_a_grammar_gets_half_its_token_budget_again():
    settings = GenerationSettings(temperature=0.0, top_p=1.0, max_new_tokens=80, seed=42)
    free = GenerationRequest([{"role": "user", "content": "x"}], settings, "t", "1")
    constrained = replace(free, grammar='root ::= "Rating: 4"')
    assert retry_request(free, 1).settings == retry_settings(settings, 1)  # free text: only seed and temperature
    wider = retry_request(constrained, 1)
    assert wider.settings.max_new_tokens == 120 and wider.grammar == constrained.grammar
    assert wider.key({"m": 1}) != constrained.key({"m": 1})  # its own cache entry


class ScriptedGenerator:
    """Answers by (tag, seed); records every batch it is asked for."""

    def __init__(self, answers):
        self.answers, self.batches = answers, []

    def generate(self, requests, desc=""):
        self.batches.append([(r.tag, r.settings.seed, r.settings.temperature) for r in requests])
        return [
            GenerationResult(
                text=self.answers.get((r.tag, r.settings.seed), "A fine cream that softens skin."),
                finish_reason="stop",
                truncated_prompt=r.tag == "long",
            )
            for r in requests
        ]


def _req(tag):
    msgs = ({"role": "system", "content": "sys"}, {"role": "user", "content": PROMPT})
    return GenerationRequest(msgs, GenerationSettings(0.0, 1.0, 64, 10), "item_description", "1", tag)


def _check(req, res):
    return clean_output(res.text, word_budget=25, prompt_text=prompt_text_of(req))


class ScriptedStream:
    """A streaming backend answering by (tag, seed), one result at a time, that also sends the
    requests appended while it streams (as the server backends do)."""

    streams_appended = True
    identity = {"backend": "scripted"}

    def __init__(self, answers):
        self.answers, self.sent = answers, []

    def iter_generate(self, requests):
        i = 0
        while i < len(requests):
            r = requests[i]
            self.sent.append((r.tag, r.settings.seed))
            text = self.answers.get((r.tag, r.settings.seed), "A fine cream that softens skin.")
            yield i, GenerationResult(text=text, finish_reason="stop", truncated_prompt=r.tag == "long")
            i += 1


ANSWERS = {
    ("a", 10): "A rich rose cream that softens dry skin; some find it greasy.",
    ("b", 10): "",
    ("b", 11): "Great. Great. Great. Great.",
    ("b", 12): "A gentle cream for dry skin, a bit heavy.",
    ("c", 10): "",
    ("c", 11): "!!!!",
    ("c", 12): "Cream cream cream cream cream cream.",
    ("long", 10): "A cream with a long prompt behind it, fine overall.",
}


def test_generate_checked_streaming_keeps_what_the_rounds_keep(tmp_path):
    from rrlib.llm.cache import CachedGenerator

    # distinct prompts: the cache keys on the messages, not on the tag
    reqs = [
        replace(_req(t), messages=(*_req(t).messages, {"role": "user", "content": t})) for t in ("a", "b", "c", "long")
    ]
    rounds = generate_checked(ScriptedGenerator(ANSWERS), reqs, _check, max_retries=2)
    backend = ScriptedStream(ANSWERS)
    streamed = generate_checked(CachedGenerator(backend, tmp_path, progress=False), reqs, _check, max_retries=2)
    assert streamed == rounds
    # the first retry of b went out before c's first attempt came back: one stream, no rounds
    assert backend.sent[:6] == [("a", 10), ("b", 10), ("c", 10), ("long", 10), ("b", 11), ("c", 11)]
    assert sorted(backend.sent) == sorted([("a", 10), ("long", 10)] + [(t, s) for t in "bc" for s in (10, 11, 12)])


def test_generate_checked_retries_only_unusable_and_keeps_the_best():
    gen = ScriptedGenerator(ANSWERS)
    outs = generate_checked(gen, [_req("a"), _req("b"), _req("c"), _req("long")], _check, max_retries=2)
    assert [o.status for o in outs] == ["ok", "ok", "repetitive", "ok"]
    assert [o.attempts for o in outs] == [1, 3, 3, 1]
    assert outs[1].text == "A gentle cream for dry skin, a bit heavy."
    assert outs[2].status == "repetitive"  # best of empty, degenerate, repetitive
    assert outs[3].truncated_prompt and not outs[0].truncated_prompt
    assert gen.batches == [
        [("a", 10, 0.0), ("b", 10, 0.0), ("c", 10, 0.0), ("long", 10, 0.0)],
        [("b", 11, 0.3), ("c", 11, 0.3)],
        [("b", 12, 0.6), ("c", 12, 0.6)],
    ]


def test_generate_checked_without_retries_and_empty_input():
    gen = ScriptedGenerator({("b", 10): ""})
    outs = generate_checked(gen, [_req("b")], _check, max_retries=0)
    assert outs[0].status == "empty" and len(gen.batches) == 1
    assert generate_checked(gen, [], _check, max_retries=2) == []


def test_section_markers_on_their_own_line_survive():
    raw = (
        "Profile analysis:\nThe user enjoys gentle, fragrant creams and avoids harsh toners.\n"
        "Target analysis:\nThe rose cream is gentle and fragrant, so the user liked it."
    )
    out = clean_sectioned(raw, sections=("Profile analysis:", "Target analysis:"), words_per_section=30)
    assert out.status == "ok" and out.text == (
        "Profile analysis: The user enjoys gentle, fragrant creams and avoids harsh toners.\n"
        "Target analysis: The rose cream is gentle and fragrant, so the user liked it."
    )


def test_copied_title_line_with_its_id_is_an_echo():
    prompt = PROMPT + "\nTitle: great product [B000FI4S1E]"
    out = clean_output(
        "B000FI4S1E\nTitle: great product [B000FI4S1E]\nA gentle body wash that foams well and smells fresh.",
        word_budget=25,
        prompt_text=prompt,
    )
    assert out.text == "A gentle body wash that foams well and smells fresh." and out.status == "ok"


PROFILE_PROMPT = (
    "1. Lip Balm (LIKED)\n   A balm.\n\nThink it through step by step. Then write a profile of this "
    "customer's taste in at most 100 words, saying what they like and what they dislike.\nMention "
    "only preferences that the list above supports; invent nothing. Reply with the profile only."
)


def test_sentences_repeating_the_instructions_are_removed():
    raw = (
        "The customer likes soft, moisturising lip balms. They also mention the customer's taste in at most "
        "100 words, which is concise. They dislike sticky textures and strong scents."
    )
    out = clean_output(raw, word_budget=60, prompt_text=PROFILE_PROMPT)
    assert (
        out.text == "The customer likes soft, moisturising lip balms. They dislike sticky textures and strong scents."
    )
    assert "repeating the instructions" in out.detail and out.status == "ok"
    only = clean_output(
        "Here is the profile of this customer's taste in at most 100 words.",
        word_budget=100,
        prompt_text=PROFILE_PROMPT,
    )
    assert only.status == "degenerate" and only.text == ""


def test_sectioned_empty_section_after_cleaning_is_degenerate():
    prompt = "Data.\n\nTarget analysis: which features of the new product fit or clash with those preferences."
    raw = (
        "Profile analysis: The user likes gentle creams and avoids harsh toners.\n"
        "Target analysis: Which features of the new product fit or clash with those preferences, and why."
    )
    out = clean_sectioned(
        raw, sections=("Profile analysis:", "Target analysis:"), words_per_section=40, prompt_text=prompt
    )
    assert out.status == "degenerate" and "empty section(s): Target analysis:" in out.detail
