"""Teacher prompt templates: rendering for every domain and task, Table-6 settings, and a pin of
every template's rendered text so that a wording change cannot ship without a version bump
(the generation cache keys on the version)."""

import hashlib
import json

import pytest

from rrlib.llm.base import GenerationSettings
from rrlib.prompts.teacher import (
    DOMAINS,
    PAPER_SETTINGS,
    ROLES,
    TASKS,
    TEMPLATES,
    ItemFacts,
    RatedItem,
    generation_settings,
    template_for,
)

ITEM = ItemFacts(
    "i1",
    "Rose Night Cream",
    "brand: Acme; price: $12.50",
    "A rich cream.",
    ((5.0, "Lovely smell, soft skin."), (2.0, "Greasy and broke me out.")),
    "A plot.",
)
HISTORY = [
    RatedItem("Lip Balm", "A balm. Strong: moisturising. Weak: sticky.", True),
    RatedItem("Toner", "A toner. Weak: stings.", False),
]
FIELDS = {
    "item_description": dict(item=ITEM, n_words=25),
    "user_profile": dict(items=HISTORY, q_words=100),
    "reasoning": dict(
        profile="Likes gentle products.",
        history=HISTORY,
        target=RatedItem("Rose Night Cream", "A cream.", True),
        n_words=100,
    ),
}

# name -> (version, {domain: sha256[:16] of the rendered messages}). When a template's text changes on
# purpose: bump its version in rrlib/prompts/teacher.py, then update this pin. A new domain adds a pin
# and leaves the others (and the cached answers of their prompts) as they are.
PINNED = {
    "item_description": (
        "3",
        {
            "movies": "946b24b177766cce",
            "beauty": "2359536d34f2429e",
            "fashion": "eaa08277b72aa8e8",
            "instruments": "93a8ca487b889c3e",
            "books": "095ebf1d6b3548ca",
        },
    ),
    "user_profile": (
        "4",
        {
            "movies": "e22a6e1d85f3f568",
            "beauty": "7370b472fb8ab42c",
            "fashion": "d3879ec3c35ce366",
            "instruments": "469b32a06ae004b1",
            "books": "d9442d13f11140d2",
        },
    ),
    "reasoning": (
        "3",
        {
            "movies": "21c61546dace67de",
            "beauty": "2cdf6c827d073b54",
            "fashion": "1551273fb0c3fdbe",
            "instruments": "371689203d45797e",
            "books": "4ac7ed7a9fb3baa5",
        },
    ),
}


def rendered_hash(name: str, domain: str) -> str:
    blob = json.dumps(TEMPLATES[name].messages(domain, **FIELDS[name]), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def test_every_task_has_a_template_and_settings():
    assert set(TEMPLATES) == set(TASKS) == set(PAPER_SETTINGS) == set(PINNED)
    assert set(ROLES) == set(DOMAINS) == {"movies", "beauty", "fashion", "instruments", "books"}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_template_text_is_pinned_to_its_version(name):
    version, digests = PINNED[name]
    actual = {d: rendered_hash(name, d) for d in DOMAINS}
    assert (TEMPLATES[name].version, actual) == (version, digests), (
        f"template {name!r} renders differently from the pinned text. If the change is intended, bump its "
        f"version in rrlib/prompts/teacher.py (old answers are cached under the old version) and set "
        f"PINNED[{name!r}] = ({TEMPLATES[name].version!r}, {actual!r})."
    )


def test_instruments_role_speaks_of_music_gear():
    system, user = TEMPLATES["item_description"].messages("instruments", **FIELDS["item_description"])
    assert "musical instruments" in system["content"] and "Describe this product" in user["content"]


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("task", TASKS)
def test_templates_render_for_every_domain(task, domain):
    system, user = TEMPLATES[task].messages(domain, **FIELDS[task])
    assert system["role"] == "system" and user["role"] == "user"
    assert system["content"] == ROLES[domain].system
    noun = ROLES[domain].item
    assert noun in user["content"]
    assert "{" not in user["content"] and "}" not in user["content"]  # no unfilled placeholder


def test_description_prompt_carries_all_inputs():
    text = TEMPLATES["item_description"].messages("movies", **FIELDS["item_description"])[1]["content"]
    for part in (
        "at most 25 words",
        "Rose Night Cream",
        "brand: Acme",
        "Plot: A plot.",
        "A rich cream.",
        "[5] Lovely smell",
        "[2] Greasy",
        "strong points",
        "weak points",
    ):
        assert part in text
    bare = ItemFacts("i2", "Plain", "", "", (), "")
    text = TEMPLATES["item_description"].messages("beauty", item=bare, n_words=25)[1]["content"]
    assert "Plot:" not in text and "Seller description" not in text and "Reviews: none available." in text


def test_profile_prompt_lists_items_with_labels_and_budget():
    text = TEMPLATES["user_profile"].messages("beauty", **FIELDS["user_profile"])[1]["content"]
    assert "1. Lip Balm (LIKED)" in text and "2. Toner (DISLIKED)" in text
    assert "A toner. Weak: stings." in text and "at most 100 words" in text and "step by step" in text
    assert (
        'with the words "This customer likes"' in text
    )  # v3: a named opening (the 135M teacher echoed "The list below")


@pytest.mark.parametrize("liked,verb", [(True, "liked"), (False, "disliked")])
def test_reasoning_prompt_states_the_true_label(liked, verb):
    fields = dict(FIELDS["reasoning"], target=RatedItem("Rose Night Cream", "A cream.", liked), n_words=60)
    text = TEMPLATES["reasoning"].messages("fashion", **fields)[1]["content"]
    assert f"customer {verb} the new product" in text
    assert "Profile analysis:" in text and "Target analysis:" in text and "at most 60 words" in text
    assert "Likes gentle products." in text and "Lip Balm (LIKED)" in text
    no_profile = TEMPLATES["reasoning"].messages("fashion", **dict(fields, profile=""))[1]["content"]
    assert "no profile" in no_profile


def test_paper_table6_and_greedy_settings():
    assert generation_settings("user_profile", "paper", 7) == GenerationSettings(0.01, 0.9, 256, 7)
    assert generation_settings("item_description", "paper") == GenerationSettings(0.01, 0.9, 64, 0)
    assert generation_settings("reasoning", "paper") == GenerationSettings(0.01, 0.75, 256, 0)
    greedy = generation_settings("reasoning", "greedy", 3)
    assert greedy.greedy and greedy.temperature == 0.0 and greedy.max_new_tokens == 256 and greedy.seed == 3
    with pytest.raises(ValueError, match="GENERATION_MODE"):
        generation_settings("reasoning", "beam")
    with pytest.raises(ValueError, match="unknown teacher task"):
        generation_settings("summary")


def test_request_names_template_and_version_and_key_changes_with_them():
    t = template_for("user_profile")
    req = t.request("beauty", generation_settings("user_profile"), tag="u1", **FIELDS["user_profile"])
    assert (req.template, req.template_version, req.tag) == ("user_profile", t.version, "u1")
    model = {"name": "m"}
    from dataclasses import replace

    assert req.key(model) != replace(req, template_version=t.version + "x").key(model)
    assert req.key(model) == replace(req, tag="other").key(model)  # the tag is not part of the key


def test_unknown_domain_and_task_fail_clearly():
    with pytest.raises(ValueError, match="DOMAIN"):
        TEMPLATES["user_profile"].messages("poetry", **FIELDS["user_profile"])
    with pytest.raises(ValueError, match="no teacher template"):
        template_for("poem")


def test_token_budget_follows_the_word_budget():
    from rrlib.prompts.teacher import generation_settings

    assert generation_settings("item_description", "paper", 1).max_new_tokens == 64  # the paper's 25 words
    assert generation_settings("item_description", "paper", 1, words=25).max_new_tokens == 64
    assert generation_settings("user_profile", "paper", 1, words=50).max_new_tokens == 128
    assert generation_settings("reasoning", "greedy", 1, words=100).temperature == 0.0
    s = generation_settings("reasoning", "paper", 3, words=30, repetition_penalty=1.1)
    assert (s.max_new_tokens, s.repetition_penalty, s.seed) == (77, 1.1, 3)


def test_tokens_per_word_caps_the_budget_and_never_raises_it():
    # 25 words x 1.6 = 40 < the paper's 64; a 60-word profile: 96 < 154
    assert generation_settings("item_description", "paper", 1, words=25, tokens_per_word=1.6).max_new_tokens == 40
    assert generation_settings("user_profile", "paper", 1, words=60, tokens_per_word=1.6).max_new_tokens == 96
    # reasoning asks for two sections: 2 x 50 x 1.6 = 160 > the scaled 128, which stays
    assert generation_settings("reasoning", "paper", 1, words=50, tokens_per_word=1.6).max_new_tokens == 128
    assert generation_settings("reasoning", "paper", 1, words=50, tokens_per_word=1.0).max_new_tokens == 100
    # 0 is off; the floor of 16 tokens holds
    assert generation_settings("item_description", "paper", 1, words=25, tokens_per_word=0).max_new_tokens == 64
    assert generation_settings("item_description", "paper", 1, words=5, tokens_per_word=1.0).max_new_tokens == 16
