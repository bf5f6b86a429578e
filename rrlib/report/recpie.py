"""RecPIE's view in notebook 08 (:mod:`rrlib.report.families`): how its explanations moved its
recommender. (Its views of notebook 07 are :mod:`rrlib.evaluate.recpie`.)

The score shift comes from ``RUN_DIR/recpie/score_shift.parquet``, written by
:func:`rrlib.methods.recpie.predict`: per test example the fitted recommender's P(like) with
the user text switched off and on (the same weights), so the difference is what the text did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rrlib.errors import ReportError
from rrlib.evaluate.section import Section
from rrlib.report.context import InspectionContext

FAMILY = "recpie"
EXPLAINED = "recpie_rl"  # the reward-tuned explainer's hybrid: the lead of the view when it was scored

SHIFT_COLUMNS = (
    "method",
    "example_id",
    "user_id",
    "target_item_id",
    "label",
    "p_without_user_text",
    "p_with_user_text",
    "user_text_shown",
    "user_text",
)


def load_score_shift(path) -> pd.DataFrame:
    """The score-shift table, with ``delta`` (with minus without) and ``toward_label`` (the shift
    signed so that positive means toward the true label)."""
    if not Path(path).is_file():
        raise ReportError(
            f"{path} is missing: run 07_evaluate with a RecPIE user-text method (recpie_rl, "
            f"recpie_hybrid or recpie_user_text) in EVAL_METHODS."
        )
    shift = pd.read_parquet(path)
    missing = [c for c in SHIFT_COLUMNS if c not in shift.columns]
    if missing:
        raise ReportError(f"{path} lacks column(s) {missing}; rerun 07_evaluate.")
    delta = shift["p_with_user_text"] - shift["p_without_user_text"]
    return shift.assign(delta=delta, toward_label=np.where(shift["label"] == 1, delta, -delta))


def score_shift_summary(shift: pd.DataFrame) -> pd.DataFrame:
    """Per method, over the examples that were shown a user text: how many, the share the text
    moved toward the true label, the mean shift for liked and for disliked targets, and the log
    loss without and with the text."""
    rows = []
    for method, g in shift.groupby("method", sort=False):
        s = g[g["user_text_shown"]]
        y = s["label"].to_numpy()

        def logloss(p: np.ndarray, y: np.ndarray = y) -> float:
            p = np.clip(p, 1e-7, 1 - 1e-7)
            return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if len(y) else float("nan")

        rows.append(
            {
                "method": method,
                "n": len(g),
                "n_shown": len(s),
                "toward_label_share": float((s["toward_label"] > 0).mean()) if len(s) else float("nan"),
                "mean_delta_liked": float(s.loc[s["label"] == 1, "delta"].mean()),
                "mean_delta_disliked": float(s.loc[s["label"] == 0, "delta"].mean()),
                "logloss_without": logloss(s["p_without_user_text"].to_numpy()),
                "logloss_with": logloss(s["p_with_user_text"].to_numpy()),
            }
        )
    return pd.DataFrame(rows)


def largest_shifts(shift: pd.DataFrame, method: str, n: int = 10) -> pd.DataFrame:
    """The ``n`` examples of ``method`` whose score the explanation moved most (either way):
    score without / with the text, the shift, the label and the explanation."""
    g = shift[(shift["method"] == method) & shift["user_text_shown"]]
    if g.empty:
        have = sorted(shift.loc[shift["user_text_shown"], "method"].unique())
        raise ReportError(
            f"score shift: method {method!r} has no example with a user text shown; methods with one: {have or 'none'}."
        )
    g = g.reindex(g["delta"].abs().sort_values(ascending=False).index)
    cols = [
        "example_id",
        "user_id",
        "target_item_id",
        "label",
        "p_without_user_text",
        "p_with_user_text",
        "delta",
        "toward_label",
        "user_text",
    ]
    return g[cols].head(n).reset_index(drop=True)


def plot_score_shift(shift: pd.DataFrame, method: str, path=None):
    """P(like) without the user text (x) against with it (y) for ``method``'s examples that were
    shown one, liked and disliked targets apart; above the diagonal the text raised the score.
    Saved to ``path`` when given; returns a plain matplotlib Figure."""
    g = shift[(shift["method"] == method) & shift["user_text_shown"]]
    if g.empty:
        raise ReportError(f"score shift: method {method!r} has no example with a user text shown.")
    fig = Figure(figsize=(4.6, 4.4))
    ax = fig.subplots()
    for lab, name, color in ((1, "liked", "#2a9d55"), (0, "disliked", "#d1495b")):
        part = g[g["label"] == lab]
        ax.scatter(part["p_without_user_text"], part["p_with_user_text"], s=14, alpha=0.6, color=color, label=name)
    ax.plot([0, 1], [0, 1], color="#777", lw=1, ls="--")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="P(like) without the user text",
        ylabel="P(like) with it",
        title=f"How the explanation moved {method}",
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


SHIFT_ABOUT = """\
For RecPIE's user-text methods (`recpie_rl`: the reward-tuned explainer's texts; `recpie_hybrid` /
`recpie_user_text`: `RECPIE_USER_TEXT`) notebook 07 scored every test example twice with the same
fitted recommender: with the user's text switched off and on. The difference is what the text did.
The table counts, over the examples that were shown a text, how often it moved the score toward the
true label and the log loss without and with it; below, the examples it moved most, with the
explanation and the label, and all of them as a scatter (above the diagonal: the text raised P(like))."""


def sections(ctx: InspectionContext) -> list[Section]:
    """How the user text moved the recommender (``RUN_DIR/recpie/score_shift.parquet``): the summary
    per method, the largest shifts of the lead method (the reward-tuned one when scored) and its
    scatter, ``inspect/recpie_score_shift.png``. Record: ``score_shift``, ``plot``."""
    paths = ctx.paths
    section = Section(FAMILY, "RecPIE: how the explanation moved the recommender", about=SHIFT_ABOUT)
    if not paths.explainer_score_shift.is_file():
        section.lines.append("no RecPIE user-text method was scored in 07_evaluate")
        return [section]
    shift = load_score_shift(paths.explainer_score_shift)
    summary = score_shift_summary(shift)
    section.tables["Score shift per method"] = summary.round(4)
    shown = list(dict.fromkeys(shift.loc[shift["user_text_shown"], "method"]))
    plot = paths.inspect / "recpie_score_shift.png"
    if shown:
        lead = EXPLAINED if EXPLAINED in shown else shown[0]
        section.tables[f"Largest shifts of {lead}"] = largest_shifts(shift, lead, n=ctx.n_showcase)
        plot_score_shift(shift, lead, plot)
        section.images.append(plot)
    section.record = {
        "score_shift": summary.to_dict(orient="records"),
        "plot": str(plot.relative_to(paths.root)) if shown else None,
    }
    return [section]


__all__ = [
    "SHIFT_ABOUT",
    "SHIFT_COLUMNS",
    "largest_shifts",
    "load_score_shift",
    "plot_score_shift",
    "score_shift_summary",
    "sections",
]
