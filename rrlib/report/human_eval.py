"""Scoring a blind pairwise human evaluation of explanations (EXP3RT, Figure 3). The sheets are
written by :mod:`rrlib.evaluate.human_eval` (notebooks 07 and 08); its names are re-exported here,
so that this module is the one place to read about human evaluation.

:func:`score_human_eval` reads the filled sheets (one per rater), un-blinds them with the key and
reports, per method pair and criterion, win / tie / loss counts with a two-sided sign test
(binomial test of wins against losses, ties left out), pooled over all judgements and by
per-question majority vote, plus inter-rater agreement (Cohen's kappa, mean over rater pairs, and
Fleiss' kappa) on the un-blinded outcomes. ``scripts/score_human_eval.py`` is the command line.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rrlib.errors import ReportError
from rrlib.evaluate.human_eval import (
    CHOICES,
    CRITERIA,
    OUTCOMES,
    Comparisons,
    build_comparisons,
    context_texts,
    export_human_eval,
    sheet_html,
    target_texts,
)
from rrlib.methods import registry


def _read_csv(source: str | Path | pd.DataFrame, what: str) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        return source.copy(), what
    path = Path(source)
    if not path.is_file():
        raise ReportError(f"human evaluation: {what} {path} does not exist.")
    try:
        # utf-8-sig: spreadsheet programs often save CSV with a byte-order mark
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig"), str(path)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ReportError(f"human evaluation: {path} is not a readable CSV file: {e}") from e


def _choice(value: str, where: str) -> str | None:
    v = str(value).strip()
    if not v or v.lower() == "nan":
        return None
    for c in CHOICES:
        if v.lower() == c.lower():
            return c
    raise ReportError(
        f"human evaluation: {where} holds {value!r}; allowed answers are {', '.join(CHOICES)} (or empty for no answer)."
    )


def judgements(
    sheets: Sequence[str | Path | pd.DataFrame], key: str | Path | pd.DataFrame, criteria: Sequence[str] | None = None
) -> pd.DataFrame:
    """The filled sheets as one long, un-blinded table: rater, question, example_id, criterion,
    choice (A / B / tie), method_1, method_2, and ``outcome`` for method 1 (win / tie / loss).
    Unanswered cells are left out. Raters are named by a ``rater`` column (one name per file),
    else by the file name."""
    key_df, key_src = _read_csv(key, "key")
    need = ["sheet_id", "question", "method_1", "method_2", "method_a", "method_b"]
    missing = [c for c in need if c not in key_df.columns]
    if missing:
        raise ReportError(
            f"human evaluation: the key {key_src} lacks column(s) {missing}; it was not written by export_human_eval."
        )
    if criteria is None:
        stored = str(key_df["criteria"].iloc[0]) if "criteria" in key_df.columns and len(key_df) else ""
        criteria = [c for c in stored.split(";") if c] or list(CRITERIA)
    key_df = key_df.set_index("question")
    sheet_ids = set(key_df["sheet_id"].astype(str))
    rows, raters = [], set()
    for n, source in enumerate(sheets):
        df, src = _read_csv(source, f"sheet #{n + 1}")
        if "question" not in df.columns:
            raise ReportError(f"human evaluation: {src} has no 'question' column; fill a copy of sheet.csv.")
        present = [c for c in criteria if c in df.columns]
        if not present:
            raise ReportError(f"human evaluation: {src} has none of the criterion columns {list(criteria)}.")
        if "sheet_id" in df.columns:
            other = set(df["sheet_id"].astype(str).str.strip()) - sheet_ids - {""}
            if other:
                raise ReportError(
                    f"human evaluation: {src} belongs to sheet {sorted(other)[0]}, but the key is for "
                    f"sheet {sorted(sheet_ids)[0]}; use the key exported with it."
                )
        names = sorted({str(r).strip() for r in df["rater"]} - {""}) if "rater" in df.columns else []
        if len(names) > 1:
            raise ReportError(f"human evaluation: {src} names several raters {names}; one file per rater.")
        rater = names[0] if names else (Path(src).stem if not isinstance(source, pd.DataFrame) else f"rater{n + 1}")
        if rater in raters:
            raise ReportError(
                f"human evaluation: two sheets come from rater {rater!r}; name the files (or the rater column) apart."
            )
        raters.add(rater)
        dup = df["question"].astype(str).duplicated()
        if dup.any():
            raise ReportError(f"human evaluation: {src} answers question {df['question'][dup].iloc[0]} twice.")
        for line, r in zip(range(2, len(df) + 2), df.to_dict("records")):
            q = str(r["question"]).strip()
            if q not in key_df.index:
                raise ReportError(f"human evaluation: {src}, line {line}: question {q!r} is not in the key.")
            k = key_df.loc[q]
            for c in present:
                choice = _choice(r[c], f"{src}, line {line}, column {c!r}")
                if choice is None:
                    continue
                winner = k["method_a"] if choice == "A" else k["method_b"] if choice == "B" else None
                outcome = "tie" if winner is None else "win" if winner == k["method_1"] else "loss"
                rows.append(
                    {
                        "rater": rater,
                        "question": q,
                        "example_id": k.get("example_id", ""),
                        "criterion": c,
                        "choice": choice,
                        "method_1": k["method_1"],
                        "method_2": k["method_2"],
                        "outcome": outcome,
                    }
                )
    return pd.DataFrame(
        rows, columns=["rater", "question", "example_id", "criterion", "choice", "method_1", "method_2", "outcome"]
    )


def sign_test(wins: int, losses: int) -> float:
    """Two-sided sign test: the binomial probability of a split at least this uneven when wins
    and losses are equally likely (ties left out); NaN without any decided comparison."""
    from scipy.stats import binomtest

    n = int(wins) + int(losses)
    return float(binomtest(int(wins), n, 0.5).pvalue) if n else float("nan")


def _majority(outcomes: Sequence[str]) -> str:
    counts = Counter(outcomes).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return "tie"  # no majority
    return counts[0][0]


def fleiss_kappa(table: np.ndarray) -> float:
    """Fleiss' kappa of an items x categories count table (every item rated by the same number
    of raters); NaN when every rating falls in one category (agreement by chance is then 1)."""
    table = np.asarray(table, dtype=float)
    n = table.sum(axis=1)
    if len(table) == 0 or not np.allclose(n, n[0]) or n[0] < 2:
        return float("nan")
    m = n[0]
    p_i = ((table**2).sum(axis=1) - m) / (m * (m - 1))
    p_j = table.sum(axis=0) / table.sum()
    pe = float((p_j**2).sum())
    return float("nan") if np.isclose(pe, 1.0) else float((p_i.mean() - pe) / (1 - pe))


def agreement(judged: pd.DataFrame) -> pd.DataFrame:
    """Inter-rater agreement per criterion over the questions every rater answered: share of
    questions where all raters agree, Cohen's kappa (mean over rater pairs) and Fleiss' kappa,
    on the un-blinded outcomes (win / tie / loss)."""
    from sklearn.metrics import cohen_kappa_score

    out = []
    for crit, g in judged.groupby("criterion", sort=False):
        wide = g.pivot_table(index="question", columns="rater", values="outcome", aggfunc="first")
        complete = wide.dropna()
        raters = list(wide.columns)
        row = {
            "criterion": crit,
            "n_raters": len(raters),
            "n_questions": len(complete),
            "percent_agreement": float("nan"),
            "cohen_kappa": float("nan"),
            "fleiss_kappa": float("nan"),
        }
        if len(raters) >= 2 and len(complete):
            row["percent_agreement"] = float((complete.nunique(axis=1) == 1).mean())
            kappas = []
            for a, b in itertools.combinations(raters, 2):
                x, y = complete[a], complete[b]
                # identical single-category labels make kappa 0/0: leave it out
                if len(set(x) | set(y)) > 1:
                    kappas.append(cohen_kappa_score(x, y, labels=list(OUTCOMES)))
            row["cohen_kappa"] = float(np.mean(kappas)) if kappas else float("nan")
            counts = np.array([[int((complete.loc[q] == o).sum()) for o in OUTCOMES] for q in complete.index])
            row["fleiss_kappa"] = fleiss_kappa(counts)
        out.append(row)
    return pd.DataFrame(
        out, columns=["criterion", "n_raters", "n_questions", "percent_agreement", "cohen_kappa", "fleiss_kappa"]
    )


@dataclass
class HumanEvalScores:
    results: pd.DataFrame  # per pair x criterion x aggregation: wins, ties, losses, p-value
    agreement: pd.DataFrame  # per criterion: kappas
    judgements: pd.DataFrame  # every un-blinded answer


def score_human_eval(
    sheets: Sequence[str | Path | pd.DataFrame], key: str | Path | pd.DataFrame, criteria: Sequence[str] | None = None
) -> HumanEvalScores:
    """Un-blind the filled sheets and count, per (method 1, method 2) pair and criterion, the
    wins, ties and losses of method 1 with the sign test's p-value: ``pooled`` over every
    rater's answers, and ``majority`` (one outcome per question, the raters' majority; a tie
    when there is none)."""
    judged = judgements(sheets, key, criteria)
    if judged.empty:
        raise ReportError("human evaluation: the filled sheets hold no answer.")
    rows = []
    for (m1, m2, crit), g in judged.groupby(["method_1", "method_2", "criterion"], sort=False):
        major = g.groupby("question")["outcome"].agg(lambda s: _majority(list(s)))
        for how, outcomes in (("pooled", g["outcome"]), ("majority", major)):
            c = Counter(outcomes)
            n = int(sum(c.values()))
            rows.append(
                {
                    "method_1": m1,
                    "label_1": registry.label(m1),
                    "method_2": m2,
                    "label_2": registry.label(m2),
                    "criterion": crit,
                    "aggregation": how,
                    "n": n,
                    "wins": c["win"],
                    "ties": c["tie"],
                    "losses": c["loss"],
                    "win_rate": c["win"] / n,
                    "tie_rate": c["tie"] / n,
                    "loss_rate": c["loss"] / n,
                    "p_value": sign_test(c["win"], c["loss"]),
                    "n_raters": int(g["rater"].nunique()),
                    "n_questions": int(g["question"].nunique()),
                }
            )
    return HumanEvalScores(pd.DataFrame(rows), agreement(judged), judged)


__all__ = [
    "CHOICES",
    "CRITERIA",
    "Comparisons",
    "HumanEvalScores",
    "OUTCOMES",
    "agreement",
    "build_comparisons",
    "context_texts",
    "export_human_eval",
    "fleiss_kappa",
    "judgements",
    "score_human_eval",
    "sheet_html",
    "sign_test",
    "target_texts",
]
