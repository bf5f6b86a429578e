"""Reasoning ground truth (notebook 04): training examples only, the true label in the prompt,
two-part post-processing, and the reasoning table contract."""
import pandas as pd
import pytest

from rrlib.enrich import ItemTexts
from rrlib.reasoning import REASONING_COLUMNS, generate_reasoning, reasoning_examples
from test_enrich import CountingBackend, DirectGenerator, _descriptions, small_params, synthetic_tables


def _profiles(user_ids, status_of=None):
    status_of = status_of or {}
    return pd.DataFrame({"user_id": user_ids, "profile": [f"Profile of {u}: likes durable things." for u in user_ids],
                         "source": "generated", "status": [status_of.get(u, "ok") for u in user_ids],
                         "n_words": 5})


def test_reasoning_examples_are_the_largest_kshot_training_set():
    t = synthetic_tables()
    ex = reasoning_examples(t["examples"], small_params(KSHOT_SIZES=[2, 4]))
    assert ex["split"].eq("train").all() and ex["sample_rank"].tolist() == [0, 1, 2, 3]


def test_reasoning_prompt_holds_label_profile_history_and_target():
    t = synthetic_tables()
    ex = reasoning_examples(t["examples"], small_params())
    texts = ItemTexts(t["items"], _descriptions(t))
    backend = CountingBackend()
    out = generate_reasoning(ex, _profiles(["u0", "u1", "u2", "u3"], {"u2": "repetitive"}), texts, domain="beauty",
                             params=small_params(REASONING_WORDS=40), generator=DirectGenerator(backend))
    tab = out.table
    assert list(tab.columns) == REASONING_COLUMNS + ["raw"]
    assert tab["example_id"].tolist() == ex["example_id"].tolist()
    assert (tab["label"] == ex["label"].to_numpy()).all()
    for row in ex.to_dict("records"):
        prompt = out.requests[row["example_id"]].messages[1]["content"]
        verb = "liked" if row["label"] == 1 else "disliked"
        assert f"We know that the customer {verb} the new product" in prompt
        assert f"New product: Product {row['target_item_id'][1:]}" in prompt
        assert f"Description of {row['target_item_id']}." in prompt
        for item, liked in zip(row["history_item_ids"], row["history_liked"]):
            assert f"Product {item[1:]} ({'LIKED' if liked else 'DISLIKED'})" in prompt
        assert "at most 40 words" in prompt
        has_profile = row["user_id"] != "u2"  # u2's profile is unusable: the no-profile note stands in
        assert (f"Profile of {row['user_id']}" in prompt) == has_profile
        assert ("no profile" in prompt) == (not has_profile)
    assert set(tab["label"]) == {0, 1}  # the synthetic data has both labels
    got = tab.set_index("example_id")
    for row in ex.to_dict("records"):
        verb = "liked" if row["label"] == 1 else "disliked"
        text = got.loc[row["example_id"], "reasoning"]
        assert text.startswith("Profile analysis:") and f"customer {verb} it." in text
        assert text.split("\n")[1].startswith("Target analysis:")
    assert (tab["status"] == "ok").all()
    assert out.summary["n_without_profile"] == 1 and out.summary["by_label"]
    assert out.requests["train:u0"].settings.top_p == 0.75 and out.requests["train:u0"].settings.max_new_tokens == 256


def test_reasoning_refuses_non_training_examples():
    t = synthetic_tables()
    with pytest.raises(ValueError, match="only training examples"):
        generate_reasoning(t["examples"], _profiles([]), ItemTexts(t["items"], None), domain="beauty",
                           params=small_params(), generator=DirectGenerator(CountingBackend()))


def test_reasoning_flags_bad_outputs():
    t = synthetic_tables()
    ex = reasoning_examples(t["examples"], small_params(KSHOT_SIZES=[2]))
    backend = CountingBackend(answer=lambda r: "Profile analysis: " + "good " * 30 + "\nTarget analysis: ok"
                              if r.tag == "train:u0" else "")
    out = generate_reasoning(ex, _profiles(["u0", "u1"]), ItemTexts(t["items"], _descriptions(t)), domain="movies",
                             params=small_params(MAX_OUTPUT_RETRIES=1), generator=DirectGenerator(backend))
    assert out.table["status"].tolist() == ["repetitive", "empty"]
    assert out.table["attempts"].tolist() == [2, 2] and len(backend.calls) == 4
    assert out.summary["n_unusable_generated"] == 2
