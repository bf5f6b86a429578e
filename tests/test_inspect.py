"""rrlib.report (notebook 08) and the faithfulness checks on small synthetic tables that follow the shared
schemas."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from rrlib.evaluate import faithfulness as fa
from rrlib.prompts.answers import parse_prediction
from rrlib.prompts.postprocess import repetition
from rrlib.report import cases as rc
from rrlib.report import highlight as hl
from rrlib.report import html as rh


def is_repetitive(text: str) -> bool:
    return bool(repetition(text))


def _tables():
    items = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3", "i4", "i5"],
            "title": ["Rose Shampoo", "Lavender Soap", "Mint Cream", "Argan Oil", "Coconut Lotion"],
            "title_source": ["metadata"] * 5,
            "attributes": ["brand: Acme", "", "", "", "brand: Coco"],
            "metadata_description": [""] * 5,
            "n_ratings": [3] * 5,
            "like_rate": [0.5] * 5,
            "sampled_reviews": [[]] * 5,
        }
    )
    descriptions = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3", "i4", "i5"],
            "description": [
                "gentle floral shampoo for dry hair",
                "lavender scented soap, moisturizing",
                "strong mint cream with harsh fragrance",
                "argan oil for dry hair and shine",
                "coconut lotion, moisturizing and gentle",
            ],
            "source": ["generated"] * 5,
            "status": ["ok"] * 5,
            "n_words": [6] * 5,
        }
    )
    examples = pd.DataFrame(
        {
            "example_id": ["test:u1", "test:u2", "test:u3", "train:u1"],
            "split": ["test", "test", "test", "train"],
            "user_id": ["u1", "u2", "u3", "u1"],
            "target_item_id": ["i4", "i5", "i3", "i1"],
            "target_rating": [5.0, 2.0, 4.0, 5.0],
            "target_timestamp": [10, 10, 10, 5],
            "label": [1, 0, 1, 1],
            "history_item_ids": [["i1", "i3"], ["i2"], ["i1", "i2"], ["i3"]],
            "history_ratings": [[5.0, 1.0], [5.0], [4.0, 2.0], [1.0]],
            "history_liked": [[True, False], [True], [True, False], [False]],
            "sample_rank": [1, 0, 2, 0],
        }
    )
    profiles = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "profile": ["Loves gentle hair care for dry hair.", "Likes soaps.", ""],
            "source": ["generated", "generated", "no_history"],
            "status": ["ok", "ok", "no_history"],
            "n_words": [7, 2, 0],
        }
    )
    reasoning = pd.DataFrame(
        {
            "example_id": ["test:u1"],
            "label": [1],
            "reasoning": ["The user enjoys products for dry hair, so will like the oil."],
            "status": ["ok"],
            "n_words": [11],
        }
    )

    def rows(method, k, p, texts, reasons, ok=None):
        ex = examples[examples["split"] == "test"]
        return pd.DataFrame(
            {
                "method": method,
                "k": k,
                "example_id": ex["example_id"].to_numpy(),
                "split": "test",
                "user_id": ex["user_id"].to_numpy(),
                "target_item_id": ex["target_item_id"].to_numpy(),
                "label": ex["label"].to_numpy(),
                "p_yes": p,
                "predicted_label": [int(x >= 0.5) for x in p],
                "generated_text": texts,
                "reasoning": reasons,
                "format_ok": ok or [True] * len(p),
            }
        )

    predictions = pd.concat(
        [
            rows(
                "reasoningrec",
                64,
                [0.9, 0.95, 0.2],
                [
                    "Prediction: Yes\nThe user will like the argan oil for dry hair.",
                    "Prediction: Yes\nThe user will not like this coconut lotion.",
                    'Prediction: No\nThe user would enjoy "Velvet Dream Serum" from Glow Labs.',
                ],
                [
                    "The user will like the argan oil for dry hair.",
                    "The user will not like this coconut lotion.",
                    'The user would enjoy "Velvet Dream Serum" from Glow Labs.',
                ],
            ),
            rows("reasoningrec", 8, [0.5, 0.5, 0.5], ["Prediction: Yes\nx"] * 3, ["x"] * 3),
            rows(
                "zeroshot_reasoningrec",
                0,
                [0.6, 0.4, 0.7],
                ["I think", "Prediction: No\n" + "the same words again and again " * 4, "Prediction: Yes\n"],
                ["", "the same words again and again " * 4, ""],
                [False, True, True],
            ),
            rows("user_like_rate", 0, [0.7, 0.3, 0.6], [""] * 3, [""] * 3),
        ],
        ignore_index=True,
    )
    return rc.InspectionInputs(
        examples=examples,
        items=items,
        predictions=predictions,
        descriptions=descriptions,
        profiles=profiles,
        reasoning=reasoning,
    )


# ---------------------------------------------------------------------------------------
# filters
# ---------------------------------------------------------------------------------------
def test_method_block_takes_largest_k_and_marks_correctness():
    block = rc.method_block(_tables().predictions, "reasoningrec")
    assert set(block["k"]) == {64}
    assert block.set_index("example_id")["correct"].to_dict() == {"test:u1": True, "test:u2": False, "test:u3": False}
    conf = block.set_index("example_id")["confidence"]
    assert conf["test:u2"] == pytest.approx(0.95) and conf["test:u3"] == pytest.approx(0.8)


def test_method_block_unknown_method_names_available():
    with pytest.raises(rc.InspectError, match="available: reasoningrec, user_like_rate, zeroshot"):
        rc.method_block(_tables().predictions, "tallrec")


@pytest.mark.parametrize(
    "how,expected",
    [
        ("all", ["test:u2", "test:u1", "test:u3"]),  # seeded sample_rank order
        ("correct", ["test:u1"]),
        ("wrong", ["test:u2", "test:u3"]),
        ("confident_wrong", ["test:u2", "test:u3"]),  # 0.95 before 0.8
        ("liked", ["test:u1", "test:u3"]),
        ("disliked", ["test:u2"]),
    ],
)
def test_select_examples_filters(how, expected):
    inputs = _tables()
    block = rc.method_block(inputs.predictions, "reasoningrec")
    order = pd.Series(dict(zip(inputs.examples["example_id"], inputs.examples["sample_rank"])))
    assert rc.select_examples(block, how, order=order)["example_id"].tolist() == expected


def test_select_examples_by_user_and_n():
    block = rc.method_block(_tables().predictions, "reasoningrec")
    assert rc.select_examples(block, "all", user="u3")["example_id"].tolist() == ["test:u3"]
    assert len(rc.select_examples(block, "all", n=2)) == 2
    with pytest.raises(rc.InspectError, match="SHOWCASE_USER='nobody'.*u1"):
        rc.select_examples(block, "all", user="nobody")
    with pytest.raises(rc.InspectError, match="no example matches SHOWCASE_FILTER='correct' for user 'u2'"):
        rc.select_examples(block, "correct", user="u2")
    with pytest.raises(rc.InspectError, match="not one of"):
        rc.select_examples(block, "sideways")


# ---------------------------------------------------------------------------------------
# highlighting
# ---------------------------------------------------------------------------------------
def test_feature_terms_are_exclusive_to_each_side():
    terms = hl.feature_terms(["gentle floral shampoo for dry hair"], ["strong mint cream, dry skin"])
    assert {"gentle", "floral", "shampoo", "hair"} <= terms.liked
    assert {"strong", "mint", "cream", "skin"} <= terms.disliked
    assert "dry" not in terms.liked and "dry" not in terms.disliked  # on both sides
    assert "for" not in terms.liked  # stop word


def test_highlight_html_marks_and_escapes():
    terms = hl.feature_terms(["Shampoos for hair"], ["mint <cream>"])
    out = hl.highlight_html("The user's <b>shampoo</b> & Mint cream", terms)
    assert '<mark class="liked">shampoo</mark>' in out  # plural/singular match
    assert '<mark class="disliked">Mint</mark>' in out and '<mark class="disliked">cream</mark>' in out
    assert "&lt;b&gt;" in out and "&amp;" in out and "<b>" not in out
    assert hl.highlight_html("a <x>", None) == "a &lt;x&gt;"


# ---------------------------------------------------------------------------------------
# failure types
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,stance",
    [
        ("The user has liked floral scents. They will likely enjoy this shampoo.", 1),
        ("Given the harsh fragrance, the user will not like this cream.", 0),
        ("The user disliked mint before. However, this is a good fit for them.", 1),
        ("It is not a good fit for the user.", 0),
        ("The user is unlikely to enjoy it.", 0),
        ("The user won't like it.", 0),
        ("It seems the user would enjoy it, but on balance they would not purchase it.", 0),
        ("The user bought shampoo before.", None),
    ],
)
def test_reasoning_stance(text, stance):
    assert fa.reasoning_stance(text) == stance


def test_parse_prediction():
    assert parse_prediction("Prediction: Yes\nbecause") == 1
    assert parse_prediction("**Prediction:** No.") == 0
    assert parse_prediction("I think so") is None


def test_unknown_mentions():
    known = "Rose Shampoo\ngentle floral shampoo\nArgan Oil\nLoves gentle hair care."
    found = fa.unknown_mentions(
        'The user liked Rose Shampoo and "Argan Oil" but would love '
        '"Velvet Dream Serum" by Glow Labs. Based on the User Profile, yes.',
        known,
    )
    assert found == ["Velvet Dream Serum", "Glow Labs"]
    assert fa.unknown_mentions("The User Profile shows Prediction Yes.", known) == []


def test_copies_input_and_repetition():
    known = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    assert fa.copies_input(known + " seventeen", known)
    assert not fa.copies_input(
        "a completely different sentence about other things that the user may like in the future when shopping", known
    )
    assert is_repetitive("buy it now please ok " * 4)
    assert not is_repetitive("buy it now please ok then")


def test_failure_types_per_row_and_summary():
    inputs = _tables()
    annotated = rc.annotate_failures(inputs)
    assert set(annotated["method"]) == {"reasoningrec", "zeroshot_reasoningrec"}  # baselines have no text
    by = {(r["method"], r["k"], r["example_id"]): r["failures"] for r in annotated.to_dict("records")}
    assert by[("reasoningrec", 64, "test:u1")] == []
    assert by[("reasoningrec", 64, "test:u2")] == ["contradiction"]
    assert set(by[("reasoningrec", 64, "test:u3")]) == {"contradiction", "unknown_item"}
    assert by[("zeroshot_reasoningrec", 0, "test:u1")] == ["format_error", "empty_reasoning"]
    assert by[("zeroshot_reasoningrec", 0, "test:u2")] == ["repetitive"]
    summary = rc.failure_summary(annotated)
    assert summary.iloc[0]["failure"] == "contradiction" and summary.iloc[0]["count"] == 2
    assert list(summary["count"]) == sorted(summary["count"], reverse=True)
    row = summary.set_index("failure").loc["unknown_item"]
    assert row["examples"] == "test:u3" and "reasoningrec@K64: 1" in row["by_method"]
    rates = rc.failure_rates(annotated)
    assert rates.loc["zeroshot_reasoningrec@K0", "format_error"] == pytest.approx(1 / 3)
    # no method wrote any text (e.g. a student that emits only whitespace): an empty analysis
    inputs.predictions["generated_text"] = ""
    none = rc.annotate_failures(inputs)
    assert none.empty and (rc.failure_summary(none)["count"] == 0).all() and rc.failure_rates(none).empty


# ---------------------------------------------------------------------------------------
# cases and report
# ---------------------------------------------------------------------------------------
def test_build_cases_side_by_side():
    inputs = _tables()
    cases = rc.build_cases(inputs, ["test:u1", "test:u3"], "reasoningrec")
    c = cases[0]
    assert (c.target_title, c.label, c.lead.k, c.lead.correct) == ("Argan Oil", 1, 64, True)
    assert c.reasoning_truth.startswith("The user enjoys")
    assert [h.liked for h in c.history] == [True, False] and c.history[0].title == "Rose Shampoo"
    assert c.profile == "Loves gentle hair care for dry hair."
    assert [o.method for o in c.others] == ["zeroshot_reasoningrec", "user_like_rate"]
    assert "hair" in c.terms.liked and "mint" in c.terms.disliked
    assert cases[1].reasoning_truth is None and "unknown_item" in cases[1].lead.failures
    frame = rc.cases_frame(cases)
    assert frame["prediction"].tolist() == ["Yes", "No"]


def test_report_is_self_contained_and_escaped(tmp_path):
    inputs = _tables()
    inputs.items.loc[0, "title"] = "Rose <script>alert(1)</script> Shampoo"
    cases, summary, rates, page = rh.inspect_run(
        inputs, method="reasoningrec", how="all", n=3, meta={"run": "synthetic"}
    )
    assert [c.example_id for c in cases] == ["test:u2", "test:u1", "test:u3"]
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)  # no external assets
    assert "<link" not in page and "@import" not in page
    for eid in ("test:u1", "test:u2", "test:u3"):
        assert f'data-example-id="{eid}"' in page
    path = rh.write_report(tmp_path / "inspect" / "report.html", page)
    assert path.read_text(encoding="utf-8") == page


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


@pytest.mark.browser
def test_report_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "headless Chromium is not installed (apt-get install chromium chromium-driver; .ci/run installs it)"
        )
    _, _, _, page = rh.inspect_run(_tables(), method="reasoningrec", n=3, meta={"run": "render-test"})
    report = rh.write_report(tmp_path / "report.html", page)
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--dump-dom",
        report.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    for eid in ("test:u1", "test:u2", "test:u3"):
        assert f'data-example-id="{html.escape(eid)}"' in dom
    assert 'class="case"' in dom and "Most frequent failure types" in dom
    assert '<mark class="liked">' in dom


# ---------------------------------------------------------------------------------------
# notebook 08 on a synthetic run folder
# ---------------------------------------------------------------------------------------
def _complete(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Add any column the current data schema requires that the synthetic table lacks."""
    from rrlib.data import schema

    filler = {"str": "", "int": 0, "float": 0.0, "bool": False, "list": []}
    for col, kind in schema.TABLES[table].items():
        if col not in df.columns:
            key = next((k for k in ("list", "bool", "float", "int", "str") if kind.startswith(k)), "str")
            df[col] = [filler[key]] * len(df)
    return df


def _write_synthetic_run(run_dir: Path) -> None:
    from rrlib.config.paths import RunPaths

    inputs = _tables()
    paths = RunPaths.of(run_dir)
    _complete(inputs.items, "items").to_parquet(paths.items)
    _complete(inputs.examples, "examples").to_parquet(paths.examples)
    _complete(
        pd.DataFrame(
            {
                "user_id": ["u1", "u1"],
                "item_id": ["i1", "i3"],
                "rating": [5.0, 1.0],
                "timestamp": [1, 2],
                "liked": [True, False],
                "position": [0, 1],
                "review_text": ["", ""],
                "summary": ["", ""],
            }
        ),
        "interactions",
    ).to_parquet(paths.interactions)
    _complete(
        pd.DataFrame(
            {
                "user_id": ["u1", "u2", "u3"],
                "n_interactions": [5, 5, 5],
                "profile_item_ids": [["i2"], [], []],
                "profile_liked": [[True], [], []],
            }
        ),
        "users",
    ).to_parquet(paths.users)
    inputs.descriptions.to_parquet(paths.item_descriptions)
    inputs.profiles.to_parquet(paths.user_profiles)
    inputs.reasoning.to_parquet(paths.reasoning)
    inputs.predictions.to_parquet(paths.predictions)


@pytest.mark.slow
def test_notebook_07_on_a_synthetic_run(tmp_path):
    import json

    import papermill as pm

    from rrlib.config.paths import PROJECT_ROOT
    from rrlib.workbook.runner import choose_kernel

    run_dir = tmp_path / "run"
    _write_synthetic_run(run_dir)
    out = tmp_path / "07.ipynb"
    pm.execute_notebook(
        str(PROJECT_ROOT / "notebooks" / "08_inspect_outputs.ipynb"),
        str(out),
        parameters={"RUN_DIR": str(run_dir), "SHOWCASE_FILTER": "wrong", "N_SHOWCASE": 5},
        kernel_name=choose_kernel(),
        cwd=str(PROJECT_ROOT),
        progress_bar=False,
    )
    page = (run_dir / "inspect" / "report.html").read_text(encoding="utf-8")
    assert 'data-example-id="test:u2"' in page and 'data-example-id="test:u3"' in page
    assert 'data-example-id="test:u1"' not in page  # correct, filtered out
    assert (run_dir / "inspect" / "failure_types.png").stat().st_size > 1000
    results = json.loads(next((run_dir / "results").glob("08_inspect_outputs-*.json")).read_text())
    assert results["results"]["shown_example_ids"] == ["test:u2", "test:u3"]
    assert results["results"]["failure_counts"]["contradiction"] == 2
    assert results["params"]["SHOWCASE_FILTER"] == "wrong"
