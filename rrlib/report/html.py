"""The self-contained HTML report of notebook 08 (no external assets: it opens offline)."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rrlib.evaluate.faithfulness import FAILURE_TYPES
from rrlib.io import write_text_atomic
from rrlib.report.cases import (
    Case,
    InspectionInputs,
    MethodOutput,
    annotate_failures,
    build_cases,
    failure_rates,
    failure_summary,
    method_block,
    select_examples,
)
from rrlib.report.highlight import highlight_html

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;padding:1.5rem;
  color:#1d2330;background:#f5f6f8;line-height:1.45;font-size:15px}
h1{margin:0 0 .3rem}h2{margin:1.6rem 0 .6rem}h3{margin:.2rem 0 .4rem;font-size:1rem}
.meta{color:#555;margin-bottom:1rem}.meta span{margin-right:1.2rem}
table{border-collapse:collapse;background:#fff;margin:.4rem 0}
th,td{border:1px solid #d9dce3;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eceef3}
.legend mark{padding:0 .3rem}
mark.liked{background:#c8f0cf;color:inherit;border-radius:3px}
mark.disliked{background:#ffd0cc;color:inherit;border-radius:3px}
.case{background:#fff;border:1px solid #d9dce3;border-radius:8px;margin:1rem 0;padding:1rem}
.case header{display:flex;flex-wrap:wrap;gap:.6rem;align-items:baseline;margin-bottom:.6rem}
.case header .id{font-family:ui-monospace,Menlo,monospace;font-weight:600}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
@media (max-width:900px){.grid{grid-template-columns:1fr}}
.box{border-left:4px solid #aab;padding:.2rem .7rem;margin:.5rem 0}
.box.truth{border-color:#6a5acd}.box.lead{border-color:#1f77b4}
.badge{display:inline-block;border-radius:999px;padding:0 .55rem;font-size:.82rem;font-weight:600}
.badge.liked,.badge.ok{background:#c8f0cf}.badge.disliked,.badge.bad{background:#ffd0cc}
.badge.neutral{background:#e3e6ee}.badge.fail{background:#ffe7b3}
ul.history{padding-left:1.1rem;margin:.3rem 0}ul.history li{margin:.2rem 0}
.small{font-size:.85rem;color:#555}.mono{font-family:ui-monospace,Menlo,monospace}
pre{white-space:pre-wrap;word-wrap:break-word;margin:.2rem 0;font-family:inherit}
.filters button{margin-right:.4rem;padding:.25rem .7rem;border:1px solid #99a;border-radius:5px;
  background:#fff;cursor:pointer}.filters button.active{background:#1f77b4;color:#fff}
"""


_SCRIPT = """
document.querySelectorAll('.filters button').forEach(function(b){b.addEventListener('click',function(){
  document.querySelectorAll('.filters button').forEach(function(x){x.classList.remove('active')});
  b.classList.add('active');var f=b.getAttribute('data-filter');
  document.querySelectorAll('section.case').forEach(function(c){
    var show=f==='all'||(f==='correct'&&c.dataset.correct==='true')||(f==='wrong'&&c.dataset.correct==='false')
      ||(f==='liked'&&c.dataset.label==='1')||(f==='disliked'&&c.dataset.label==='0');
    c.style.display=show?'':'none';});});});
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def case_anchor(example_id: str) -> str:
    return "case-" + re.sub(r"[^A-Za-z0-9_-]", "-", example_id)


def _prediction_badge(o: MethodOutput) -> str:
    word = "Yes" if o.predicted_label else "No"
    cls = "ok" if o.correct else "bad"
    return (
        f'<span class="badge {cls}">Prediction: {word} · P(yes)={o.p_yes:.3f} · '
        f"{'correct' if o.correct else 'wrong'}</span>"
    )


def _failures_html(o: MethodOutput) -> str:
    return "".join(f' <span class="badge fail" title="{_e(FAILURE_TYPES[f])}">{_e(f)}</span>' for f in o.failures)


def case_html(case: Case) -> str:
    """One side-by-side view (also displayed in the notebook)."""
    t = case.terms
    hist = (
        "".join(
            f'<li><span class="badge {"liked" if h.liked else "disliked"}">{"liked" if h.liked else "disliked"} '
            f'{h.rating:g}</span> <b>{_e(h.title)}</b> <span class="small">{highlight_html(h.description, t)}</span></li>'
            for h in case.history
        )
        or "<li class='small'>no history</li>"
    )
    truth = (
        f'<div class="box truth"><h3>Reasoning ground truth (teacher)</h3><pre>'
        f"{highlight_html(case.reasoning_truth, t)}</pre></div>"
        if case.reasoning_truth
        else '<div class="box truth small">No reasoning ground truth for this example (the teacher writes '
        "it for training examples).</div>"
    )
    lead = case.lead
    lead_html = (
        f'<div class="box lead"><h3>{_e(lead.method)} (K={lead.k}) {_prediction_badge(lead)}'
        f"{_failures_html(lead)}</h3><pre>{highlight_html(lead.reasoning or lead.generated_text, t)}</pre></div>"
    )
    others = "".join(
        f"<tr><td class='mono'>{_e(o.method)}</td><td>{o.k}</td><td>{_prediction_badge(o)}{_failures_html(o)}</td>"
        f"<td><pre>{highlight_html(o.reasoning or o.generated_text, t) or '<span class=small>(no text)</span>'}"
        f"</pre></td></tr>"
        for o in case.others
    )
    others_html = (
        (
            f"<h3>Other methods</h3><table><tr><th>method</th><th>K</th><th>prediction</th>"
            f"<th>output</th></tr>{others}</table>"
        )
        if others
        else ""
    )
    label = "liked" if case.label else "disliked"
    return (
        f'<section class="case" id="{_e(case_anchor(case.example_id))}" data-example-id="{_e(case.example_id)}" '
        f'data-correct="{str(lead.correct).lower()}" data-label="{case.label}">'
        f'<header><span class="id">{_e(case.example_id)}</span><span>user <b>{_e(case.user_id)}</b></span>'
        f'<span class="badge {label}">truth: {label}</span>{_prediction_badge(lead)}</header>'
        f'<div class="grid"><div>'
        f'<h3>Target item</h3><p><b>{_e(case.target_title)}</b> <span class="small mono">{_e(case.target_item_id)}'
        f"</span><br>{highlight_html(case.target_description, t)}</p>"
        f"<h3>User profile</h3><p>{highlight_html(case.profile, t) or '<span class=small>(no profile)</span>'}</p>"
        f'<h3>Recent history (oldest first)</h3><ul class="history">{hist}</ul>'
        f"</div><div>{truth}{lead_html}</div></div>{others_html}</section>"
    )


def _table_html(df: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in [df.index.name or ""] + list(df.columns))
    body = []
    for idx, row in df.iterrows():
        cells = "".join(f"<td>{_e(float_format.format(v) if isinstance(v, float) else v)}</td>" for v in row)
        body.append(f"<tr><th>{_e(idx)}</th>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_report(cases: Sequence[Case], summary: pd.DataFrame, rates: pd.DataFrame, meta: Mapping[str, Any]) -> str:
    """A self-contained HTML page: inline CSS and script, no external assets, all text escaped."""
    meta_html = "".join(f"<span><b>{_e(k)}</b>: {_e(v)}</span>" for k, v in meta.items())
    summary_view = summary.set_index("failure")[["count", "share", "by_method", "examples", "meaning"]]
    filters = "".join(
        f'<button data-filter="{f}"{" class=active" if f == "all" else ""}>{f}</button>'
        for f in ("all", "correct", "wrong", "liked", "disliked")
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ReasoningRec inspection: {_e(meta.get("run", ""))}</title>
<style>{CSS}</style></head>
<body>
<h1>ReasoningRec: what the models said</h1>
<div class="meta">{meta_html}</div>
<p class="legend">Highlighting: <mark class="liked">words</mark> found only in the descriptions of items the
user <b>liked</b> in the shown history, <mark class="disliked">words</mark> found only in those of items
they <b>disliked</b>.</p>
<h2>Most frequent failure types</h2>
<p class="small">Over every text output of the test split; heuristics explained in the last column.</p>
{_table_html(summary_view)}
<h2>Failure rate per method</h2>
{_table_html(rates) if not rates.empty else '<p class="small">No method generated text.</p>'}
<h2>Examples side by side ({len(cases)})</h2>
<div class="filters">{filters}</div>
{"".join(case_html(c) for c in cases)}
<script>{_SCRIPT}</script>
</body></html>
"""


def write_report(path: str | Path, page: str) -> Path:
    return write_text_atomic(path, page)


def inspect_run(
    inputs: InspectionInputs,
    *,
    method: str = "reasoningrec",
    how: str = "all",
    user: str = "",
    n: int = 12,
    meta: Mapping[str, Any] | None = None,
) -> tuple[list[Case], pd.DataFrame, pd.DataFrame, str]:
    """Everything notebook 08 shows: ``(cases, failure summary, failure rates, report HTML)``."""
    block = method_block(inputs.predictions, method)
    order = dict(zip(inputs.examples["example_id"].astype(str), inputs.examples["sample_rank"]))
    chosen = select_examples(block, how=how, user=user, n=n, order=pd.Series(order))
    cases = build_cases(inputs, chosen["example_id"].astype(str).tolist(), method, int(block["k"].iloc[0]))
    annotated = annotate_failures(inputs)
    summary, rates = failure_summary(annotated), failure_rates(annotated)
    info = {
        "method": f"{method}@K{int(block['k'].iloc[0])}",
        "filter": how,
        **({"user": user} if user else {}),
        "shown": len(cases),
        "test examples": int(block.shape[0]),
        "accuracy": f"{block['correct'].mean():.3f}",
        **dict(meta or {}),
    }
    return cases, summary, rates, render_report(cases, summary, rates, info)


__all__ = ["CSS", "case_anchor", "case_html", "inspect_run", "render_report", "write_report"]
