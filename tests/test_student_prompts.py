"""Student prompt templates: what each method shows (as the registry says), every item with its
title and attributes, the prediction-first completion, the answer parser, and graceful handling
of missing profiles/descriptions."""

import hashlib

import pandas as pd
import pytest

from rrlib.errors import MethodError
from rrlib.methods.registry import names
from rrlib.prompts.answers import parse_output
from rrlib.prompts.items import NO_DESCRIPTION, ItemCatalog
from rrlib.student import prompts as student
from rrlib.student.prompts import NO_PROFILE_TEXT, PromptContext, build_messages, completion

LLM_METHODS = names(kind=("finetuned_llm", "zeroshot_llm"), task="like")  # rating prompts: test_exp3rt_enrich

DESCRIPTIONS = {
    "i1": "Lavender shampoo that leaves hair soft; some find the scent too strong.",
    "i2": "Cheap plastic comb, teeth snap easily.",
    "i3": "Rich argan oil hair mask, deeply moisturising, pricey.",
}
TITLES = {"i1": "Lavender Shampoo", "i2": "Pocket Comb", "i3": "Argan Hair Mask"}
PROFILE = "Cares about natural hair-care ingredients and dislikes flimsy accessories."
ATTRIBUTES = {"i1": "brand: Meadow; price: $8.00", "i3": "brand: Atlas; price: $24.00"}


def _example(user="u1", history=("i1", "i2"), liked=(True, False), target="i3", label=1):
    return pd.Series(
        {
            "example_id": f"test:{user}",
            "split": "test",
            "user_id": user,
            "target_item_id": target,
            "label": label,
            "history_item_ids": list(history),
            "history_liked": list(liked),
        }
    )


def _ctx(descriptions=None, profiles=None, domain="beauty", attributes=None):
    catalog = ItemCatalog(
        titles=TITLES,
        attributes=ATTRIBUTES if attributes is None else attributes,
        descriptions=DESCRIPTIONS if descriptions is None else descriptions,
    )
    return PromptContext(catalog=catalog, profiles={"u1": PROFILE} if profiles is None else profiles, domain=domain)


def _text(messages):
    return "\n".join(m["content"] for m in messages)


def test_every_method_renders_system_and_user_turns():
    for method in LLM_METHODS:
        msgs = build_messages(method, _example(), _ctx())
        assert [m["role"] for m in msgs] == ["system", "user"], method
        assert "Prediction: Yes" in msgs[-1]["content"] and "Prediction: No" in msgs[-1]["content"]


def test_reasoningrec_shows_profile_descriptions_preferences_and_guardrails():
    text = _text(build_messages("reasoningrec", _example(), _ctx()))
    assert PROFILE in text
    for d in DESCRIPTIONS.values():
        assert d in text
    assert "-> liked" in text and "-> disliked" in text
    assert "Do not invent" in text
    # history before target, oldest first
    assert text.index(DESCRIPTIONS["i1"]) < text.index(DESCRIPTIONS["i2"]) < text.index(DESCRIPTIONS["i3"])


@pytest.mark.parametrize("method", ["tallrec", "zeroshot_vanilla", "reasoningrec_no_description"])
def test_no_description_text_where_method_uses_titles(method):
    text = _text(build_messages(method, _example(), _ctx()))
    for d in DESCRIPTIONS.values():
        assert d not in text
    for t in TITLES.values():
        assert t in text


@pytest.mark.parametrize("method", ["tallrec", "zeroshot_vanilla", "reasoningrec_no_profile"])
def test_no_profile_where_method_omits_it(method):
    text = _text(build_messages(method, _example(), _ctx()))
    assert PROFILE not in text and "profile" not in text.lower()


def test_no_description_ablation_keeps_profile_and_no_profile_keeps_descriptions():
    assert PROFILE in _text(build_messages("reasoningrec_no_description", _example(), _ctx()))
    assert DESCRIPTIONS["i3"] in _text(build_messages("reasoningrec_no_profile", _example(), _ctx()))


@pytest.mark.parametrize("method", LLM_METHODS)
def test_every_item_shows_its_title_and_attributes(method):
    text = _text(build_messages(method, _example(), _ctx()))
    assert '"Lavender Shampoo" (brand: Meadow; price: $8.00)' in text
    assert '"Argan Hair Mask" (brand: Atlas; price: $24.00)' in text  # the target too
    assert '"Pocket Comb"' in text  # no attributes known: the title alone


def test_tallrec_lists_liked_and_disliked_titles():
    text = _text(build_messages("tallrec", _example(), _ctx()))
    assert 'Liked: "Lavender Shampoo" (brand: Meadow; price: $8.00)' in text and 'Disliked: "Pocket Comb"' in text
    assert "step by step" not in text  # prediction only


def test_missing_profile_and_description_are_said_not_invented():
    ctx = _ctx(profiles={}, descriptions={"i1": DESCRIPTIONS["i1"]})
    text = _text(build_messages("reasoningrec", _example(), ctx))
    assert NO_PROFILE_TEXT in text
    assert f'"Argan Hair Mask" (brand: Atlas; price: $24.00): {NO_DESCRIPTION}' in text
    # an unknown item id falls back to a generic label rather than failing
    text = _text(build_messages("reasoningrec", _example(history=("zz",), liked=(True,)), ctx))
    assert "item zz" in text


def test_empty_history_is_rendered():
    text = _text(build_messages("reasoningrec", _example(history=(), liked=()), _ctx()))
    assert student.NO_HISTORY_TEXT in text
    assert "Liked: none" in _text(build_messages("tallrec", _example(history=(), liked=()), _ctx()))


def test_from_tables_drops_unusable_enrichment():
    items = pd.DataFrame({"item_id": ["i1", "i2"], "title": ["A", "B"]})
    desc = pd.DataFrame(
        {"item_id": ["i1", "i2"], "description": ["good text", "junk junk junk"], "status": ["ok", "repetitive"]}
    )
    prof = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "profile": ["likes A", ""],
            "source": ["generated", "no_history"],
            "status": ["ok", "no_history"],
        }
    )
    ctx = PromptContext.from_tables(items, desc, prof, domain="beauty")
    assert ctx.catalog.descriptions == {"i1": "good text"}
    assert ctx.profile("u2") == NO_PROFILE_TEXT and ctx.profile("u1") == "likes A"
    with pytest.raises(ValueError, match="lacks column 'description'"):
        PromptContext.from_tables(items, desc.drop(columns="description"))
    with pytest.raises(ValueError, match="domain"):
        PromptContext(catalog=ItemCatalog(titles={}), domain="cars")


def test_history_length_mismatch_is_an_error():
    ex = _example()
    ex["history_liked"] = [True]
    with pytest.raises(ValueError, match="history_liked has 1"):
        build_messages("reasoningrec", ex, _ctx())


def test_completion_puts_prediction_first():
    assert (
        completion(1, "  Because she loves argan oil. ", "reasoningrec")
        == "Prediction: Yes\nBecause she loves argan oil."
    )
    assert completion(0, "x", "reasoningrec_no_profile").startswith("Prediction: No\n")
    assert completion(1, "ignored", "tallrec") == "Prediction: Yes"
    assert completion(0, "", "zeroshot_vanilla") == "Prediction: No"
    with pytest.raises(ValueError, match="reasoning text is empty"):
        completion(1, " ", "reasoningrec")
    with pytest.raises(ValueError, match="label must be 0 or 1"):
        completion(2, "x", "reasoningrec")
    with pytest.raises(MethodError, match="not an LLM student"):
        completion(1, "x", "sasrec")
    with pytest.raises(MethodError, match="unknown method"):
        completion(1, "x", "nope")


@pytest.mark.parametrize(
    "text,label,reasoning,ok",
    [
        ("Prediction: Yes\nShe likes argan.", 1, "She likes argan.", True),
        ("prediction: no. The comb broke.", 0, "The comb broke.", True),
        ("**Prediction:** Yes", 1, "", True),
        ("I think yes.", None, "I think yes.", False),
        ("Prediction: maybe", None, "Prediction: maybe", False),
        ("", None, "", False),
        (None, None, "", False),
    ],
)
def test_parse_output_never_raises(text, label, reasoning, ok):
    parsed = parse_output(text)
    assert (parsed.label, parsed.reasoning, parsed.format_ok) == (label, reasoning, ok)


def test_template_wording_is_pinned_to_its_version():
    # Changing any wording must bump TEMPLATE_VERSION (caches key on it) and update this pin.
    rendered = "\n---\n".join(
        _text(build_messages(m, _example(), _ctx(domain=d)))
        for m in sorted(LLM_METHODS)
        for d in ("beauty", "movies", "fashion")
    )
    digest = hashlib.sha256(rendered.encode()).hexdigest()[:16]
    assert (student.TEMPLATE_VERSION, digest) == ("student-v2", PINNED_DIGEST)


PINNED_DIGEST = "49cb8748f9865ed7"


def test_instruments_domain_prompts():
    ctx = _ctx(domain="instruments")
    text = _text(build_messages("reasoningrec", _example(), ctx))
    assert "musical instruments and music gear" in text and "sound, build quality" in text
    assert "bought" in text
