"""Enrichment (notebooks 02-03): scope, import of existing descriptions/profiles with coverage,
generation of only what is missing (a fake backend counts calls), tables on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import rrlib
from rrlib.config.params import Config
from rrlib.data import schema
from rrlib.enrich import (
    DESCRIPTION_COLUMNS,
    PROFILE_COLUMNS,
    enrichment_scope,
    generate_descriptions,
    generate_profiles,
    import_coverage,
    load_import,
    read_descriptions,
    read_profiles,
    write_table,
)
from rrlib.llm.base import GenerationResult
from rrlib.prompts.items import NO_DESCRIPTION, ItemCatalog

RELEASE = Path(rrlib.__file__).resolve().parent / "resources" / "reasoningrec_release"  # shipped copy


# ---------------------------------------------------------------------------------------
# Synthetic tables following rrlib/data/schema.py, and a fake backend
# ---------------------------------------------------------------------------------------
def synthetic_tables(
    n_users: int = 8, n_items: int = 30, seq_len: int = 12, history_len: int = 4, profile_items: int = 3
):
    """Each user rates a window of items; the last three are the test/valid/train targets."""
    items = pd.DataFrame(
        {
            "item_id": [f"i{n}" for n in range(n_items)],
            "title": [f"Product {n}" for n in range(n_items)],
            "title_source": "metadata",
            "attributes": [f"brand: B{n % 3}; price: ${n}.00" for n in range(n_items)],
            "metadata_description": ["" if n % 4 else f"Seller text {n}." for n in range(n_items)],
            "n_ratings": 5,
            "like_rate": 0.5,
            "sampled_reviews": [
                [{"rating": 5.0, "text": f"great item {n}"}, {"rating": 1.0, "text": "broke fast"}]
                for n in range(n_items)
            ],
        }
    )
    inter, users, examples = [], [], []
    for u in range(n_users):
        seq = [f"i{(u * 3 + j) % n_items}" for j in range(seq_len)]
        ratings = [5.0 if (u + j) % 3 else 2.0 for j in range(seq_len)]
        for j, (i, r) in enumerate(zip(seq, ratings)):
            inter.append(
                {
                    "user_id": f"u{u}",
                    "item_id": i,
                    "rating": r,
                    "timestamp": 1000 + j,
                    "liked": r > 3,
                    "position": j,
                    "review_text": "",
                    "summary": "",
                }
            )
        n_prof = 0 if u == n_users - 1 else profile_items  # the last user has no profile items
        users.append(
            {
                "user_id": f"u{u}",
                "n_interactions": seq_len,
                "profile_item_ids": seq[:n_prof],
                "profile_liked": [r > 3 for r in ratings[:n_prof]],
            }
        )
        for split, t in (("train", seq_len - 3), ("valid", seq_len - 2), ("test", seq_len - 1)):
            hist = list(range(t - history_len, t))
            examples.append(
                {
                    "example_id": f"{split}:u{u}",
                    "split": split,
                    "user_id": f"u{u}",
                    "target_item_id": seq[t],
                    "target_rating": ratings[t],
                    "target_timestamp": 1000 + t,
                    "label": int(ratings[t] > 3),
                    "history_item_ids": [seq[h] for h in hist],
                    "history_ratings": [ratings[h] for h in hist],
                    "history_liked": [ratings[h] > 3 for h in hist],
                    "sample_rank": u,
                }
            )
    tables = {
        "interactions": pd.DataFrame(inter),
        "items": items,
        "users": pd.DataFrame(users),
        "examples": pd.DataFrame(examples),
    }
    for name, df in tables.items():  # columns this module does not read get neutral values
        for col, kind in schema.TABLES[name].items():
            if col not in df.columns:
                df[col] = (
                    [[] for _ in range(len(df))] if kind.startswith("list") else (0 if kind.startswith("int") else "")
                )
        schema.check_columns(df, name, "synthetic")
    return tables


class CountingBackend:
    """A ChatBackend that answers by template and counts every request it is given."""

    def __init__(self, answer=None):
        self.identity = {"name": "fake", "revision": "0"}
        self.calls = []
        self.answer = answer or self.default_answer

    @staticmethod
    def default_answer(req):
        if req.template == "item_description":
            return f"Sure! A handy product ({req.tag}) with a pleasant scent. Strong: lasts long. Weak: pricey."
        if req.template == "user_profile":
            return (
                "The customer likes long-lasting, pleasant products from trusted brands and dislikes items "
                "that break quickly or cost too much for what they offer."
            )
        label = "liked" if "customer liked the new" in req.messages[1]["content"] else "disliked"
        return (
            f"Profile analysis: The customer values durable products with good scents.\n"
            f"Target analysis: The new product matches those needs, so the customer {label} it."
        )

    def generate(self, requests):
        self.calls.extend(requests)
        return [
            GenerationResult(text=self.answer(r), prompt_tokens=10, completion_tokens=20, finish_reason="stop")
            for r in requests
        ]

    def count_tokens(self, messages):
        return sum(len(m["content"].split()) for m in messages)

    def close(self):
        pass


class DirectGenerator:
    """The CachedGenerator interface without a cache (unit tests of this module only)."""

    def __init__(self, backend):
        self.backend = backend

    def generate(self, requests, desc=""):
        return self.backend.generate(list(requests))


def small_params(**kw):
    return Config.full(
        {"KSHOT_SIZES": [2, 4], "TRAIN_KSHOTS": [], "N_VALID": 2, "N_TEST": 3, "MAX_OUTPUT_RETRIES": 1, **kw}
    )


# ---------------------------------------------------------------------------------------
# Scope
# ---------------------------------------------------------------------------------------
def test_needed_scope_covers_examples_histories_and_profiles():
    t = synthetic_tables()
    scope = enrichment_scope(t["items"], t["users"], t["examples"], small_params())
    # train K=4 -> u0..u3, valid 2 -> u0,u1, test 3 -> u0..u2
    assert scope.user_ids == ["u0", "u1", "u2", "u3"]
    assert scope.summary()["examples_by_split"] == {"train": 4, "test": 3, "valid": 2}
    ex = t["examples"][t["examples"]["user_id"].isin(scope.user_ids)]
    wanted = set(ex["target_item_id"]) | {i for h in ex["history_item_ids"] for i in h}
    wanted |= {i for p in t["users"].set_index("user_id").loc[scope.user_ids, "profile_item_ids"] for i in p}
    assert set(scope.item_ids) <= wanted  # nothing beyond what the scoped examples touch
    scoped_ex = pd.concat(
        [
            schema.kshot(t["examples"], 4),
            schema.eval_subset(t["examples"], "valid", 2),
            schema.eval_subset(t["examples"], "test", 3),
        ]
    )
    must = set(scoped_ex["target_item_id"]) | {i for h in scoped_ex["history_item_ids"] for i in h}
    assert must <= set(scope.item_ids)
    assert len(scope.item_ids) < len(t["items"])


def test_all_scope_and_errors():
    t = synthetic_tables()
    scope = enrichment_scope(t["items"], t["users"], t["examples"], small_params(ENRICH_SCOPE="all"))
    assert len(scope.item_ids) == 30 and len(scope.user_ids) == 8
    with pytest.raises(ValueError, match="K=64"):
        enrichment_scope(t["items"], t["users"], t["examples"], small_params(KSHOT_SIZES=[64]))
    with pytest.raises(ValueError, match="rerun 01_data_prep"):
        enrichment_scope(t["items"].iloc[5:], t["users"], t["examples"], small_params())


# ---------------------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------------------
def test_import_release_descriptions_and_profiles():
    items = load_import(RELEASE / "beauty" / "processed_item_information.json", "item")
    raw = json.loads((RELEASE / "beauty" / "processed_item_information.json").read_text())
    blank = sum(1 for v in raw.values() if not v["description"].strip())
    assert len(items) == len(raw) - blank and blank > 0  # blank release descriptions count as missing
    assert items["17"].startswith("The product is a razor clean and renew refill")
    profiles = load_import(RELEASE / "beauty" / "user_profile_summary.json", "user")
    assert len(profiles) == 160 and profiles["0"].startswith("The user seems to prefer")


def test_import_ml1m_release_csv():
    movies = load_import(RELEASE / "ml1m" / "movie_summary_25_words.csv", "item")
    assert len(movies) == 3883 and movies["1"].startswith("Toy Story is a groundbreaking animated film")


def test_import_formats_and_coverage(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"a": "  Text  A ", "b": "", "c": "Text C"}))
    (tmp_path / "r.json").write_text(json.dumps([{"user_id": 1, "profile": "P1"}, {"user_id": 2, "profile": "P2"}]))
    (tmp_path / "d.csv").write_text('item_id,description\na,Text A\nc,"Text, C"\n')
    assert load_import(tmp_path / "d.json", "item") == {"a": "Text A", "c": "Text C"}
    assert load_import(tmp_path / "r.json", "user") == {"1": "P1", "2": "P2"}
    assert load_import(tmp_path / "d.csv", "item") == {"a": "Text A", "c": "Text, C"}
    cov = import_coverage(["a", "b", "x"], {"a": "A", "c": "C"})
    assert cov == {"needed": 3, "covered": 1, "missing": 2, "coverage": 0.3333, "unused_in_file": 1}


@pytest.mark.parametrize(
    "name,content,kind,match",
    [
        ("missing.json", None, "item", "DESCRIPTIONS_IMPORT="),
        ("bad.json", '{"a": "x",\n "b": }', "item", r"line 2, column 7"),
        ("num.json", '{"a": 5}', "user", "entry 'a': expected a text"),
        ("nested.json", '{"a": {"title": "t"}}', "item", "none of"),
        ("list.json", '[{"text": "x"}]', "user", "record 0 needs an id field"),
        ("cols.csv", "id,body\n1,x\n", "item", r"needs an id column .* it has \['id', 'body'\]"),
        ("dup.csv", "user_id,profile\n1,a\n2,b\n1,c\n", "user", "line 4: user_id '1' appears twice"),
        ("x.txt", "a", "item", "unsupported file type"),
    ],
)
def test_import_errors_name_the_problem(tmp_path, name, content, kind, match):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        load_import(path, kind)


# ---------------------------------------------------------------------------------------
# Descriptions
# ---------------------------------------------------------------------------------------
def test_descriptions_generate_only_what_is_missing():
    t = synthetic_tables()
    ids = ["i0", "i1", "i2", "i3"]
    backend = CountingBackend()
    out = generate_descriptions(
        t["items"],
        ids,
        domain="beauty",
        cfg=small_params(TEACHER_TOKENS_PER_WORD=0),
        generator=DirectGenerator(backend),
        imported={"i1": "Imported text one here."},
        plots={},
    )
    assert [r.tag for r in backend.calls] == ["i0", "i2", "i3"]
    tab = out.table
    assert list(tab.columns) == DESCRIPTION_COLUMNS + ["raw"]
    assert tab["item_id"].tolist() == ids
    assert tab.set_index("item_id").loc["i1", ["description", "source", "status"]].tolist() == [
        "Imported text one here.",
        "imported",
        "ok",
    ]
    gen = tab[tab["source"] == "generated"]
    assert (gen["status"] == "ok").all() and gen["description"].str.startswith("A handy product").all()
    assert (tab["n_words"] == tab["description"].str.split().str.len()).all()
    assert out.summary["by_source"] == {"generated": 3, "imported": 1}
    assert out.summary["import_coverage"]["covered"] == 1
    # the prompt carries title, attributes, seller text and sampled reviews with ratings
    prompt = out.requests["i0"].messages[1]["content"]
    for part in ("Product 0", "brand: B0", "Seller text 0.", "[5] great item 0", "[1] broke fast", "25 words"):
        assert part in prompt
    assert out.requests["i0"].settings.max_new_tokens == 64  # the paper's budget: no per-word cap


def test_descriptions_put_movie_plots_in_the_prompt():
    t = synthetic_tables()
    out = generate_descriptions(
        t["items"],
        ["i0", "i1"],
        domain="movies",
        cfg=small_params(),
        generator=DirectGenerator(CountingBackend()),
        plots={"i0": "A toy comes alive."},
    )
    assert "Plot: A toy comes alive." in out.requests["i0"].messages[1]["content"]
    assert "Plot:" not in out.requests["i1"].messages[1]["content"]
    assert out.summary["n_with_plot"] == 1


def test_bad_outputs_are_retried_then_flagged():
    t = synthetic_tables()
    backend = CountingBackend(
        answer=lambda r: (
            ""
            if r.tag == "i1"
            else ("!!!" if r.settings.seed == 42 else "A decent product with a nice smell, a bit pricey.")
        )
    )
    out = generate_descriptions(
        t["items"],
        ["i0", "i1"],
        domain="beauty",
        cfg=small_params(MAX_OUTPUT_RETRIES=2),
        generator=DirectGenerator(backend),
    )
    by = out.table.set_index("item_id")
    assert by.loc["i0", "status"] == "ok" and by.loc["i0", "attempts"] == 2
    assert by.loc["i1", "status"] == "empty" and by.loc["i1", "attempts"] == 3
    assert out.summary["n_unusable_generated"] == 1 and out.summary["n_retried"] == 2
    # both once; retry 1 asks both again (i0 is then fixed); retry 2 asks only i1
    assert [(r.tag, r.settings.seed) for r in backend.calls] == [
        ("i0", 42),
        ("i1", 42),
        ("i0", 43),
        ("i1", 43),
        ("i1", 44),
    ]


def test_unknown_ids_fail_clearly():
    t = synthetic_tables()
    with pytest.raises(ValueError, match="not in the items table"):
        generate_descriptions(
            t["items"], ["nope"], domain="beauty", cfg=small_params(), generator=DirectGenerator(CountingBackend())
        )


# ---------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------
def _descriptions(t, status_of=None):
    status_of = status_of or {}
    ids = t["items"]["item_id"].tolist()
    return pd.DataFrame(
        {
            "item_id": ids,
            "description": [f"Description of {i}." for i in ids],
            "source": "generated",
            "status": [status_of.get(i, "ok") for i in ids],
            "n_words": 3,
        }
    )


def test_profiles_use_descriptions_labels_and_handle_no_history():
    t = synthetic_tables()
    desc = _descriptions(t, {"i3": "repetitive"})
    texts = ItemCatalog.from_tables(t["items"], desc)
    backend = CountingBackend()
    out = generate_profiles(
        t["users"],
        ["u1", "u2", "u7"],
        texts,
        domain="beauty",
        cfg=small_params(TEACHER_TOKENS_PER_WORD=0, PROFILE_WORDS=100),
        generator=DirectGenerator(backend),
        imported={"u2": "Imported profile text here."},
    )
    tab = out.table.set_index("user_id")
    assert list(out.table.columns) == PROFILE_COLUMNS + ["raw"]
    assert [r.tag for r in backend.calls] == ["u1"]
    assert tab.loc["u7", ["profile", "source", "status", "n_profile_items"]].tolist() == [
        "",
        "no_history",
        "no_history",
        0,
    ]
    assert tab.loc["u2", "source"] == "imported" and tab.loc["u1", "status"] == "ok"
    prompt = out.requests["u1"].messages[1]["content"]
    # u1 rates i3, i4, i5 first: every item shows its attributes; i3's description is unusable
    assert "Product 3 [brand: B0; price: $3.00]" in prompt and NO_DESCRIPTION in prompt
    assert "Description of i4." in prompt and "Description of i3." not in prompt
    u1 = t["users"].set_index("user_id").loc["u1"]
    for item, liked in zip(u1["profile_item_ids"], u1["profile_liked"]):
        line = next(x for x in prompt.splitlines() if f"Product {item[1:]} [" in x)
        assert line.endswith(f"({'LIKED' if liked else 'DISLIKED'})")
    assert out.summary["n_no_history"] == 1 and texts.fallbacks == {"i3"}
    assert out.requests["u1"].settings.max_new_tokens == 256  # the paper's budget (100 words, no per-word cap)


def test_item_texts_fallback_marker():
    items = pd.DataFrame({"item_id": ["a"], "title": ["A"], "attributes": [""]})
    catalog = ItemCatalog.from_tables(items, None)
    assert catalog.description("a") == NO_DESCRIPTION and catalog.fallbacks == {"a"}
    assert catalog.card("a", with_description=False) == '"A"'


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------
def test_tables_round_trip_and_read_errors(tmp_path):
    t = synthetic_tables()
    out = generate_descriptions(
        t["items"], ["i0"], domain="fashion", cfg=small_params(), generator=DirectGenerator(CountingBackend())
    )
    path = write_table(out.table, tmp_path / "enrich" / "item_descriptions.parquet")
    back = read_descriptions(path)
    pd.testing.assert_frame_equal(back, out.table, check_dtype=False)
    assert not list(path.parent.glob("*.tmp"))
    with pytest.raises(FileNotFoundError, match="02_item_descriptions"):
        read_descriptions(tmp_path / "nope.parquet")
    pd.DataFrame({"user_id": ["u"]}).to_parquet(tmp_path / "p.parquet")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['profile'"):
        read_profiles(tmp_path / "p.parquet")
