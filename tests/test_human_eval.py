"""Blind pairwise human evaluation: export (blind, seeded, shuffled, key kept apart), synthetic
filling by raters whose preferences are known, scoring (win / tie / loss, sign test, kappas) and
the command-line script."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score

from rrlib import predictions as pr
from rrlib.errors import ReportError
from rrlib.report import human_eval as he

ROOT = Path(__file__).resolve().parents[1]
N = 12


def _inputs():
    ex = pd.DataFrame(
        {
            "example_id": [f"test:u{i}" for i in range(N)],
            "split": "test",
            "user_id": [f"u{i}" for i in range(N)],
            "target_item_id": [f"i{i % 4}" for i in range(N)],
            "label": [i % 2 for i in range(N)],
            "target_rating": [4.0] * N,
            "history_item_ids": [["i1", "i2"]] * N,
            "history_liked": [[True, False]] * N,
            "history_ratings": [[5.0, 2.0]] * N,
        }
    )
    items = pd.DataFrame(
        {
            "item_id": ["i0", "i1", "i2", "i3"],
            "title": ["Argan Oil", "Rose Shampoo", "Mint Cream", "Lavender Soap"],
            "attributes": ["brand: Acme", "", "", "price: $5"],
        }
    )
    preds = pd.concat(
        [
            pr.like_rows("reasoningrec", 64, ex, [0.8] * N, reasoning=[f"[P{i}] personal text {i}" for i in range(N)]),
            pr.like_rows(
                "zeroshot_reasoningrec",
                0,
                ex,
                [0.6] * N,
                reasoning=[f"[G{i}] generic text" if i != 3 else "" for i in range(N)],
            ),
            pr.like_rows("tallrec", 64, ex, [0.7] * N, reasoning=[f"[T{i}] short text" for i in range(N)]),
        ],
        ignore_index=True,
    )
    return ex, items, preds


def _comparisons(seed=0, n=8):
    ex, items, preds = _inputs()
    return he.build_comparisons(
        preds,
        [("reasoningrec", "zeroshot_reasoningrec"), ("reasoningrec", "tallrec")],
        he.context_texts(ex, items),
        he.target_texts(ex, items),
        n_examples=n,
        seed=seed,
    )


def test_comparisons_are_blind_seeded_and_shuffled(tmp_path):
    c = _comparisons()
    assert len(c.sheet) == 16 and c.sheet["question"].is_unique and list(c.key["question"]) == list(c.sheet["question"])
    assert "test:u3" not in set(c.key["example_id"])  # one method has no explanation there
    assert set(c.key.groupby("example_id").size()) == {2}  # one question per pair and example
    # both orders occur, and the explanation under A is the one the key says
    assert 0 < (c.key["method_a"] == "reasoningrec").sum() < 16
    for s, k in zip(c.sheet.to_dict("records"), c.key.to_dict("records")):
        tag = {"reasoningrec": "[P", "zeroshot_reasoningrec": "[G", "tallrec": "[T"}
        assert s["explanation_a"].startswith(tag[k["method_a"]]) and s["explanation_b"].startswith(tag[k["method_b"]])
        assert s["explanation_a"][2:].split("]")[0] == k["example_id"].split("u")[-1]
    assert c.sheet.equals(_comparisons().sheet) and not c.sheet.equals(_comparisons(seed=1).sheet)
    assert c.sheet["context"].iloc[0].startswith("Recent items (oldest first):\n- Rose Shampoo (liked, 5/5)")
    files = he.export_human_eval(c, tmp_path / "sheets")
    assert files["key_csv"].parent != files["sheet_csv"].parent
    names = ["reasoningrec", "zeroshot", "tallrec", "ReasoningRec", "TALLRec", "Zero-shot"]
    for f in ("sheet_csv", "sheet_html"):
        text = files[f].read_text()
        assert not any(n in text for n in names), f"{f} names a method"
    html = files["sheet_html"].read_text()
    assert html.count('type="radio"') == 16 * 3 * 3 and "@media print" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html) and "<link" not in html
    with pytest.raises(ReportError, match="beside the sheets"):
        he.export_human_eval(c, tmp_path / "s2", key_path=tmp_path / "s2" / "key.csv")


def test_build_comparisons_errors():
    ex, items, preds = _inputs()
    ctx, tgt = he.context_texts(ex, items), he.target_texts(ex, items)
    with pytest.raises(ReportError, match="no predictions"):
        he.build_comparisons(preds, [("reasoningrec", "exp3rt")], ctx, tgt, n_examples=3, seed=0)
    with pytest.raises(ReportError, match="with itself"):
        he.build_comparisons(preds, [("tallrec", "tallrec")], ctx, tgt, n_examples=3, seed=0)
    two = pd.concat([preds, pr.like_rows("tallrec", 128, ex, [0.5] * N, reasoning=["x"] * N)])
    with pytest.raises(ReportError, match="2 \\(K, seed\\) blocks"):
        he.build_comparisons(two, [("reasoningrec", "tallrec")], ctx, tgt, n_examples=3, seed=0)
    with pytest.raises(ReportError, match="no example has an explanation"):
        he.build_comparisons(preds, [("reasoningrec", "tallrec")], {}, tgt, n_examples=3, seed=0)


def _fill(c: he.Comparisons, prefer: dict[tuple[str, str], float], rng, tie=0.1, rater=None) -> pd.DataFrame:
    """A rater who prefers method 1 of a pair with the given probability (ties at rate ``tie``)."""
    sheet = c.sheet.copy()
    key = c.key.set_index("question")
    for i, q in enumerate(sheet["question"]):
        k = key.loc[q]
        for crit in c.criteria:
            x = rng.random()
            if x < tie:
                sheet.loc[i, crit] = "tie"
            else:
                m1_wins = rng.random() < prefer[(k["method_1"], k["method_2"])]
                winner = k["method_1"] if m1_wins else k["method_2"]
                sheet.loc[i, crit] = "A" if winner == k["method_a"] else "b"  # case does not matter
    if rater:
        sheet["rater"] = rater
    return sheet


def test_scoring_unblinds_and_counts():
    c = _comparisons(n=10)
    # a rater who always prefers reasoningrec over zeroshot and never over tallrec, no ties
    always = _fill(
        c,
        {("reasoningrec", "zeroshot_reasoningrec"): 1.0, ("reasoningrec", "tallrec"): 0.0},
        np.random.default_rng(0),
        tie=0.0,
        rater="alice",
    )
    scores = he.score_human_eval([always], c.key)
    r = scores.results.set_index(["method_2", "criterion", "aggregation"])
    z = r.loc[("zeroshot_reasoningrec", "convincing", "pooled")]
    assert (z["wins"], z["ties"], z["losses"], z["n"]) == (10, 0, 0, 10)
    assert z["p_value"] == pytest.approx(2 * 0.5**10)
    t = r.loc[("tallrec", "faithful", "majority")]
    assert (t["wins"], t["losses"]) == (0, 10) and t["p_value"] == pytest.approx(2 * 0.5**10)
    assert set(scores.judgements["rater"]) == {"alice"} and len(scores.judgements) == 20 * 3
    assert scores.results["label_1"].eq("ReasoningRec").all()


def test_several_raters_agreement_and_majority():
    c = _comparisons(n=12)
    prefs = {("reasoningrec", "zeroshot_reasoningrec"): 0.8, ("reasoningrec", "tallrec"): 0.5}
    sheets = [_fill(c, prefs, np.random.default_rng(s), rater=name) for s, name in enumerate(["r1", "r2", "r3"])]
    sheets[2].loc[0, "specific"] = ""  # an unanswered cell is left out
    scores = he.score_human_eval(sheets, c.key)
    j = scores.judgements
    assert len(j) == 3 * 22 * 3 - 1  # 11 usable examples x 2 pairs
    pooled = scores.results[(scores.results["aggregation"] == "pooled")]
    for row in pooled.to_dict("records"):
        g = j[(j["method_2"] == row["method_2"]) & (j["criterion"] == row["criterion"])]
        wins, losses = int((g["outcome"] == "win").sum()), int((g["outcome"] == "loss").sum())
        assert (row["wins"], row["losses"], row["ties"]) == (wins, losses, len(g) - wins - losses)
        assert row["p_value"] == pytest.approx(binomtest(wins, wins + losses, 0.5).pvalue)
    # majority: one outcome per question
    maj = scores.results[(scores.results["aggregation"] == "majority")]
    assert maj["n"].eq(11).all()
    # Cohen's kappa: mean over the three rater pairs, on the questions all answered
    ag = scores.agreement.set_index("criterion")
    conv = j[j["criterion"] == "convincing"].pivot(index="question", columns="rater", values="outcome")
    want = np.mean(
        [
            cohen_kappa_score(conv[a], conv[b], labels=list(he.OUTCOMES))
            for a, b in (("r1", "r2"), ("r1", "r3"), ("r2", "r3"))
        ]
    )
    assert ag.loc["convincing", "cohen_kappa"] == pytest.approx(want)
    assert ag.loc["convincing", "n_raters"] == 3 and ag.loc["specific", "n_questions"] == 21
    # identical raters agree perfectly
    same = he.score_human_eval([sheets[0].assign(rater="x"), sheets[0].assign(rater="y")], c.key)
    assert same.agreement["fleiss_kappa"].eq(1.0).all() and same.agreement["percent_agreement"].eq(1.0).all()


def test_fleiss_kappa_known_value():
    # Fleiss (1971)-style check: 4 items, 3 raters, categories (win, tie, loss)
    table = np.array([[3, 0, 0], [0, 3, 0], [1, 1, 1], [2, 0, 1]])
    # P_i = 1, 1, 0, 1/3 -> mean 7/12; p_j = 1/2, 1/3, 1/6 -> P_e = 7/18; kappa = (7/12 - 7/18) / (11/18) = 7/22
    assert he.fleiss_kappa(table) == pytest.approx(7 / 22)
    assert np.isnan(he.fleiss_kappa(np.array([[3, 0, 0], [3, 0, 0]])))


def test_scoring_errors_name_file_line_and_value(tmp_path):
    c = _comparisons(n=4)
    files = he.export_human_eval(c, tmp_path / "sheets")
    sheet = pd.read_csv(files["sheet_csv"], dtype=str, keep_default_na=False)
    bad = sheet.copy()
    bad.loc[1, "faithful"] = "maybe"
    bad.to_csv(tmp_path / "bob.csv", index=False, encoding="utf-8-sig")  # as a spreadsheet saves it
    with pytest.raises(ReportError, match=r"bob.csv, line 3, column 'faithful' holds 'maybe'"):
        he.score_human_eval([tmp_path / "bob.csv"], files["key_csv"])
    other = _comparisons(seed=5, n=4)
    sheet.to_csv(tmp_path / "carl.csv", index=False, encoding="utf-8-sig")  # the sheet id is read despite a BOM
    with pytest.raises(ReportError, match="belongs to sheet"):
        he.score_human_eval([tmp_path / "carl.csv"], other.key)
    unknown = sheet.assign(question=["Q999"] + list(sheet["question"][1:]))
    with pytest.raises(ReportError, match="Q999.*not in the key"):
        he.score_human_eval([unknown], files["key_csv"])
    with pytest.raises(ReportError, match="two sheets come from rater"):
        he.score_human_eval([sheet.assign(rater="a"), sheet.assign(rater="a")], files["key_csv"])
    with pytest.raises(ReportError, match="no answer"):
        he.score_human_eval([sheet], files["key_csv"])


def test_score_script_end_to_end(tmp_path):
    c = _comparisons(n=6)
    files = he.export_human_eval(c, tmp_path / "sheets")
    prefs = {("reasoningrec", "zeroshot_reasoningrec"): 1.0, ("reasoningrec", "tallrec"): 1.0}
    for s, name in enumerate(["ann", "ben"]):
        filled = _fill(c, prefs, np.random.default_rng(s), tie=0.0)
        filled.drop(columns=["context", "explanation_a", "explanation_b"]).to_csv(tmp_path / f"{name}.csv", index=False)
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "score_human_eval.py"),
            "--key",
            str(files["key_csv"]),
            str(tmp_path / "ann.csv"),
            str(tmp_path / "ben.csv"),
            "--out",
            str(tmp_path / "scored"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "ReasoningRec vs TALLRec" in out.stdout and "Inter-rater agreement" in out.stdout
    results = pd.read_csv(tmp_path / "scored" / "results.csv")
    pooled = results[results["aggregation"] == "pooled"]
    assert pooled["wins"].eq(12).all() and pooled["losses"].eq(0).all()  # 6 questions x 2 raters
    assert (tmp_path / "scored" / "summary.md").is_file()
    bad = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "score_human_eval.py"),
            "--key",
            str(tmp_path / "nope.csv"),
            str(tmp_path / "ann.csv"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "nope.csv does not exist" in bad.stderr
