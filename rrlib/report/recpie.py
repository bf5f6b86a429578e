"""How RecPIE's explanations moved its recommender (notebook 08) and the blind pairwise sheets
that compare the reward-tuned explanations with the base explainer's (notebook 07).

The score shift comes from ``RUN_DIR/recpie/score_shift.parquet``, written by
:func:`rrlib.methods.recpie.predict`: per test example the fitted recommender's P(like) with
the user text switched off and on (the same weights), so the difference is what the text did.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from rrlib.errors import ReportError

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
    from pathlib import Path

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
    from matplotlib.figure import Figure

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
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def round_zero_block(block: pd.DataFrame, round0: pd.DataFrame, method: str = "recpie_rl_round0") -> pd.DataFrame:
    """``block`` (the recpie_rl predictions rows) with each shown explanation replaced by the
    same user's explanation from round 0 (the explainer before any reward), renamed ``method``:
    the baseline of the pairwise comparison."""
    texts = dict(zip(round0["user_id"].astype(str), round0["explanation"].fillna("").astype(str)))
    shown = block["reasoning"].fillna("").astype(str).str.strip() != ""
    reasoning = [texts.get(str(u), "") if s else "" for u, s in zip(block["user_id"], shown)]
    return block.assign(method=method, reasoning=reasoning)


def explanation_comparisons(
    predictions: pd.DataFrame,
    round0: pd.DataFrame,
    examples: pd.DataFrame,
    items: pd.DataFrame,
    *,
    seed: int,
    n_examples: int = 20,
    method: str = "recpie_rl",
    others: Sequence[str] = (),
):
    """Blind pairwise sheets: ``method``'s reward-tuned explanations against round 0's, and
    against each method of ``others`` that wrote reasoning for the same examples."""
    from rrlib.report.human_eval import build_comparisons, context_texts, target_texts

    block = predictions[(predictions["method"] == method) & (predictions["split"] == "test")]
    if block.empty:
        raise ReportError(f"human evaluation: no test predictions of {method}; put it in EVAL_METHODS.")
    base = round_zero_block(block, round0)
    parts = [block, base] + [
        predictions[(predictions["method"] == m) & (predictions["split"] == "test")] for m in others
    ]
    pairs = [(method, str(base["method"].iloc[0]))] + [(method, m) for m in others]
    ex = examples[examples["example_id"].astype(str).isin(block["example_id"].astype(str))]
    return build_comparisons(
        pd.concat(parts, ignore_index=True),
        pairs,
        context_texts(ex, items),
        target_texts(ex, items),
        n_examples=n_examples,
        seed=seed,
    )


__all__ = [
    "SHIFT_COLUMNS",
    "explanation_comparisons",
    "largest_shifts",
    "load_score_shift",
    "plot_score_shift",
    "round_zero_block",
    "score_shift_summary",
]
