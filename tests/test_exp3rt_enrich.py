"""EXP3RT steps 1-2: the structured extraction format and its parser (unparseable outputs are
counted and retried, never a crash), the reviews each profile may read (no target's review reaches
any step), user and item profiles, and the rating-reasoning post-processing."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
from test_enrich import DirectGenerator, synthetic_tables

from rrlib.config.params import Config
from rrlib.enrich.preferences import (
    PREFERENCE_COLUMNS,
    build_profiles,
    extract_preferences,
    item_reviews,
    usable_profiles,
    user_reviews,
)
from rrlib.llm.base import GenerationResult
from rrlib.prompts import exp3rt as xp
from rrlib.prompts.items import ItemCatalog


# ---------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,liked,disliked",
    [
        (
            "Liked: warm tone; sturdy build\nDisliked: tuning pegs slip",
            ("warm tone", "sturdy build"),
            ("tuning pegs slip",),
        ),
        ("**Liked:** bright sound\n- Disliked: none", ("bright sound",), ()),
        ("Disliked: too quiet.\nLiked: none", (), ("too quiet",)),
        ("Sure! Here you go:\nLiked: price, weight\nDisliked: n/a\nHope this helps", ("price", "weight"), ()),
    ],
)
def test_parse_preferences_accepts_the_format(text, liked, disliked):
    prefs = xp.parse_preferences(text)
    assert (prefs.liked, prefs.disliked) == (liked, disliked)
    assert xp.parse_preferences(prefs.render()) == prefs  # the canonical form round-trips


@pytest.mark.parametrize(
    "text,why",
    [
        ("The reviewer liked the sound.", "no 'Liked:' line"),
        ("Liked: sound", "no 'Disliked:' line"),
        ("Liked: none\nDisliked: none", "both sides are empty"),
        ("Liked: a; b; c; d; e; f\nDisliked: none", "6 liked aspects"),
        ("Liked: " + " ".join(["word"] * 12) + "\nDisliked: none", "longer than 8 words"),
    ],
)
def test_parse_preferences_names_what_is_wrong(text, why):
    with pytest.raises(xp.UnparseableOutput, match=why):
        xp.parse_preferences(text)
    cleaned = xp.check_preferences(text)
    assert cleaned.status == "degenerate" and why in cleaned.detail


def test_rating_parsing_and_teacher_reasoning_checks():
    assert xp.parse_rating("Analysis: fits.\nRating: 4") == 4.0
    assert xp.parse_rating("Rating: 2\nmore\n**Rating:** 5") == 5.0  # the last one counts
    assert xp.parse_rating("no rating here") is None
    ok = xp.check_rating_reasoning("Analysis: warm tone the user values, so a good fit.\nRating: 4", 4, 40)
    assert ok.status == "ok" and "Rating" not in ok.text and ok.text.startswith("Analysis:")
    wrong = xp.check_rating_reasoning("Analysis: the user will love the warm tone of it.\nRating: 2", 5, 40)
    assert wrong.status == "degenerate" and "true rating is 5" in wrong.detail
    # cut at its token budget before the rating line (a junk word can eat a grammar's budget): retried
    cut = "Analysis: well made and popular with players. We rated a630GBAEBGA0,427A,186R,1\nRating:"
    assert xp.check_rating_reasoning(cut, 3, 30, hit_length_limit=True).status == "degenerate"
    assert xp.check_rating_reasoning(cut, 3, 30).status in ("ok", "too_long_trimmed")  # ended by itself
    assert xp.rating_completion(" Analysis: fits. ", 3) == "Analysis: fits.\nRating: 3"
    with pytest.raises(ValueError, match="reasoning text is empty"):
        xp.rating_completion("", 3)


def test_student_rating_prompt_shows_the_inputs_and_never_the_rating():
    msgs = xp.rating_messages(
        "beauty",
        user_profile="Values: scent.",
        item_title="Rose Oil",
        item_attributes="brand: X",
        item_profile="Strengths: smell.",
        description="An oil.",
    )
    text = msgs[1]["content"]
    assert "Values: scent." in text and '"Rose Oil" (brand: X)' in text and "Strengths: smell." in text
    assert "Analysis:" in text and "Rating: r" in text and "rated" not in text
    short = xp.rating_messages(
        "beauty",
        user_profile="",
        item_title="Rose Oil",
        item_attributes="",
        item_profile="",
        description="",
        with_reasoning=False,
    )[1]["content"]
    assert "no profile" in short and "Analysis" not in short and "no reviews yet" in short


def test_templates_are_pinned_to_their_versions():
    fields = {
        "preference_extraction": {"review": xp.Review("Capo", 4.0, "Holds well, a bit stiff.")},
        "exp3rt_user_profile": {
            "entries": [xp.RatedPreferences("Capo", 4.0, xp.Preferences(("grip",), ()))],
            "n_words": 60,
        },
        "exp3rt_item_profile": {
            "title": "Capo",
            "entries": [xp.RatedPreferences("Capo", 2.0, xp.Preferences((), ("stiff spring",)))],
            "n_words": 60,
        },
        "exp3rt_rating_reasoning": {
            "user_profile": "Values: grip.",
            "item_title": "Capo",
            "item_attributes": "",
            "item_profile": "Strengths: grip.",
            "description": "A capo.",
            "rating": 4,
            "n_words": 80,
        },
    }
    blob = json.dumps(
        {n: [t.version, t.messages("beauty", **fields[n])] for n, t in xp.TEMPLATES.items()}, sort_keys=True
    )
    assert hashlib.sha256(blob.encode()).hexdigest()[:16] == PINNED, (
        "an EXP3RT template's wording changed: bump its version in rrlib/prompts/exp3rt.py, then update PINNED"
    )


PINNED = "12e708afa2905e06"  # v2 of every template: the <data> block (issue 24)


# ---------------------------------------------------------------------------------------
# Which reviews each profile may read
# ---------------------------------------------------------------------------------------
def _with_reviews(t):
    inter = t["interactions"].copy()
    inter["review_text"] = [f"review {u} {p}" for u, p in zip(inter["user_id"], inter["position"])]
    n = inter.groupby("user_id")["position"].transform("size")
    back = n - inter["position"]
    inter["target_of"] = back.map({1: "test", 2: "valid", 3: "train"}).fillna("")
    inter.loc[inter["target_of"] != "", "review_text"] = "TARGET REVIEW says 5 stars"
    return inter


def test_user_reviews_never_include_a_target_review():
    t = synthetic_tables()
    inter = _with_reviews(t)
    got = user_reviews(inter, ["u0", "u1"], per_user=4, words=50)
    assert set(got["user_id"]) == {"u0", "u1"} and got.groupby("user_id").size().max() == 4
    assert not got["text"].str.contains("TARGET").any()
    seq_len = 12
    assert got["position"].max() < seq_len - 3  # strictly before the earliest (train) target
    assert got.groupby("user_id")["position"].apply(lambda s: s.is_monotonic_increasing).all()  # oldest first
    with pytest.raises(ValueError, match="target_of"):
        user_reviews(inter.drop(columns="target_of"), ["u0"], 4, 50)


def test_item_reviews_read_the_algorithm_1_sample():
    t = synthetic_tables()
    got = item_reviews(t["items"], ["i0", "i1"], per_item=1, words=3)
    assert got["review_id"].tolist() == ["i:i0:0", "i:i1:0"] and got["text"].tolist() == [
        "great item 0",
        "great item 1",
    ]


# ---------------------------------------------------------------------------------------
# Extraction and profiles with a fake teacher
# ---------------------------------------------------------------------------------------
class FakeTeacher:
    def __init__(self, bad=()):
        self.identity = {"name": "fake"}
        self.calls = []
        self.bad = set(bad)

    def generate(self, requests):
        self.calls.extend(requests)
        out = []
        for r in requests:
            if r.template == "preference_extraction":
                text = "I think they liked it." if r.tag in self.bad else "Liked: sound; price\nDisliked: none"
            elif r.template == "exp3rt_user_profile":
                text = "Values: good sound at a fair price.\nAvoids: nothing in particular."
            else:
                text = "Strengths: sound and price.\nWeaknesses: none reported."
            out.append(GenerationResult(text=text, prompt_tokens=5, completion_tokens=9, finish_reason="stop"))
        return out

    def count_tokens(self, messages):
        return 1


def _cfg(**kw):
    return Config.full({"KSHOT_SIZES": [2], "TRAIN_KSHOTS": [], "MAX_OUTPUT_RETRIES": 1, **kw})


def test_extraction_retries_counts_and_never_crashes_on_unparseable_outputs():
    t = synthetic_tables()
    reviews = user_reviews(_with_reviews(t), ["u0", "u1"], per_user=2, words=20)
    bad = reviews["review_id"].iloc[0]
    teacher = FakeTeacher(bad={bad})
    catalog = ItemCatalog.from_tables(t["items"])
    out = extract_preferences(reviews, catalog, domain="beauty", cfg=_cfg(), generator=DirectGenerator(teacher))
    tab = out.table.set_index("review_id")
    assert list(out.table.columns) == PREFERENCE_COLUMNS + ["raw"]
    assert tab.loc[bad, "status"] == "degenerate" and "unparseable" in tab.loc[bad, "detail"]
    assert tab.loc[bad, "attempts"] == 2 and tab.loc[bad, "liked"] == []  # retried once, then counted
    good = tab.drop(index=bad)
    assert (good["status"] == "ok").all() and all(list(x) == ["sound", "price"] for x in good["liked"])
    assert out.summary["n_unparseable"] == 1 and out.summary["n_parsed"] == len(reviews) - 1
    prompt = out.requests[bad].messages[1]["content"]
    assert "review u0" in prompt and "Liked: <aspect>" in prompt


def test_profiles_aggregate_parsed_preferences_and_mark_users_without_any():
    t = synthetic_tables()
    reviews = user_reviews(_with_reviews(t), ["u0", "u1"], per_user=2, words=20)
    teacher = FakeTeacher(bad=set(reviews.loc[reviews["user_id"] == "u1", "review_id"]))
    catalog = ItemCatalog.from_tables(t["items"])
    cfg = _cfg(MAX_OUTPUT_RETRIES=0)
    prefs = extract_preferences(reviews, catalog, domain="beauty", cfg=cfg, generator=DirectGenerator(teacher)).table
    out = build_profiles(
        prefs, "user", ["u0", "u1", "u9"], catalog, domain="beauty", cfg=cfg, generator=DirectGenerator(teacher)
    )
    tab = out.table.set_index("id")
    assert tab.loc["u0", "status"] == "ok" and tab.loc["u0", "profile"].startswith("Values:")
    assert tab.loc["u1", "status"] == "no_reviews" and tab.loc["u9", "status"] == "no_reviews"  # nothing invented
    assert usable_profiles(out.table) == {"u0": tab.loc["u0", "profile"]}
    prompt = out.requests["u0"].messages[1]["content"]
    assert "Liked: sound; price | Disliked: none" in prompt and "Values:" in prompt
    items = build_profiles(
        extract_preferences(
            item_reviews(t["items"], ["i0"], 2, 20),
            catalog,
            domain="beauty",
            cfg=cfg,
            generator=DirectGenerator(teacher),
        ).table,
        "item",
        ["i0"],
        catalog,
        domain="beauty",
        cfg=cfg,
        generator=DirectGenerator(teacher),
    )
    assert items.table["profile"].iloc[0].startswith("Strengths:") and items.summary["n_usable"] == 1
    with pytest.raises(ValueError, match="kind"):
        build_profiles(prefs, "shop", [], catalog, domain="beauty", cfg=cfg, generator=DirectGenerator(teacher))


def test_no_target_review_reaches_any_exp3rt_prompt():
    t = synthetic_tables()
    inter = _with_reviews(t)
    users = sorted(inter["user_id"].unique())
    teacher = FakeTeacher()
    catalog = ItemCatalog.from_tables(t["items"])
    reviews = pd.concat([user_reviews(inter, users, 8, 50), item_reviews(t["items"], catalog.titles, 5, 50)])
    prefs = extract_preferences(reviews, catalog, domain="beauty", cfg=_cfg(), generator=DirectGenerator(teacher))
    build_profiles(prefs.table, "user", users, catalog, domain="beauty", cfg=_cfg(), generator=DirectGenerator(teacher))
    assert teacher.calls and not any("TARGET REVIEW" in m["content"] for r in teacher.calls for m in r.messages)


def test_rating_reasoning_is_conditioned_on_the_true_rating_and_checked():
    import re

    from rrlib.reasoning import RATING_REASONING_COLUMNS, generate_rating_reasoning

    t = synthetic_tables()
    ex = t["examples"][t["examples"]["split"] == "train"].head(4).copy()
    ex["target_rating"] = [1.0, 3.5, 5.0, 4.0]

    class Teacher(FakeTeacher):
        def generate(self, requests):
            self.calls.extend(requests)
            out = []
            for r in requests:
                true = int(re.search(r"rated this product (\d) out of 5", r.messages[1]["content"]).group(1))
                stated = 2 if (r.tag == "train:u0" and r.settings.temperature < 0.2) else true  # one wrong first try
                out.append(
                    GenerationResult(
                        text="Analysis: the product matches what this customer values in the "
                        "profile, a pleasant scent and a gentle feel, and nothing "
                        f"in it clashes with what they avoid.\nRating: {stated}",
                        prompt_tokens=5,
                        completion_tokens=9,
                        finish_reason="stop",
                    )
                )
            return out

    teacher = Teacher()
    ctx = xp.RatingContext(ItemCatalog.from_tables(t["items"]), {"u0": "Values: sound."}, {}, "beauty")
    out = generate_rating_reasoning(ex, ctx, cfg=_cfg(), generator=DirectGenerator(teacher))
    tab = out.table.set_index("example_id")
    assert list(out.table.columns) == RATING_REASONING_COLUMNS + ["raw"]
    assert tab["rating"].tolist() == [1, 4, 5, 4]  # 3.5 rounds half up
    assert (tab["status"] == "ok").all() and tab.loc["train:u0", "attempts"] == 2  # the wrong rating was retried
    assert all("Rating" not in r for r in tab["reasoning"])  # the answer line is added by the completion
    first = out.requests["train:u0"].messages[1]["content"]
    assert "Values: sound." in first and "rated this product 1 out of 5" in first
    with pytest.raises(ValueError, match="train examples only"):
        generate_rating_reasoning(t["examples"], ctx, cfg=_cfg(), generator=DirectGenerator(teacher))
