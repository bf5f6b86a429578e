"""The leakage audit (rrlib.data.audit): known answers on synthetic tables, the refusals of
prepare(), the figures written into the data card, and every shipped dataset audited under the
default policies (zero copied labels) and under the policies that leak (refused)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from audit_example import EMBEDDED_BEAUTY

from rrlib.config.paths import RunPaths
from rrlib.data import DataError, LeakageError, audit_table, load_tables, prepare
from rrlib.data import audit as A
from rrlib.errors import DataError as BaseDataError
from rrlib.errors import LeakageError as BaseLeakageError


# --------------------------------------------------------------------------- helpers
def test_error_types_are_the_project_ones():
    assert DataError is BaseDataError and LeakageError is BaseLeakageError
    assert issubclass(LeakageError, DataError)


def test_auc_rank_formula_known_answers():
    assert A.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert A.auc([0.5, 0.5, 0.5], [0, 1, 1]) == pytest.approx(0.5)  # ties: half credit
    assert A.auc([0.2, 0.9], [1, 1]) is None


def _tables(history_items, target_item="t", target_text="mine", hist_text="other", profile=()):
    """One user: positions 0..n-1 = profile candidates + history, then the target."""
    seq = list(profile) + list(history_items) + [target_item]
    n = len(seq)
    texts = [hist_text] * (n - 1) + [target_text]
    inter = pd.DataFrame(
        {
            "user_id": "u",
            "item_id": seq,
            "rating": 5.0,
            "liked": True,
            "position": range(n),
            "review_text": texts,
            "target_of": [""] * (n - 1) + ["test"],
        }
    )
    hist_pos = list(range(len(profile), n - 1))
    ex = pd.DataFrame(
        [
            {
                "example_id": "test:u",
                "split": "test",
                "user_id": "u",
                "target_item_id": target_item,
                "target_position": n - 1,
                "label": 1,
                "history_positions": hist_pos,
                "history_liked": [True] * len(hist_pos),
                "sample_rank": 0,
            }
        ]
    )
    users = pd.DataFrame({"user_id": ["u"], "profile_positions": [list(range(len(profile)))]})
    return inter, ex, users


PARAMS = {
    "LEAKAGE_THRESHOLD": 0.0,
    "N_VALID": 0,
    "N_TEST": 0,
    "KSHOT_SIZES": [],
    "DATASET": "toy",
    "COLLAPSE_COPIES": True,
    "DEDUP": "keep_last",
    "LIKE_THRESHOLD": 3.0,
}


@pytest.mark.parametrize(
    "case, figure",
    [
        (dict(history_items=["a", "t"]), "target_item_in_history"),
        (dict(history_items=["a", "b"], profile=["t"]), "target_item_in_profile"),
        (dict(history_items=["a", "b"], hist_text="mine"), "copied_review_in_history"),
        (dict(history_items=["a"], profile=["p"], hist_text="mine"), "copied_review_in_profile"),
    ],
)
def test_each_kind_of_copied_label_is_counted(case, figure):
    audit = A.leakage_audit(*_tables(**case), PARAMS)
    f = audit["splits"]["test"]
    assert f[figure] == 1 and f["copied_label"] == 1 and f["copied_label_share"] == 1.0
    with pytest.raises(LeakageError, match="LEAKAGE_THRESHOLD"):
        A.check_audit(audit | {"eval_sets": {}})


def test_clean_example_and_empty_texts_are_not_copies():
    audit = A.leakage_audit(*_tables(["a", "b"], target_text="", hist_text=""), PARAMS)
    assert audit["splits"]["test"]["copied_label"] == 0
    A.check_audit(audit | {"eval_sets": {}})  # passes


def test_same_text_with_another_rating_is_not_a_copied_label():
    inter, ex, users = _tables(["a", "b"], hist_text="mine")
    inter.loc[0, "rating"] = 1.0
    inter.loc[1, "rating"] = 2.0
    assert A.leakage_audit(inter, ex, users, PARAMS)["splits"]["test"]["copied_review_in_history"] == 0


def test_fix_names_the_policy_behind_the_leak():
    f = {
        "target_item_in_history": 3,
        "target_item_in_profile": 0,
        "copied_review_in_history": 0,
        "copied_review_in_profile": 0,
    }
    assert "RELEASE_WINDOWS='clean'" in A._fix_for(f, {"DATASET": "release_beauty", "RELEASE_WINDOWS": "as_released"})
    assert "DEDUP='keep_last'" in A._fix_for(f, {"DATASET": "beauty", "DEDUP": "keep_all"})
    g = f | {"target_item_in_history": 0, "copied_review_in_history": 2}
    assert "COLLAPSE_COPIES=true" in A._fix_for(g, {"COLLAPSE_COPIES": False})


# --------------------------------------------------------------------------- on the embedded default
@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    paths = RunPaths.of(tmp_path_factory.mktemp("emb"))
    card = prepare(dict(EMBEDDED_BEAUTY), paths, progress=False)
    return paths, card


def test_card_holds_the_audit_in_json_and_markdown(embedded):
    paths, card = embedded
    on_disk = json.loads(paths.data_card_json.read_text())
    assert on_disk["audit"] == json.loads(json.dumps(card["audit"]))
    a = card["audit"]
    assert a["passed"] and a["problems"] == []
    for split in ("train", "valid", "test"):
        f = a["splits"][split]
        assert f["copied_label"] == 0 and f["liked"] + f["disliked"] == f["examples"] > 0
    md = paths.data_card_md.read_text()
    assert "## Leakage audit" in md and "copied-label share" in md and "**passed**" in md
    assert "## Flags" in md and "only 20 users" in md
    table = audit_table(a)
    assert list(table.columns) == ["train", "valid", "test"] and "copied-label share" in table.index


def test_like_rate_auc_equals_the_bias_baseline(embedded):
    """The audit recomputes the user_like_rate baseline; it must agree with the evaluation step's."""
    from rrlib.methods.bias import global_like_rate, user_like_rate

    paths, card = embedded
    t = load_tables(paths)
    valid = t.examples[t.examples["split"] == "valid"]
    prior = global_like_rate(t.interactions)
    assert A.training_like_rate(t.interactions) == pytest.approx(prior)
    scores = user_like_rate(valid, prior_rate=prior)
    assert card["audit"]["splits"]["valid"]["user_like_rate_auc"] == pytest.approx(
        A.auc(scores, valid["label"]), abs=1e-4
    )
    from sklearn.metrics import roc_auc_score

    assert A.auc(scores, valid["label"]) == pytest.approx(roc_auc_score(valid["label"], scores))


def test_one_class_evaluation_set_is_refused_before_any_table_is_written(tmp_path):
    paths = RunPaths.of(tmp_path)
    with pytest.raises(DataError, match=r"valid subsample \(N_VALID=600\) holds only liked") as e:
        prepare(EMBEDDED_BEAUTY | {"LIKE_THRESHOLD": -1.0}, paths, progress=False)
    assert "LIKE_THRESHOLD (now -1.0" in str(e.value) and "test subsample" in str(e.value)
    assert not isinstance(e.value, LeakageError)
    card = json.loads(paths.data_card_json.read_text())
    assert not card["audit"]["passed"] and {p["kind"] for p in card["audit"]["problems"]} == {"one_class"}
    assert not paths.examples.exists() and not paths.interactions.exists()


def test_one_class_kshot_set_is_refused():
    audit = {
        "threshold": 0.0,
        "like_threshold": 3.0,
        "policies": {},
        "splits": {s: {"examples": 0} for s in A.SPLITS},
        "eval_sets": {
            "kshot_8": {
                "examples": 8,
                "liked": 8,
                "disliked": 0,
                "parameter": "KSHOT_SIZES",
                "split": "train",
                "requested": 8,
            }
        },
    }
    with pytest.raises(DataError, match=r"the K=8 training set holds only liked examples \(8 liked, 0 disliked\)"):
        A.check_audit(audit)


def test_stale_tables_of_an_earlier_run_are_removed_on_refusal(tmp_path):
    paths = RunPaths.of(tmp_path)
    prepare(dict(EMBEDDED_BEAUTY), paths, progress=False)
    assert paths.examples.is_file()
    with pytest.raises(LeakageError):
        prepare(EMBEDDED_BEAUTY | {"COLLAPSE_COPIES": False}, paths, progress=False)
    assert not paths.examples.exists()


def test_degenerate_flags():
    inter = pd.DataFrame(
        {"user_id": ["a", "a", "b", "b"], "item_id": ["x", "y", "x", "y"], "rating": 5.0, "liked": True}
    )
    audit = {
        "users": {"users": 2, "constant_raters": 2, "constant_rater_share": 1.0},
        "splits": {s: {"examples": 0, "liked": 0, "disliked": 0, "user_like_rate_auc": None} for s in A.SPLITS},
    }
    flags = " | ".join(A.degenerate_flags(inter, audit, {"rows_that_would_be_removed": 5, "rows_removed": 0}))
    for part in (
        "same rating (5)",
        "like rate 100.0%",
        "only 2 items",
        "only 2 users",
        "2 of 2 users (100%) give one rating",
        "COLLAPSE_COPIES is off: 5 rows",
    ):
        assert part in flags, part


# --------------------------------------------------------------------------- every shipped dataset
def _datasets(name: str) -> dict:
    """Parameters of each dataset the project ships (rrlib/resources), read by its own loader."""
    return {
        "embedded_beauty": EMBEDDED_BEAUTY,
        "release_beauty": EMBEDDED_BEAUTY | {"DATASET": "release_beauty"},
        "ml_latest_small": EMBEDDED_BEAUTY | {"DATASET": "ml_latest_small", "KCORE": 20},
        "amazon_instruments": EMBEDDED_BEAUTY | {"DATASET": "amazon_instruments"},
    }[name]


SHIPPED = ["embedded_beauty", "release_beauty", "ml_latest_small", "amazon_instruments"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_dataset_has_zero_copied_labels_under_the_defaults(name, tmp_path):
    params = _datasets(name)
    card = prepare(params, RunPaths.of(tmp_path / "run"), progress=False)
    a = card["audit"]
    assert a["passed"], a["problems"]
    for split in ("train", "valid", "test"):
        f = a["splits"][split]
        assert f["examples"] > 0 and f["copied_label"] == 0, (name, split, f)
        assert f["target_item_in_history"] == f["target_item_in_profile"] == 0
        assert f["copied_review_in_history"] == f["copied_review_in_profile"] == 0
        assert 0 < f["disliked"] < f["examples"]


@pytest.mark.parametrize(
    "name, leaky, policy",
    [
        ("embedded_beauty", {"COLLAPSE_COPIES": False}, "COLLAPSE_COPIES=true"),
        ("embedded_beauty", {"COLLAPSE_COPIES": False, "DEDUP": "keep_all"}, "DEDUP='keep_last'"),
        ("release_beauty", {"RELEASE_WINDOWS": "as_released"}, "RELEASE_WINDOWS='clean'"),
    ],
)
def test_the_leaky_policies_are_refused(name, leaky, policy, tmp_path):
    with pytest.raises(LeakageError, match=policy):
        prepare(_datasets(name) | leaky, RunPaths.of(tmp_path / "run"), progress=False)


def test_release_as_released_reproduces_the_measured_hazard(tmp_path):
    paths = RunPaths.of(tmp_path)
    with pytest.raises(LeakageError):
        prepare(
            EMBEDDED_BEAUTY | {"DATASET": "release_beauty", "RELEASE_WINDOWS": "as_released"}, paths, progress=False
        )
    f = json.loads(paths.data_card_json.read_text())["audit"]["splits"]
    assert (f["test"]["target_item_in_history"], f["test"]["examples"]) == (77, 622)
    assert (f["train"]["target_item_in_history"], f["train"]["examples"]) == (269, 624)
