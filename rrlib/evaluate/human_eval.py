"""Blind pairwise human evaluation of explanations, as in the papers' human studies (EXP3RT,
Figure 3): the sheets raters fill. Raters see, for a sampled test example, the user's context, the
target item and two explanations "A" and "B" written by two methods in random order, and answer for
each criterion which explanation is better (A, B or tie).

* :func:`build_comparisons` samples the examples (seeded), randomises the A/B order per
  question and shuffles the questions; it returns the **sheet** (what raters see, no method
  names) and the **key** (question -> methods), which :func:`export_human_eval` writes apart:
  ``sheet.csv`` / ``sheet.html`` to hand out, the key into a separate folder.
* Raters fill a copy of ``sheet.csv`` (one choice column per criterion), or use ``sheet.html``
  (printable, radio buttons, a button that saves the choices as the same CSV).

Notebook 07 writes sheets (a family's explanations against a baseline's, see
:mod:`rrlib.evaluate.families`) and so does notebook 08; the filled sheets are scored by
:mod:`rrlib.report.human_eval` (``scripts/score_human_eval.py``).
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rrlib.errors import ReportError
from rrlib.io import write_text_atomic

#: criterion -> the question raters answer (EXP3RT-style explanation quality)
CRITERIA: dict[str, str] = {
    "convincing": "Which explanation is more convincing: would it make you trust this recommendation?",
    "faithful": "Which explanation is more faithful to the user's history and the item (nothing invented)?",
    "specific": "Which explanation is more specific to this user (rather than true of anyone)?",
}
CHOICES = ("A", "B", "tie")
OUTCOMES = ("win", "tie", "loss")  # from the first method of a pair's point of view
SHEET_FIXED = ["sheet_id", "question", "context", "target_item", "explanation_a", "explanation_b"]


# ---------------------------------------------------------------------------------------
# What raters see
# ---------------------------------------------------------------------------------------
def context_texts(
    examples: pd.DataFrame,
    items: pd.DataFrame,
    profiles: Mapping[str, str] | None = None,
    history_n: int = 10,
    ratings: bool = True,
) -> dict[str, str]:
    """example_id -> the user's context as raters see it: the profile (when given) and the last
    ``history_n`` history items, oldest first, with liked/disliked (and the rating)."""
    titles = dict(zip(items["item_id"].astype(str), items["title"].astype(str)))
    out = {}
    for ex in examples.to_dict("records"):
        ids = [str(i) for i in (ex.get("history_item_ids") if ex.get("history_item_ids") is not None else [])]
        liked = list(ex.get("history_liked") if ex.get("history_liked") is not None else [None] * len(ids))
        rates = list(ex.get("history_ratings") if ex.get("history_ratings") is not None else [None] * len(ids))
        lines = []
        profile = (profiles or {}).get(str(ex["user_id"]), "")
        if profile:
            lines.append(f"Profile: {profile}")
        lines.append("Recent items (oldest first):")
        for i, lk, r in list(zip(ids, liked, rates))[-history_n:]:
            mark = "" if lk is None else (" (liked" if lk else " (disliked")
            if mark and ratings and r is not None and np.isfinite(float(r)):
                mark += f", {float(r):g}/5"
            lines.append(f"- {titles.get(i, i)}{mark + ')' if mark else ''}")
        out[str(ex["example_id"])] = "\n".join(lines)
    return out


def target_texts(examples: pd.DataFrame, items: pd.DataFrame) -> dict[str, str]:
    """example_id -> the target item's title and attributes."""
    meta = items.set_index(items["item_id"].astype(str))
    out = {}
    for eid, iid in zip(examples["example_id"].astype(str), examples["target_item_id"].astype(str)):
        if iid in meta.index:
            attrs = str(meta.at[iid, "attributes"] or "") if "attributes" in meta.columns else ""
            out[eid] = str(meta.at[iid, "title"]) + (f" ({attrs})" if attrs else "")
        else:
            out[eid] = iid
    return out


@dataclass
class Comparisons:
    sheet: pd.DataFrame  # what raters see (no method names)
    key: pd.DataFrame  # question -> methods; keep it away from the raters
    criteria: dict[str, str]


def _method_block(predictions: pd.DataFrame, method: str) -> pd.DataFrame:
    rows = predictions[predictions["method"] == method]
    if rows.empty:
        raise ReportError(
            f"human evaluation: method {method!r} has no predictions; available: "
            f"{', '.join(sorted(predictions['method'].unique()))}."
        )
    blocks = rows[["k", "seed"]].drop_duplicates()
    if len(blocks) > 1:
        raise ReportError(
            f"human evaluation: method {method!r} has {len(blocks)} (K, seed) blocks "
            f"{[tuple(map(int, b)) for b in blocks.to_numpy()]}; pass the predictions of one block "
            f"per method (e.g. rrlib.predictions.block(df, method, k, seed))."
        )
    return rows.set_index(rows["example_id"].astype(str))


def build_comparisons(
    predictions: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    contexts: Mapping[str, str],
    targets: Mapping[str, str],
    *,
    n_examples: int,
    seed: int,
    criteria: Mapping[str, str] | None = None,
) -> Comparisons:
    """Blind, shuffled pairwise comparisons of explanations (the ``reasoning`` column).

    ``pairs``: (method 1, method 2) to compare, method 1 being the one whose wins are counted
    (e.g. ('exp3rt', 'reasoningrec')). ``n_examples`` test examples are drawn (seeded) among
    those where every method of ``pairs`` has a non-empty explanation and a context; each
    gives one question per pair. Raises :class:`ReportError` when nothing is comparable."""
    criteria = dict(criteria or CRITERIA)
    if not pairs:
        raise ReportError("human evaluation: no method pairs to compare.")
    for a, b in pairs:
        if a == b:
            raise ReportError(f"human evaluation: pair ({a!r}, {b!r}) compares a method with itself.")
    bad = [c for c in criteria if not c.isidentifier()]
    if bad:
        raise ReportError(f"human evaluation: criterion names must be simple identifiers (CSV columns), got {bad}.")
    methods = list(dict.fromkeys(m for p in pairs for m in p))
    blocks = {m: _method_block(predictions, m) for m in methods}
    common: set[Any] | None = None
    for b in blocks.values():
        ok = set(b.index[b["reasoning"].fillna("").astype(str).str.strip() != ""])
        common = ok if common is None else common & ok
    usable = sorted(e for e in (common or set()) if e in contexts and e in targets)
    if not usable:
        raise ReportError(
            f"human evaluation: no example has an explanation from every method of {methods} and a "
            f"context and target text."
        )
    if n_examples < 1:
        raise ReportError(f"human evaluation: n_examples must be >= 1, got {n_examples}.")
    rng = np.random.default_rng(seed)
    chosen = [usable[i] for i in rng.permutation(len(usable))[:n_examples]]
    questions = []
    for eid in chosen:
        for m1, m2 in pairs:
            swap = bool(rng.random() < 0.5)
            a, b = (m2, m1) if swap else (m1, m2)
            questions.append(
                {
                    "example_id": eid,
                    "user_id": str(blocks[m1].at[eid, "user_id"]),
                    "method_1": m1,
                    "method_2": m2,
                    "method_a": a,
                    "method_b": b,
                    "k_a": int(blocks[a].at[eid, "k"]),
                    "seed_a": int(blocks[a].at[eid, "seed"]),
                    "k_b": int(blocks[b].at[eid, "k"]),
                    "seed_b": int(blocks[b].at[eid, "seed"]),
                    "context": contexts[eid],
                    "target_item": targets[eid],
                    "explanation_a": str(blocks[a].at[eid, "reasoning"]).strip(),
                    "explanation_b": str(blocks[b].at[eid, "reasoning"]).strip(),
                }
            )
    order = rng.permutation(len(questions))
    questions = [questions[i] for i in order]
    width = max(3, len(str(len(questions))))
    for n, q in enumerate(questions, 1):
        q["question"] = f"Q{n:0{width}d}"
    payload = json.dumps(
        [[q["question"], q["context"], q["target_item"], q["explanation_a"], q["explanation_b"]] for q in questions],
        ensure_ascii=False,
    )
    sheet_id = hashlib.sha256(f"{seed}|{payload}".encode()).hexdigest()[:12]
    sheet = pd.DataFrame(
        [{"sheet_id": sheet_id, **{c: q[c] for c in SHEET_FIXED[1:]}} for q in questions], columns=SHEET_FIXED
    )
    for c in criteria:
        sheet[c] = ""
    sheet["comment"] = ""
    key = pd.DataFrame(
        [
            {
                "sheet_id": sheet_id,
                **{
                    c: q[c]
                    for c in (
                        "question",
                        "example_id",
                        "user_id",
                        "method_1",
                        "method_2",
                        "method_a",
                        "method_b",
                        "k_a",
                        "seed_a",
                        "k_b",
                        "seed_b",
                    )
                },
            }
            for q in questions
        ]
    )
    return Comparisons(sheet, key, criteria)


_CSS = """
body{font-family:Georgia,'Times New Roman',serif;margin:1.5rem auto;max-width:60rem;color:#111;line-height:1.45}
h1{font-size:1.5rem}.q{border:1px solid #999;border-radius:6px;padding:.8rem 1rem;margin:1.2rem 0;
page-break-inside:avoid;break-inside:avoid}.q h2{font-size:1.1rem;margin:0 0 .4rem}
.ctx{white-space:pre-wrap;background:#f4f4f4;padding:.4rem .6rem;font-size:.92rem}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1rem;margin:.6rem 0}
.exp{border-left:4px solid #555;padding:.2rem .6rem;white-space:pre-wrap}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #bbb;padding:.25rem .4rem;text-align:left}
th{background:#eee}td.c{text-align:center;width:5rem}textarea{width:100%;min-height:2.2rem}
.noprint{margin:1rem 0}@media print{.noprint{display:none}body{margin:0;max-width:none}}
"""

_JS = """
function csvCell(v){v=String(v==null?'':v);return /[",\\n]/.test(v)?'"'+v.replace(/"/g,'""')+'"':v}
function saveCsv(){
  var crit=JSON.parse(document.body.dataset.criteria),sheet=document.body.dataset.sheet;
  var rater=document.getElementById('rater').value.trim();
  var rows=[['sheet_id','question','rater'].concat(crit).concat(['comment'])];
  document.querySelectorAll('section.q').forEach(function(s){
    var q=s.dataset.question,row=[sheet,q,rater];
    crit.forEach(function(c){var x=s.querySelector('input[name="'+q+':'+c+'"]:checked');row.push(x?x.value:'')});
    row.push(s.querySelector('textarea').value);rows.push(row)});
  var text=rows.map(function(r){return r.map(csvCell).join(',')}).join('\\n')+'\\n';
  var a=document.createElement('a');a.href=URL.createObjectURL(new Blob([text],{type:'text/csv'}));
  a.download='ratings_'+(rater||'rater')+'.csv';document.body.appendChild(a);a.click();a.remove()}
"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def sheet_html(sheet: pd.DataFrame, criteria: Mapping[str, str], title: str = "Which explanation is better?") -> str:
    """The rating sheet as one self-contained, printable HTML page (no external assets): per
    question the context, the target, explanations A and B side by side and one row of radio
    buttons (A / B / tie) per criterion; a button saves the choices as the filled CSV."""
    sheet_id = str(sheet["sheet_id"].iloc[0]) if len(sheet) else ""
    head = "".join(f'<th class="c">{c}</th>' for c in CHOICES)
    sections = []
    for q in sheet.to_dict("records"):
        qid = _e(q["question"])
        rows = "".join(
            f"<tr><td>{_e(text)}</td>"
            + "".join(
                f'<td class="c"><input type="radio" name="{qid}:{_e(c)}" value="{ch}" aria-label="{ch}"> {ch}</td>'
                for ch in CHOICES
            )
            + "</tr>"
            for c, text in criteria.items()
        )
        sections.append(
            f'<section class="q" data-question="{qid}"><h2>{qid}</h2>'
            f'<p><b>The user</b></p><div class="ctx">{_e(q["context"])}</div>'
            f"<p><b>Recommended item:</b> {_e(q['target_item'])}</p>"
            f'<div class="pair"><div><b>Explanation A</b><div class="exp">{_e(q["explanation_a"])}</div></div>'
            f'<div><b>Explanation B</b><div class="exp">{_e(q["explanation_b"])}</div></div></div>'
            f"<table><tr><th>criterion</th>{head}</tr>{rows}</table>"
            f'<p>Comment (optional)</p><textarea name="{qid}:comment"></textarea></section>'
        )
    crit_json = _e(json.dumps(list(criteria)))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body data-sheet="{_e(sheet_id)}" data-criteria="{crit_json}">
<h1>{_e(title)}</h1>
<p>Sheet <code>{_e(sheet_id)}</code>, {len(sheet)} questions. Each question shows a user, an item recommended to
them and two explanations of the recommendation, A and B, in random order. For every criterion choose the better
explanation, or <i>tie</i> when you cannot tell them apart. Judge the explanations only; do not guess who wrote
them.</p>
<div class="noprint">Your name or initials: <input id="rater" size="20">
<button type="button" onclick="saveCsv()">Save my answers as CSV</button>
(or print this page and circle your choices)</div>
{"".join(sections)}
<div class="noprint"><button type="button" onclick="saveCsv()">Save my answers as CSV</button></div>
<script>{_JS}</script>
</body></html>
"""


def export_human_eval(
    comparisons: Comparisons,
    folder: str | Path,
    key_path: str | Path | None = None,
    title: str = "Which explanation is better?",
) -> dict[str, Path]:
    """Write ``sheet.csv`` and ``sheet.html`` (to hand out) into ``folder`` and the key to
    ``key_path`` (default ``folder/key_do_not_share/key.csv``, a separate folder so that the
    sheets can be sent without it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key_path = Path(key_path) if key_path else folder / "key_do_not_share" / "key.csv"
    if key_path.resolve().parent == folder.resolve():
        raise ReportError(
            f"human evaluation: the key {key_path} would sit beside the sheets in {folder}; keep it in another folder."
        )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    files = {"sheet_csv": folder / "sheet.csv", "sheet_html": folder / "sheet.html", "key_csv": key_path}
    write_text_atomic(files["sheet_csv"], comparisons.sheet.to_csv(index=False))
    write_text_atomic(files["sheet_html"], sheet_html(comparisons.sheet, comparisons.criteria, title))
    key = comparisons.key.assign(criteria=";".join(comparisons.criteria))
    write_text_atomic(key_path, key.to_csv(index=False))
    return files


__all__ = [
    "CHOICES",
    "CRITERIA",
    "OUTCOMES",
    "SHEET_FIXED",
    "Comparisons",
    "build_comparisons",
    "context_texts",
    "export_human_eval",
    "sheet_html",
    "target_texts",
]
