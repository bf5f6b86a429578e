"""An interactive explorer of a run's test examples (notebook 08): pick a user or an example, or
step through those a filter keeps (correct, wrong, confidently wrong, liked, disliked), and see
the prompt the lead method read, the teacher's reasoning for that example, every method's answer
with its P(Yes) or rating, and what the faithfulness checks found in each text (the features of the
history it cites, names that appear nowhere in its input, the failure types).

The widget is built from ipywidgets (a Dropdown per choice, Previous/Next buttons, one HTML pane).
Saved in a notebook, or opened where widgets do not run (GitHub, nbconvert, a static viewer), its
output shows a static snapshot of the example on screen instead: the HTML report of notebook 08
remains the way to share the cases. :func:`example_view_html` is the same view as a string.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rrlib.errors import MethodError
from rrlib.evaluate.faithfulness import FAILURE_TYPES, known_texts_for, unknown_mentions
from rrlib.report.cases import (
    FILTERS,
    Case,
    InspectionInputs,
    MethodOutput,
    build_cases,
    load_inputs,
    method_block,
    select_examples,
)
from rrlib.report.highlight import content_terms, highlight_html
from rrlib.report.html import CSS
from rrlib.student.prompts import PromptContext, build_messages

#: the explorer's own styles, on top of the HTML report's
EXPLORER_CSS = """
.rr-explorer{font-size:14px;line-height:1.45;color:#1d2330}
.rr-explorer .case{margin:.4rem 0}
.rr-explorer details{margin:.4rem 0}.rr-explorer summary{cursor:pointer;font-weight:600}
.rr-explorer pre.prompt{background:#f5f6f8;border:1px solid #d9dce3;padding:.5rem;max-height:22rem;overflow:auto;
  font-family:ui-monospace,Menlo,monospace;font-size:12.5px;white-space:pre-wrap}
.rr-explorer td.found{font-size:.85rem}
.rr-explorer .note{color:#555;font-size:.85rem;margin:.3rem 0}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def scoped_css(css: str, scope: str) -> str:
    """``css`` with every selector prefixed by ``scope`` (``body`` becomes the scope itself), so that
    the report's styles shown inside a notebook change nothing outside the explorer."""
    out, i = [], 0
    while i < len(css):
        brace = css.find("{", i)
        if brace < 0:
            break
        head = css[i:brace].strip()
        if head.startswith("@"):  # @media: scope the rules inside it
            depth, j = 1, brace + 1
            while depth and j < len(css):
                depth += {"{": 1, "}": -1}.get(css[j], 0)
                j += 1
            out.append(f"{head}{{{scoped_css(css[brace + 1 : j - 1], scope)}}}")
            i = j
            continue
        end = css.find("}", brace)
        selectors = [sel.strip() for sel in head.split(",") if sel.strip()]
        scoped = ",".join(scope if sel == "body" else f"{scope} {sel}" for sel in selectors)
        out.append(f"{scoped}{css[brace : end + 1]}")
        i = end + 1
    return "\n".join(out)


@dataclass
class ExplorerData:
    """What the explorer shows, read once from a run folder (or given by a test)."""

    inputs: InspectionInputs
    method: str
    k: int
    domain: str = ""
    references: dict[str, str] = field(default_factory=dict)  # test example_id -> teacher reasoning
    _prompts: Any = None

    @classmethod
    def from_run(cls, paths, method: str, k: int | None = None, domain: str = "") -> ExplorerData:
        inputs = load_inputs(paths)
        block = method_block(inputs.predictions, method, k=k)
        references: dict[str, str] = {}
        ref_path = Path(paths.reference_reasoning)
        if ref_path.is_file():
            refs = pd.read_parquet(ref_path)
            if {"example_id", "reasoning"} <= set(refs.columns):
                references = {
                    str(e): r for e, r in zip(refs["example_id"], refs["reasoning"]) if isinstance(r, str) and r.strip()
                }
        return cls(inputs, method, int(block["k"].iloc[0]), domain, references)

    @property
    def block(self) -> pd.DataFrame:
        return method_block(self.inputs.predictions, self.method, k=self.k)

    def example_ids(self, how: str = "all", user: str = "") -> list[str]:
        order = pd.Series(
            dict(zip(self.inputs.examples["example_id"].astype(str), self.inputs.examples["sample_rank"]))
        )
        chosen = select_examples(self.block, how, user=user, n=len(self.block), order=order)
        return chosen["example_id"].astype(str).tolist()

    def users(self) -> list[str]:
        return sorted(self.block["user_id"].astype(str).unique(), key=lambda u: (len(u), u))

    def case(self, example_id: str) -> Case:
        return build_cases(self.inputs, [example_id], self.method, self.k)[0]

    def teacher_reasoning(self, example_id: str) -> tuple[str, str]:
        """(the teacher's reasoning for the example, which kind: ground truth or reference)."""
        truth = self.inputs.truth_of().get(example_id)
        if truth:
            return truth, "ground truth, notebook 05"
        ref = self.references.get(example_id)
        if ref:
            return ref, "reference for BERTScore (never shown to the student)"
        return "", ""

    def prompt(self, example_id: str) -> str:
        """The user turn the lead method read for this example ('' for a method without a prompt)."""

        if self._prompts is None:
            try:
                self._prompts = PromptContext.from_tables(
                    self.inputs.items, self.inputs.descriptions, self.inputs.profiles, domain=self.domain or "movies"
                )
            except (ValueError, KeyError):
                self._prompts = False
        if self._prompts is False:
            return ""
        ex = self.inputs.examples[self.inputs.examples["example_id"].astype(str) == example_id].iloc[0]
        try:
            messages = build_messages(self.method, ex, self._prompts)
        except (MethodError, KeyError, ValueError):
            return ""
        return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)

    def known_text(self, case: Case) -> str:
        """Everything the example's input holds (titles, descriptions, profile): what a text may cite."""
        ex = self.inputs.examples.set_index(self.inputs.examples["example_id"].astype(str)).loc[case.example_id]
        attrs = dict(zip(self.inputs.items["item_id"].astype(str), self.inputs.items["attributes"].astype(str)))
        return known_texts_for(
            ex, self.inputs.title_of(), self.inputs.description_of(), self.inputs.profile_of(), attrs
        )


def _answer(o: MethodOutput, rating: float | None) -> str:
    word = "Yes" if o.predicted_label else "No"
    cls = "ok" if o.correct else "bad"
    score = f"rating {rating:.2f}" if rating is not None else f"P(Yes) {o.p_yes:.3f}"
    return f'<span class="badge {cls}">{word} · {score} · {"correct" if o.correct else "wrong"}</span>'


def _found(o: MethodOutput, case: Case, known: str) -> str:
    text = o.reasoning or o.generated_text
    if not text.strip():
        return '<span class="small">(no text: probability only)</span>'
    words = content_terms(text)
    liked = sorted(words & case.terms.liked)
    disliked = sorted(words & case.terms.disliked)
    unknown = unknown_mentions(text, known)
    parts = [
        f"cites liked: {', '.join(f'<mark class=liked>{_e(w)}</mark>' for w in liked) or 'none'}",
        f"cites disliked: {', '.join(f'<mark class=disliked>{_e(w)}</mark>' for w in disliked) or 'none'}",
    ]
    if unknown:
        parts.append(f"not in its input: {_e(', '.join(unknown[:6]))}")
    if o.failures:
        parts.append(
            "failures: "
            + " ".join(f'<span class="badge fail" title="{_e(FAILURE_TYPES[f])}">{_e(f)}</span>' for f in o.failures)
        )
    return "<br>".join(parts)


def example_view_html(data: ExplorerData, example_id: str) -> str:
    """One example as the explorer shows it (HTML, self-contained styles)."""
    case = data.case(example_id)
    known = data.known_text(case)
    preds = data.inputs.predictions
    preds = preds[(preds["example_id"].astype(str) == example_id)]
    ratings = {
        (m, int(k)): float(r)
        for m, k, r in zip(preds["method"], preds["k"], preds.get("predicted_rating", pd.Series(dtype=float)))
        if pd.notna(r)
    }
    outputs = [case.lead, *case.others]
    label = "liked" if case.label else "disliked"
    teacher, kind = data.teacher_reasoning(example_id)
    hist = "".join(
        f'<li><span class="badge {"liked" if h.liked else "disliked"}">{"liked" if h.liked else "disliked"}'
        f" {h.rating:g}</span> <b>{_e(h.title)}</b></li>"
        for h in case.history
    )
    prompt = data.prompt(example_id)
    rows = "".join(
        f"<tr><td class='mono'>{_e(o.method)}{' (lead)' if o is case.lead else ''}</td><td>{o.k}</td>"
        f"<td>{_answer(o, ratings.get((o.method, o.k)))}</td><td class='found'>{_found(o, case, known)}</td></tr>"
        for o in outputs
    )
    texts = "".join(
        f"<details{' open' if o is case.lead else ''}><summary>{_e(o.method)} (K={o.k}): its answer</summary>"
        f"<pre>{highlight_html(o.reasoning or o.generated_text, case.terms)}</pre></details>"
        for o in outputs
        if (o.reasoning or o.generated_text).strip()
    )
    return (
        f'<div class="rr-explorer"><style>{scoped_css(CSS, ".rr-explorer")}{EXPLORER_CSS}</style>'
        f'<section class="case" data-example-id="{_e(example_id)}">'
        f'<header><span class="id">{_e(example_id)}</span><span>user <b>{_e(case.user_id)}</b></span>'
        f'<span>target <b>{_e(case.target_title)}</b></span><span class="badge {label}">truth: {label}</span></header>'
        f'<div class="grid"><div><h3>Recent history (oldest first)</h3><ul class="history">'
        f"{hist or '<li class=small>no history</li>'}</ul>"
        f"<h3>Target item</h3><p>{highlight_html(case.target_description, case.terms) or '(no description)'}</p></div>"
        f'<div><div class="box truth"><h3>Teacher\'s reasoning{f" ({_e(kind)})" if kind else ""}</h3>'
        f"<pre>{highlight_html(teacher, case.terms) if teacher else '<span class=small>none for this example'}"
        f"{'' if teacher else ' (the teacher writes it for training examples and N_REASONING_TEST test examples)</span>'}"
        f"</pre></div></div></div>"
        f"<h3>Every method's answer, and what the faithfulness checks found in it</h3>"
        f'<p class="note">Words <mark class="liked">marked green</mark> occur only in the descriptions of history '
        f'items the user liked, <mark class="disliked">red</mark> only in those they disliked.</p>'
        f"<table><tr><th>method</th><th>K</th><th>answer</th><th>found in its text</th></tr>{rows}</table>"
        f"{texts}"
        + (
            f"<details><summary>The prompt {_e(data.method)} read</summary><pre class='prompt'>{_e(prompt)}</pre>"
            f"</details>"
            if prompt
            else ""
        )
        + "</section></div>"
    )


def explorer(data: ExplorerData, how: str = "all", user: str = ""):
    """The interactive explorer (an ipywidgets VBox) over ``data``; see the module docstring."""
    import ipywidgets as w

    class Explorer(w.VBox):
        def _repr_mimebundle_(self, **kwargs):
            bundle = super()._repr_mimebundle_(**kwargs) or {}
            current = self.example.value
            static = (
                '<p class="rr-explorer note" style="color:#555">A static snapshot of the explorer (it is '
                "interactive in JupyterLab); the HTML report holds every case shown.</p>"
                + (example_view_html(data, current) if current else "")
            )
            bundle["text/html"] = static
            bundle["text/plain"] = f"explorer of {len(self.example.options)} test examples ({data.method}, K={data.k})"
            return bundle

    show = w.Dropdown(options=list(FILTERS), value=how, description="show", layout=w.Layout(width="15em"))
    users = w.Dropdown(options=[("any user", "")] + [(u, u) for u in data.users()], value=user, description="user")
    users.layout = w.Layout(width="14em")
    example = w.Dropdown(options=[], description="example", layout=w.Layout(width="22em"))
    prev_b = w.Button(description="◀ previous", layout=w.Layout(width="8em"))
    next_b = w.Button(description="next ▶", layout=w.Layout(width="8em"))
    where = w.HTML()
    pane = w.HTML()
    for widget, cls in ((prev_b, "rr-prev"), (next_b, "rr-next"), (show, "rr-show"), (users, "rr-user")):
        widget.add_class(cls)
    example.add_class("rr-example")
    pane.add_class("rr-pane")

    def options() -> None:
        try:
            ids = data.example_ids(show.value, users.value)
        except Exception:  # an empty selection (InspectError): say so instead of failing the callback
            ids = []
        example.options = ids
        if ids:
            example.value = ids[0]
            draw()  # the value may be the same example: redraw the position either way
        else:
            pane.value = f"<p>No test example of {_e(data.method)} is {_e(show.value)} for this choice.</p>"
            where.value = "0 of 0"

    def draw(*_) -> None:
        if example.value is None:
            return
        ids = list(example.options)
        where.value = f"<b>{ids.index(example.value) + 1}</b> of {len(ids)}"
        pane.value = example_view_html(data, example.value)

    def step(delta: int) -> None:
        ids = list(example.options)
        if ids and example.value in ids:
            example.value = ids[(ids.index(example.value) + delta) % len(ids)]

    show.observe(lambda _: options(), names="value")
    users.observe(lambda _: options(), names="value")
    example.observe(draw, names="value")
    prev_b.on_click(lambda _: step(-1))
    next_b.on_click(lambda _: step(1))
    box = Explorer([w.HBox([show, users, example, prev_b, next_b, where]), pane])
    box.add_class("rr-explorer-widget")
    box.show, box.user, box.example, box.pane, box.where = show, users, example, pane, where
    box.next_button, box.previous_button = next_b, prev_b
    options()
    draw()
    return box


def run_explorer(paths, method: str, k: int | None = None, domain: str = "", how: str = "all", user: str = ""):
    """``explorer(ExplorerData.from_run(paths, method, k, domain), how, user)``: notebook 08's one call."""
    return explorer(ExplorerData.from_run(paths, method, k, domain), how, user)


__all__ = ["EXPLORER_CSS", "ExplorerData", "example_view_html", "explorer", "run_explorer", "scoped_css"]
