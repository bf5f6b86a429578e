"""prepare() end to end on the embedded default: files, data card, round trip, determinism."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from audit_example import EMBEDDED_BEAUTY

from rrlib.config.paths import RunPaths
from rrlib.data import figure_paths, load_dataset, load_tables, prepare, read_card
from rrlib.data import processing as P
from rrlib.data.collapse import collapse_copies
from rrlib.data.schema import TABLES, eval_subset, kshot


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    paths = RunPaths.of(tmp_path_factory.mktemp("run"))
    card = prepare(dict(EMBEDDED_BEAUTY), paths, progress=False)
    return paths, card


def test_outputs_exist(run):
    paths, card = run
    for p in (
        paths.interactions,
        paths.items,
        paths.users,
        paths.examples,
        paths.data_card_json,
        paths.data_card_md,
        *figure_paths(paths).values(),
    ):
        assert p.is_file() and p.stat().st_size > 0, p
    assert figure_paths(paths)["figure2"].read_bytes()[:4] == b"\x89PNG"
    assert read_card(paths) == json.loads(json.dumps(card, default=str))


def test_tables_round_trip_with_schema_columns(run):
    paths, _ = run
    t = load_tables(paths)
    for name, cols in TABLES.items():
        assert set(cols) <= set(getattr(t, name).columns), name
    assert t.items["sampled_reviews"].map(len).max() <= 10
    assert (
        isinstance(t.items["sampled_reviews"].iloc[0][0]["text"], str)
        or t.items["sampled_reviews"].map(len).iloc[0] == 0
    )


def test_card_figures_match_tables_and_loader(run):
    paths, card = run
    t = load_tables(paths)
    raw = load_dataset("embedded_beauty").interactions
    assert card["raw"] == {
        "interactions": len(raw),
        "users": raw["user_id"].nunique(),
        "items": raw["item_id"].nunique(),
    }
    assert card["raw"] == {"interactions": 5269, "users": 991, "items": 85}
    collapsed, _ = collapse_copies(raw)  # COLLAPSE_COPIES (default) runs before DEDUP
    deduped, stats = P.deduplicate(collapsed, "keep_last")
    assert card["duplicates"] == stats
    counts = deduped.groupby("user_id").size()
    assert card["kcore"]["users"] == int((counts >= 5).sum()) == t.interactions["user_id"].nunique()
    f = card["final"]
    assert (f["users"], f["items"], f["interactions"]) == (
        t.interactions["user_id"].nunique(),
        t.interactions["item_id"].nunique(),
        len(t.interactions),
    )
    assert f["sparsity"] == pytest.approx(1 - f["interactions"] / (f["users"] * f["items"]), abs=1e-6)
    for split in ("train", "valid", "test"):
        part = t.examples[t.examples["split"] == split]
        assert card["splits"][split]["examples"] == len(part)
        assert card["splits"][split]["like_rate"] == pytest.approx(part["label"].mean(), abs=1e-4)
    assert card["figure2_users_with_at_least_k"][5] == card["kcore"]["users"]
    assert sum(card["rating_distribution"].values()) == len(t.interactions)
    # 20 users keep 5+ interactions once the copies are collapsed: no K=64 set
    assert not card["kshot"]["64"]["available"] and card["splits"]["train"]["examples"] == 20
    md = paths.data_card_md.read_text()
    assert "Duplicate user-item rows: 217 extra rows" in md and "Same-timestamp ties" in md


def test_kshot_sets_nested_and_stratified(run):
    paths, card = run
    ex = load_tables(paths).examples
    k8, k16 = kshot(ex, 8), kshot(ex, 16)  # the collapsed embedded data has 20 training examples
    assert set(k8["example_id"]) < set(k16["example_id"])
    train = ex[ex["split"] == "train"]
    assert abs(k8["label"].sum() - 8 * train["label"].mean()) <= 1
    assert len(eval_subset(ex, "test", 600)) == card["splits"]["test"]["examples"]


def test_deterministic_and_max_users(tmp_path, run):
    paths, _ = run
    again = RunPaths.of(tmp_path / "again")
    prepare(dict(EMBEDDED_BEAUTY), again, progress=False)
    a, b = load_tables(paths), load_tables(again)
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    small = RunPaths.of(tmp_path / "small")
    card = prepare(
        EMBEDDED_BEAUTY | {"MAX_USERS": 12, "KSHOT_SIZES": [4, 8], "N_VALID": 8, "N_TEST": 8}, small, progress=False
    )
    t = load_tables(small)
    assert card["final"]["users"] == 12 == t.users.shape[0] == t.interactions["user_id"].nunique()
    assert card["max_users"] == {"requested": 12, "kept": 12, "of": card["kcore"]["users"]}
    assert set(t.interactions["user_id"]) <= set(a.interactions["user_id"])
    # the review sample of an item does not depend on the slice
    full = a.items.set_index("item_id")["sampled_reviews"]
    for item, reviews in t.items.set_index("item_id")["sampled_reviews"].items():
        assert [r["text"] for r in reviews] == [r["text"] for r in full[item]]


def test_release_preset_builds_from_the_authors_split(tmp_path):
    paths = RunPaths.of(tmp_path)
    card = prepare(EMBEDDED_BEAUTY | {"DATASET": "release_beauty"}, paths, progress=False)
    ex = load_tables(paths).examples.set_index("example_id")
    assert card["final"]["users"] == 624 and card["final"]["items"] == 1216
    # RELEASE_WINDOWS=clean: the authors' window [2, 3, 4, 5, 5] repeats an exact duplicate row
    assert list(ex.loc["test:0", "history_item_ids"]) == ["2", "3", "4", "5"]
    assert ex.loc["test:0", "target_item_id"] == "6"
    assert list(ex.loc["train:1", "history_item_ids"]) == ["7", "8", "9"]
    assert "train:0" not in ex.index  # its target row is valid:0's target row (an exact duplicate)
    w = card["release_windows"]
    assert w["windows"] == 1872 and w["dropped_target_not_in_ratings"]["test"] == 2
    assert card["splits"]["test"]["examples"] == 622
    assert card["release_cleaning"]["exact_duplicate_rows_dropped"] == 594
