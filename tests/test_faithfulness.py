"""Explanation quality of reasoning methods on synthetic texts whose answers are known: verdict
agreement (also for rating methods), numbers / aspects / items absent from the input, and user
specificity; the per-method table for notebook 06."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rrlib import predictions as pr
from rrlib.errors import PredictionsError
from rrlib.evaluate import faithfulness as fa


@pytest.mark.parametrize(
    "text,stance",
    [
        ("Given her love of floral scents, she would give this a high rating.", 1),
        ("The user will likely be disappointed by the harsh smell.", 0),
        ("She would rate it highly.", 1),
        ("Overall a low rating is expected.", 0),
        ("The user will not be satisfied with the packaging.", 0),
        ("The user likes lavender.", None),
    ],
)
def test_rating_stance(text, stance):
    assert fa.rating_stance(text) == stance


@pytest.mark.parametrize(
    "text,rating",
    [
        ("Considering all this, my predicted rating is 4.", 4.0),
        ("She would probably rate it 2 out of 5.", 2.0),
        ("Analysis: the user values scent.\nRating: 5", 5.0),
        ("They would give it 3 stars, though earlier the predicted rating was 5.", 5.0),  # the last one wins
        ("The user rated a similar cream 5 stars last year.", None),  # a history fact, not a prediction
        ("The expected rating is 9.", None),  # off the scale
    ],
)
def test_stated_rating(text, rating):
    assert fa.stated_rating(text) == rating


def _rating_row(reasoning: str, predicted: float, argmax: float = float("nan")) -> dict:
    return {
        "task": "rating",
        "reasoning": reasoning,
        "predicted_rating": predicted,
        "rating_argmax": argmax,
        "generated_text": reasoning,
        "predicted_label": int(predicted > 3),
    }


def test_verdict_agreement_for_rating_and_like_rows():
    v = fa.verdict_agreement(_rating_row("Rating: 4", 3.8))
    assert v == {"verdict": 4.0, "how": "stated_rating", "agrees": True}
    assert fa.verdict_agreement(_rating_row("Rating: 4", 4.3, argmax=5.0))["agrees"] is False  # argmax 5 vs said 4
    assert fa.verdict_agreement(_rating_row("She will love it and rate it highly.", 2.2))["agrees"] is False
    assert fa.verdict_agreement(_rating_row("She will be disappointed.", 2.2)) == {
        "verdict": 0,
        "how": "stance",
        "agrees": True,
    }
    assert fa.verdict_agreement(_rating_row("She bought creams before.", 2.2))["agrees"] is None
    like = {
        "task": "like",
        "reasoning": "The user will not like it.",
        "generated_text": "Prediction: Yes\n...",
        "predicted_label": 1,
    }
    assert fa.verdict_agreement(like)["agrees"] is False
    assert fa.verdict_agreement({**like, "generated_text": "Prediction: No"})["agrees"] is True


def test_unknown_numbers_and_aspects():
    known = "Rose Shampoo, price: $12.99, rated 4.5 stars by 120 reviews. Gentle floral scent."
    said = (
        "At $12.99 and 4.5 stars it is a bargain; 87% of buyers liked it, 300 reviews say so, "
        "and since 2015 it costs 9 dollars."
    )
    found = fa.unknown_numbers(said, known)
    assert found == ["price: 9 dollars", "percent: 87%", "count: 300 reviews", "year: 2015"]
    assert fa.unknown_numbers("I predict 4 stars.", known) == ["stars: 4 stars"]
    assert fa.unknown_numbers("I predict 4 stars.", known, allow=[4.0]) == []
    aspects = fa.ASPECTS["beauty"]
    got = fa.unknown_aspects("The scent is lovely but the packaging leaks and the texture is greasy.", known, aspects)
    assert got == ["texture", "packaging", "greasy"]  # 'scent' is in the input
    assert fa.unknown_aspects("Nice scents.", known, aspects) == []  # plural of an input aspect


def test_user_specificity_separates_templates_from_personal_reasoning():
    template = [
        "The user generally enjoys quality products and will likely appreciate this item a lot "
        "because it matches common preferences of many shoppers."
    ] * 6
    users = [f"u{i}" for i in range(6)]
    same = fa.user_specificity(template, users, items=["i1", "i1", "i2", "i2", "i3", "i3"])
    assert same["mean_pairwise_cosine"] == pytest.approx(1.0) and same["same_item_cosine"] == pytest.approx(1.0)
    assert same["near_duplicate_share"] == 1.0 and same["shared_ngram_rate"] == 1.0
    personal = [
        "She loved the lavender soap and dislikes mint, so a floral shampoo suits her dry hair well.",
        "He returns anything with sulfates; this argan oil is free of them and tames his frizz.",
        "Coconut lotion fans like her want rich texture, but this thin serum felt watery to her.",
        "Their history is all unscented sensitive-skin products, and this perfume would irritate.",
        "He buys beard oils monthly, and the cedar note matches the two he rated highest.",
        "She wants cruelty-free brands only; the maker tests on animals, a dealbreaker.",
    ]
    diff = fa.user_specificity(personal, users)
    assert diff["mean_pairwise_cosine"] < 0.15 and diff["near_duplicate_share"] == 0.0
    assert diff["shared_ngram_rate"] == 0.0 and np.isnan(diff["same_item_cosine"])
    # pairs of the same user are not compared: one user with the same text twice is specific
    alone = fa.user_specificity(template[:2] + personal[:1], ["u1", "u1", "u2"])
    assert alone["near_duplicate_share"] == 0.0
    assert np.isnan(fa.user_specificity(template[:2], ["u1", "u1"])["mean_pairwise_cosine"])


def test_user_specificity_of_texts_without_a_word_is_nan_not_a_crash():
    # a broken student can answer single characters only; the tokenizer then finds no vocabulary
    out = fa.user_specificity(["a", "b", "!"], ["u1", "u2", "u3"])
    assert out["n_texts"] == 3 and np.isnan(out["mean_pairwise_cosine"]) and np.isnan(out["near_duplicate_share"])


def _examples(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "example_id": [f"test:u{i}" for i in range(n)],
            "split": "test",
            "user_id": [f"u{i}" for i in range(n)],
            "target_item_id": [f"i{i % 3}" for i in range(n)],
            "target_rating": [5.0, 2.0, 4.0, 1.0, 5.0, 3.0][:n],
            "label": [1, 0, 1, 0, 1, 0][:n],
        }
    )


def test_explanation_quality_per_method():
    ex = _examples(6)
    known = {
        e: f"user {i} history: Rose Shampoo, Mint Cream; price: $10; floral scent"
        for i, e in enumerate(ex["example_id"])
    }
    generic = "The user generally enjoys quality beauty products and will like this item because it is popular."
    personal = [f"User {i} loved Rose Shampoo's floral scent, so will like it." for i in range(6)]
    personal[1] = 'User 1 disliked Mint Cream, but would enjoy "Velvet Dream Serum" at $25.'  # 2 unknowns
    rating_texts = [
        "Rating: 5",
        "She will be disappointed. Rating: 2",
        "She will love it.",
        "Rating: 4",
        "",
        "She will be disappointed.",
    ]
    preds = pd.concat(
        [
            pr.like_rows(
                "zeroshot_reasoningrec",
                0,
                ex,
                [0.9] * 6,
                reasoning=[generic] * 6,
                generated_text=["Prediction: Yes\n" + generic] * 6,
            ),
            pr.like_rows(
                "reasoningrec",
                64,
                ex,
                [0.9, 0.9, 0.8, 0.7, 0.6, 0.9],
                reasoning=personal,
                generated_text=["Prediction: Yes\n" + t for t in personal],
            ),
            pr.rating_rows(
                "user_mean",
                0,
                ex,
                [4.8, 2.1, 2.5, 4.2, 4.0, 4.5],
                like_threshold=3.0,
                rating_argmax=[5, 2, 2, 4, 4, 5],
                reasoning=rating_texts,
            ),
            pr.like_rows("user_like_rate", 0, ex, [0.5] * 6),  # no reasoning: not in the table
        ],
        ignore_index=True,
    )
    table = fa.explanation_quality(preds, known, like_threshold=3.0, aspects=("scent", "packaging"))
    by = table.set_index("method")
    assert list(table.columns) == ["method", "label", "k", "seed", "task", *fa.EXPLANATION_COLUMNS]
    assert set(by.index) == {"zeroshot_reasoningrec", "reasoningrec", "user_mean"}
    z, r, u = by.loc["zeroshot_reasoningrec"], by.loc["reasoningrec"], by.loc["user_mean"]
    # the template is identical for every user; the personal texts share little
    assert z["mean_pairwise_cosine"] == pytest.approx(1.0) and z["near_duplicate_share"] == 1.0
    assert r["mean_pairwise_cosine"] < z["mean_pairwise_cosine"] and r["near_duplicate_share"] < 1.0
    # one personal text names an unknown serum and an unknown price
    assert r["unknown_item_rate"] == pytest.approx(1 / 6) and r["unknown_number_rate"] == pytest.approx(1 / 6)
    assert r["any_unknown_rate"] == pytest.approx(1 / 6) and r["verdict_agreement"] == 1.0
    # rating rows: 5 reasonings; agree: 'Rating: 5' (5), 'Rating: 2' (2), 'Rating: 4' (4), disappointed (4.5: no);
    # 'love' with 2.5 -> no
    assert u["n_reasoning"] == 5 and u["empty_reasoning_rate"] == pytest.approx(1 / 6)
    assert u["verdict_found_rate"] == 1.0 and u["verdict_agreement"] == pytest.approx(3 / 5)
    assert u["contradiction_rate"] == pytest.approx(2 / 5) and u["task"] == "rating"
    checks = fa.explanation_checks(preds[preds["method"] == "user_mean"], known)
    assert checks.set_index("example_id").loc["test:u1", "verdict_how"] == "stated_rating"
    with pytest.raises(PredictionsError, match="known_texts lacks 1 of 6"):
        fa.explanation_quality(preds, {k: v for k, v in list(known.items())[1:]})


def test_failure_types_of_rating_rows():
    row = {**_rating_row("She would love it at $30, so a high rating.", 2.0, 2.0), "method": "user_mean"}
    assert fa.failure_types(row, "Rose Shampoo, price: $12") == ["contradiction", "unknown_number"]
    ok = {**_rating_row("A low rating: the scent is too strong. Rating: 2", 2.0, 2.0), "method": "user_mean"}
    assert fa.failure_types(ok, "strong scent") == []
