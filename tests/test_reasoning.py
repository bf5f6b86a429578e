"""Reasoning ground truth (notebook 05): training reasoning for the K-shot training examples only,
test references (BERTScore only) for the test subsample only, each in its own file, the true
label in the prompt, two-part post-processing, and the reasoning table contract."""

import pandas as pd
import pytest
from test_enrich import CountingBackend, DirectGenerator, _descriptions, small_params, synthetic_tables

from rrlib.config.paths import RunPaths
from rrlib.evaluate.results import reference_reasoning
from rrlib.methods.registry import FULL_VIEW, get
from rrlib.prompts.items import ItemCatalog
from rrlib.reasoning import (
    REASONING_COLUMNS,
    generate_reasoning,
    generate_reference_reasoning,
    reasoning_examples,
    reasoning_request,
    reference_examples,
    teacher_views,
    write_reference_reasoning,
    write_training_reasoning,
)


def _profiles(user_ids, status_of=None):
    status_of = status_of or {}
    return pd.DataFrame(
        {
            "user_id": user_ids,
            "profile": [f"Profile of {u}: likes durable things." for u in user_ids],
            "source": "generated",
            "status": [status_of.get(u, "ok") for u in user_ids],
            "n_words": 5,
        }
    )


def test_reasoning_examples_are_the_largest_kshot_training_set():
    t = synthetic_tables()
    ex = reasoning_examples(t["examples"], small_params(KSHOT_SIZES=[2, 4]))
    assert ex["split"].eq("train").all() and ex["sample_rank"].tolist() == [0, 1, 2, 3]


def test_reasoning_prompt_holds_label_profile_history_and_target():
    t = synthetic_tables()
    ex = reasoning_examples(t["examples"], small_params())
    texts = ItemCatalog.from_tables(t["items"], _descriptions(t))
    backend = CountingBackend()
    out = generate_reasoning(
        ex,
        _profiles(["u0", "u1", "u2", "u3"], {"u2": "repetitive"}),
        texts,
        domain="beauty",
        cfg=small_params(REASONING_WORDS=40),
        generator=DirectGenerator(backend),
    )
    tab = out.table
    assert list(tab.columns) == REASONING_COLUMNS + ["raw"]
    assert tab["example_id"].tolist() == ex["example_id"].tolist()
    assert (tab["label"] == ex["label"].to_numpy()).all()
    for row in ex.to_dict("records"):
        prompt = out.requests[f"reasoningrec:{row['example_id']}"].messages[1]["content"]
        verb = "liked" if row["label"] == 1 else "disliked"
        assert f"We know that the customer {verb} the new product" in prompt
        assert f"New product: Product {row['target_item_id'][1:]}" in prompt
        assert f"Description of {row['target_item_id']}." in prompt
        for item, liked in zip(row["history_item_ids"], row["history_liked"]):
            line = next(x for x in prompt.splitlines() if f"Product {item[1:]} [" in x)
            assert line.endswith(f"({'LIKED' if liked else 'DISLIKED'})")
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
    # Table 6 (top_p 0.75, 256 tokens for 100-word parts), the token budget scaled to 40 words, and
    # raised to what the grammar of the two sections allows (50 words each, 1.8 tokens a word)
    request = out.requests["reasoningrec:train:u0"]
    assert request.settings.top_p == 0.75 and request.settings.max_new_tokens == 196
    assert request.grammar.startswith('root ::= "Profile analysis: " text "\\nTarget analysis: " text')
    assert out.summary["parse"] == {
        "task": "reasoning",
        "constrained": True,
        "n": len(ex),
        "n_parsed": len(ex),
        "rate": 1.0,
        "n_usable": len(ex),
        "usable_rate": 1.0,
    }
    free = reasoning_request(
        ex.iloc[0], "", texts, domain="beauty", cfg=small_params(REASONING_WORDS=40, TEACHER_CONSTRAINED=False)
    )
    assert free.grammar == "" and free.settings.max_new_tokens == 102
    assert set(tab["method"]) == {"reasoningrec"} and set(tab["view"]) == {"full"}


def test_reasoning_refuses_non_training_examples():
    t = synthetic_tables()
    with pytest.raises(ValueError, match="train examples only"):
        generate_reasoning(
            t["examples"],
            _profiles([]),
            ItemCatalog.from_tables(t["items"], None),
            domain="beauty",
            cfg=small_params(),
            generator=DirectGenerator(CountingBackend()),
        )


def test_reasoning_flags_bad_outputs():
    t = synthetic_tables()
    ex = reasoning_examples(t["examples"], small_params(KSHOT_SIZES=[2]))
    backend = CountingBackend(
        answer=lambda r: "Profile analysis: " + "good " * 30 + "\nTarget analysis: ok" if r.tag == "train:u0" else ""
    )
    out = generate_reasoning(
        ex,
        _profiles(["u0", "u1"]),
        ItemCatalog.from_tables(t["items"], _descriptions(t)),
        domain="movies",
        cfg=small_params(MAX_OUTPUT_RETRIES=1),
        generator=DirectGenerator(backend),
    )
    assert out.table["status"].tolist() == ["repetitive", "empty"]
    assert out.table["attempts"].tolist() == [2, 2] and len(backend.calls) == 4
    assert out.summary["n_unusable_generated"] == 2


# ---------------------------------------------------------------------------------------
# Test references: label-conditioned reasoning for the test subsample, BERTScore only
# ---------------------------------------------------------------------------------------
def _write_both(tmp_path, **kw):
    t = synthetic_tables()
    cfg = small_params(KSHOT_SIZES=[2, 4], N_TEST=3, **kw)
    paths = RunPaths.of(tmp_path / "run")
    texts = ItemCatalog.from_tables(t["items"], _descriptions(t))
    backend = CountingBackend()
    common = dict(
        domain="beauty", cfg=cfg, generator=DirectGenerator(backend), paths=paths, views={"reasoningrec": FULL_VIEW}
    )
    train = write_training_reasoning(t["examples"], _profiles([f"u{n}" for n in range(8)]), texts, **common)
    refs = write_reference_reasoning(t["examples"], _profiles([f"u{n}" for n in range(8)]), texts, **common)
    return t, paths, backend, train, refs


def test_reference_examples_are_the_test_subsample():
    t = synthetic_tables()
    ex = reference_examples(t["examples"], small_params(N_TEST=3))
    assert ex["split"].eq("test").all() and ex["example_id"].tolist() == ["test:u0", "test:u1", "test:u2"]
    assert len(reference_examples(t["examples"], small_params(N_TEST=0))) == 8  # 0 = every test example
    with pytest.raises(ValueError, match="no test examples"):
        reference_examples(t["examples"][t["examples"]["split"] != "test"], small_params())


def test_training_and_test_references_go_to_their_own_files(tmp_path):
    t, paths, backend, train, refs = _write_both(tmp_path)
    on_disk_train = pd.read_parquet(paths.reasoning)
    on_disk_refs = pd.read_parquet(paths.reference_reasoning)
    assert on_disk_train["example_id"].tolist() == ["train:u0", "train:u1", "train:u2", "train:u3"]
    assert on_disk_refs["example_id"].tolist() == ["test:u0", "test:u1", "test:u2"]
    assert list(on_disk_refs.columns) == list(on_disk_train.columns) == REASONING_COLUMNS + ["raw"]
    # the reference prompt is the same label-conditioned prompt, with the test example's true label
    test = t["examples"].set_index("example_id")
    for eid in on_disk_refs["example_id"]:
        verb = "liked" if test.loc[eid, "label"] == 1 else "disliked"
        assert (
            f"We know that the customer {verb} the new product"
            in refs.requests[f"reasoningrec:{eid}"].messages[1]["content"]
        )
        assert f"customer {verb} it." in on_disk_refs.set_index("example_id").loc[eid, "reasoning"]
    assert (on_disk_refs["label"] == test.loc[on_disk_refs["example_id"], "label"].to_numpy()).all()
    assert len(backend.calls) == 7 and {r.tag for r in backend.calls} == set(on_disk_train["example_id"]) | set(
        on_disk_refs["example_id"]
    )
    assert train.summary["product"] == "training" and train.summary["split"] == "train"
    assert refs.summary["product"] == "test_references" and refs.summary["enabled"] is True
    assert refs.summary["n"] == 3 and refs.summary["table"] == str(paths.reference_reasoning)
    # notebook 07 reads both files: references exist for the test subsample and the training set
    got = reference_reasoning(paths)
    assert set(got["full"]) == set(on_disk_train["example_id"]) | set(on_disk_refs["example_id"])


def test_each_generator_refuses_the_other_split():
    t = synthetic_tables()
    args = (_profiles(["u0", "u1", "u2"]), ItemCatalog.from_tables(t["items"], _descriptions(t)))
    kw = dict(domain="beauty", cfg=small_params(), generator=DirectGenerator(CountingBackend()))
    ex = t["examples"]
    mixed = pd.concat([ex[ex["example_id"] == "train:u0"], ex[ex["example_id"] == "test:u1"]])
    with pytest.raises(ValueError, match=r"takes train examples only.*test:u1.*generate_reference_reasoning"):
        generate_reasoning(mixed, *args, **kw)
    with pytest.raises(ValueError, match=r"takes test examples only.*train:u0.*use generate_reasoning"):
        generate_reference_reasoning(mixed, *args, **kw)
    with pytest.raises(ValueError, match=r"takes test examples only.*valid:u0"):
        generate_reference_reasoning(ex[ex["example_id"] == "valid:u0"], *args, **kw)
    assert kw["generator"].backend.calls == []  # refused before any generation


def test_reference_reasoning_can_be_turned_off(tmp_path):
    _, paths, _, _, _ = _write_both(tmp_path)
    assert paths.reference_reasoning.exists()
    # a rerun with the references turned off generates none and removes the earlier run's file
    _, paths, backend, train, refs = _write_both(tmp_path, REFERENCE_REASONING=False)
    assert not paths.reference_reasoning.exists() and paths.reasoning.exists()
    assert {r.tag.split(":")[0] for r in backend.calls} == {"train"}
    assert refs.table.empty and list(refs.table.columns) == REASONING_COLUMNS + ["raw"]
    assert refs.summary["enabled"] is False and refs.summary["removed_stale_file"] is True
    assert set(reference_reasoning(paths)["full"]) == set(train.table["example_id"])


# ---------------------------------------------------------------------------------------
# Faithful ablations: each teacher sees only what its student sees
# ---------------------------------------------------------------------------------------
def test_teacher_views_follow_the_registry():
    views = teacher_views(["reasoningrec", "reasoningrec_no_profile", "reasoningrec_no_description", "tallrec"])
    assert set(views) == {"reasoningrec", "reasoningrec_no_profile", "reasoningrec_no_description"}  # tallrec: none
    assert views["reasoningrec"] == FULL_VIEW
    assert "profile" not in views["reasoningrec_no_profile"]
    assert (
        "descriptions" not in views["reasoningrec_no_description"] and "titles" in views["reasoningrec_no_description"]
    )
    assert views["reasoningrec_no_profile"] == get("reasoningrec_no_profile").inputs  # student and teacher agree
    full = teacher_views(["reasoningrec_no_profile"], "full")
    assert full == {"reasoningrec_no_profile": FULL_VIEW}
    with pytest.raises(ValueError, match="ABLATION_REASONING"):
        teacher_views(["reasoningrec"], "partial")


def test_ablated_teachers_see_only_their_students_inputs():
    t = synthetic_tables()
    ex = reasoning_examples(t["examples"], small_params(KSHOT_SIZES=[2]))
    views = teacher_views(["reasoningrec", "reasoningrec_no_profile", "reasoningrec_no_description"])
    out = generate_reasoning(
        ex,
        _profiles(["u0", "u1"]),
        ItemCatalog.from_tables(t["items"], _descriptions(t)),
        domain="beauty",
        cfg=small_params(),
        generator=DirectGenerator(CountingBackend()),
        views=views,
    )
    assert sorted(set(out.table["view"])) == ["full", "no_description", "no_profile"]
    assert len(out.table) == 3 * len(ex)
    for eid in ex["example_id"]:
        full = out.requests[f"reasoningrec:{eid}"].messages[1]["content"]
        no_profile = out.requests[f"reasoningrec_no_profile:{eid}"].messages[1]["content"]
        no_desc = out.requests[f"reasoningrec_no_description:{eid}"].messages[1]["content"]
        assert "Profile of a customer" in full and "Profile of" not in no_profile and "Profile of a customer" in no_desc
        assert "Description of" in full and "Description of" in no_profile and "Description of" not in no_desc
        assert "[brand: B" in no_desc  # titles and attributes stay


def test_no_reasoning_method_means_no_teacher_call():
    # METHODS without a reasoning method (TALLRec only, RecPIE presets): teacher_views is empty
    t = synthetic_tables()
    ex = reasoning_examples(t["examples"], small_params())
    backend = CountingBackend()
    out = generate_reasoning(
        ex,
        _profiles(["u0", "u1", "u2", "u3"]),
        ItemCatalog.from_tables(t["items"], _descriptions(t)),
        domain="beauty",
        cfg=small_params(),
        generator=DirectGenerator(backend),
        views=teacher_views(["tallrec"]),
    )
    assert len(out.table) == 0 and list(out.table.columns) == REASONING_COLUMNS + ["raw"]
    assert backend.calls == []
