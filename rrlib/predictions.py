"""The predictions contract: what every method writes, whatever its kind.

Two tables, both in ``RUN_DIR/evaluate/``:

``predictions.parquet``
    One row per (method, K, seed, example): the like/dislike task (``task = like``: ``p_yes``
    in [0, 1]) and the rating task (``task = rating``: ``predicted_rating``, with the arg-max
    rating beside the expectation). LLM methods, baselines and hybrids all build their rows
    with :func:`like_rows` or :func:`rating_rows`, so the columns and checks are the same.
``rankings.parquet``
    One row per (method, K, seed, user, ranked item): top-k lists for the ranking task, built
    with :func:`ranking_rows`.

K = 0 means "not finetuned" (zero-shot methods and classical baselines). ``seed`` is the seed of
the K-shot sample and the training run (``SEEDS`` repeats them); single runs use ``SEED``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rrlib.errors import PredictionsError
from rrlib.io import write_parquet_atomic

TASKS = ("like", "rating")

PREDICTION_COLUMNS: dict[str, str] = {
    "method": "str: a name in rrlib.methods.registry",
    "k": "int: K-shot training examples (0 = not finetuned)",
    "seed": "int: seed of the K-shot sample and the training run",
    "task": "str: like | rating",
    "example_id": "str",
    "split": "str",
    "user_id": "str",
    "target_item_id": "str",
    "label": "int: 1 liked, 0 disliked (the true label)",
    "target_rating": "float: the true rating",
    "p_yes": "float in [0, 1]: probability of 'Yes' (liked); NaN for rating-task rows",
    "predicted_label": "int: p_yes >= 0.5 (like task) or predicted_rating > LIKE_THRESHOLD (rating task)",
    "predicted_rating": "float: expected rating (rating task); NaN for like-task rows",
    "rating_argmax": "float: the most probable rating (rating task); NaN otherwise",
    "generated_text": "str ('' when the method generates none)",
    "reasoning": "str ('' when the method gives none)",
    "format_ok": "bool: the output followed the answer format (always True for non-LLM methods)",
}
KEY = ["method", "k", "seed", "example_id"]
BLOCK = ["method", "k", "seed"]

RANKING_COLUMNS: dict[str, str] = {
    "method": "str",
    "k": "int",
    "seed": "int",
    "user_id": "str",
    "example_id": "str: the test example whose target is being retrieved",
    "item_id": "str: a ranked item",
    "rank": "int: 1 = top",
    "score": "float: the score the list is sorted by (higher first)",
    "retriever_score": "float: the candidate generator's score (ties of `score` are broken by it)",
    "is_target": "bool: the item is the user's held-out test target",
    "protocol": "str: how the candidate list was built (rrlib.methods.retrieval.PROTOCOLS; 'topn': a retriever's top-N alone)",
}
RANKING_BLOCK = ["method", "k", "seed", "protocol"]
RANKING_KEY = ["method", "k", "seed", "protocol", "user_id", "rank"]
LEGACY_PROTOCOL = "topn"  # rankings written before the protocols existed: a retriever's top-N, target maybe absent


def _text_column(values: Sequence[str] | None, n: int, name: str, method: str) -> list[str]:
    if values is None:
        return [""] * n
    values = ["" if v is None else str(v) for v in values]
    if len(values) != n:
        raise PredictionsError(f"{method}: {len(values)} {name} values for {n} examples.")
    return values


def _base(method: str, k: int, seed: int, task: str, examples: pd.DataFrame, n_scores: int) -> dict:
    if n_scores != len(examples):
        raise PredictionsError(f"{method}: {n_scores} scores for {len(examples)} examples.")
    n = len(examples)
    rating = (
        examples["target_rating"].astype(float).to_numpy()
        if "target_rating" in examples.columns
        else np.full(n, np.nan)
    )
    return {
        "method": [str(method)] * n,
        "k": np.full(n, int(k), dtype="int64"),
        "seed": np.full(n, int(seed), dtype="int64"),
        "task": [task] * n,
        "example_id": examples["example_id"].astype(str).to_numpy(),
        "split": examples["split"].astype(str).to_numpy(),
        "user_id": examples["user_id"].astype(str).to_numpy(),
        "target_item_id": examples["target_item_id"].astype(str).to_numpy(),
        "label": examples["label"].astype("int64").to_numpy(),
        "target_rating": rating,
    }


def like_rows(
    method: str,
    k: int,
    examples: pd.DataFrame,
    p_yes: Sequence[float] | np.ndarray,
    *,
    seed: int = 0,
    generated_text: Sequence[str] | None = None,
    reasoning: Sequence[str] | None = None,
    format_ok: Sequence[bool] | None = None,
) -> pd.DataFrame:
    """Like-task rows for ``examples`` (one per row, same order)."""
    p = np.asarray(p_yes, dtype=float)
    base = _base(method, k, seed, "like", examples, len(p))
    n = len(p)
    out = pd.DataFrame(
        {
            **base,
            "p_yes": p,
            "predicted_label": (p >= 0.5).astype("int64"),
            "predicted_rating": np.full(n, np.nan),
            "rating_argmax": np.full(n, np.nan),
            "generated_text": _text_column(generated_text, n, "generated_text", method),
            "reasoning": _text_column(reasoning, n, "reasoning", method),
            "format_ok": np.asarray(format_ok, dtype=bool) if format_ok is not None else np.ones(n, bool),
        }
    )
    return check(out, source=f"method {method} K={k}")


def rating_rows(
    method: str,
    k: int,
    examples: pd.DataFrame,
    predicted_rating: Sequence[float] | np.ndarray,
    *,
    like_threshold: float,
    rating_argmax: Sequence[float] | np.ndarray | None = None,
    seed: int = 0,
    generated_text: Sequence[str] | None = None,
    reasoning: Sequence[str] | None = None,
    format_ok: Sequence[bool] | None = None,
) -> pd.DataFrame:
    """Rating-task rows for ``examples``; ``predicted_label`` is ``predicted_rating > like_threshold``."""
    r = np.asarray(predicted_rating, dtype=float)
    base = _base(method, k, seed, "rating", examples, len(r))
    n = len(r)
    argmax = np.asarray(rating_argmax, dtype=float) if rating_argmax is not None else np.full(n, np.nan)
    if len(argmax) != n:
        raise PredictionsError(f"{method}: {len(argmax)} rating_argmax values for {n} examples.")
    out = pd.DataFrame(
        {
            **base,
            "p_yes": np.full(n, np.nan),
            "predicted_label": (r > float(like_threshold)).astype("int64"),
            "predicted_rating": r,
            "rating_argmax": argmax,
            "generated_text": _text_column(generated_text, n, "generated_text", method),
            "reasoning": _text_column(reasoning, n, "reasoning", method),
            "format_ok": np.asarray(format_ok, dtype=bool) if format_ok is not None else np.ones(n, bool),
        }
    )
    return check(out, source=f"method {method} K={k}")


def check(df: pd.DataFrame, source: str | Path = "predictions") -> pd.DataFrame:
    """Fail clearly when a predictions table lacks columns or holds impossible values."""
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise PredictionsError(
            f"{source}: predictions table lacks column(s) {missing}; every method must write "
            f"{list(PREDICTION_COLUMNS)} (build rows with rrlib.predictions.like_rows or "
            f"rating_rows)."
        )
    tasks = set(df["task"].astype(str).unique())
    if not tasks <= set(TASKS):
        raise PredictionsError(f"{source}: task must be one of {list(TASKS)}, found {sorted(tasks - set(TASKS))}.")
    like = (df["task"] == "like").to_numpy()
    p = pd.to_numeric(df["p_yes"], errors="coerce")
    bad = df.index[like & (p.isna() | (p < 0) | (p > 1)).to_numpy()]
    if len(bad):
        row = df.loc[bad[0]]
        raise PredictionsError(
            f"{source}: p_yes must be a number in [0, 1]; {len(bad)} row(s) are not, e.g. "
            f"method={row['method']} k={row['k']} example_id={row['example_id']} "
            f"p_yes={row['p_yes']!r}."
        )
    r = pd.to_numeric(df["predicted_rating"], errors="coerce")
    bad = df.index[~like & ~np.isfinite(r.to_numpy(dtype=float))]
    if len(bad):
        row = df.loc[bad[0]]
        raise PredictionsError(
            f"{source}: rating-task rows need a finite predicted_rating; {len(bad)} row(s) lack "
            f"one, e.g. method={row['method']} example_id={row['example_id']}."
        )
    labels = set(pd.to_numeric(df["label"], errors="coerce").dropna().astype(int).unique())
    if not labels <= {0, 1} or df["label"].isna().any():
        raise PredictionsError(f"{source}: label must be 0 or 1, found {sorted(labels)} (or missing values).")
    dup = df.duplicated(KEY)
    if dup.any():
        row = df[dup].iloc[0]
        raise PredictionsError(
            f"{source}: {int(dup.sum())} duplicate (method, k, seed, example_id) row(s), e.g. "
            f"{row['method']}, K={row['k']}, seed={row['seed']}, {row['example_id']}."
        )
    return df


def _replace_blocks(existing: pd.DataFrame | None, new: pd.DataFrame, block: list[str]) -> pd.DataFrame:
    if existing is None or existing.empty:
        return new.reset_index(drop=True)
    keys = set(map(tuple, new[block].astype(str).to_numpy()))
    keep = ~pd.Series([tuple(row) in keys for row in existing[block].astype(str).to_numpy()], index=existing.index)
    return pd.concat([existing[keep], new], ignore_index=True)


def merge(existing: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """Replace the (method, k, seed) blocks present in ``new``; keep every other block."""
    return _replace_blocks(existing, new, BLOCK)


def save(df: pd.DataFrame, path: str | Path) -> Path:
    """Check, then write atomically (a crash mid-write leaves the previous file intact)."""
    return write_parquet_atomic(check(df, source=path)[list(PREDICTION_COLUMNS)], path)


def load(path: str | Path) -> pd.DataFrame | None:
    """The predictions table at ``path`` (checked), or None when there is none yet."""
    return _load(path, check)


def _load(path: str | Path, checker) -> pd.DataFrame | None:
    path = Path(path)
    return checker(pd.read_parquet(path), source=path) if path.exists() else None


def block(df: pd.DataFrame, method: str, k: int | None = None, seed: int | None = None) -> pd.DataFrame:
    """One method's rows (optionally one K and one seed)."""
    mask = df["method"] == method
    if k is not None:
        mask &= df["k"].astype(int) == int(k)
    if seed is not None:
        mask &= df["seed"].astype(int) == int(seed)
    return df[mask]


# ---------------------------------------------------------------------------------------
# Rankings
# ---------------------------------------------------------------------------------------
def ranking_rows(
    method: str, k: int, lists: pd.DataFrame, *, seed: int = 0, protocol: str = LEGACY_PROTOCOL
) -> pd.DataFrame:
    """Rankings rows from ``lists`` with columns user_id, example_id, item_id, score,
    retriever_score, is_target (any order) and optionally protocol (else ``protocol``): each
    (protocol, user)'s items are sorted by score, ties broken by retriever_score, then item id,
    and ranked from 1."""
    need = ["user_id", "example_id", "item_id", "score", "retriever_score", "is_target"]
    missing = [c for c in need if c not in lists.columns]
    if missing:
        raise PredictionsError(f"{method}: ranking lists lack column(s) {missing}.")
    df = lists[need].copy()
    df["protocol"] = lists["protocol"].astype(str).to_numpy() if "protocol" in lists.columns else str(protocol)
    df["user_id"] = df["user_id"].astype(str)
    df["item_id"] = df["item_id"].astype(str)
    df = df.sort_values(
        ["protocol", "user_id", "score", "retriever_score", "item_id"],
        ascending=[True, True, False, False, True],
        kind="stable",
    )
    df["rank"] = df.groupby(["protocol", "user_id"]).cumcount().astype("int64") + 1
    df.insert(0, "seed", int(seed))
    df.insert(0, "k", int(k))
    df.insert(0, "method", str(method))
    return check_rankings(df[list(RANKING_COLUMNS)].reset_index(drop=True), source=f"method {method}")


def check_rankings(df: pd.DataFrame, source: str | Path = "rankings") -> pd.DataFrame:
    missing = [c for c in RANKING_COLUMNS if c not in df.columns]
    if missing:
        raise PredictionsError(f"{source}: rankings table lacks column(s) {missing}.")
    if not np.isfinite(pd.to_numeric(df["score"], errors="coerce").to_numpy(dtype=float)).all():
        raise PredictionsError(f"{source}: every ranked item needs a finite score.")
    dup = df.duplicated(RANKING_KEY) | df.duplicated(RANKING_BLOCK + ["user_id", "item_id"])
    if dup.any():
        row = df[dup].iloc[0]
        raise PredictionsError(f"{source}: user {row['user_id']} of {row['method']} holds a rank or an item twice.")
    return df


def merge_rankings(existing: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """Replace the (method, k, seed, protocol) blocks present in ``new``; keep every other block."""
    return _replace_blocks(existing, new, RANKING_BLOCK)


def save_rankings(df: pd.DataFrame, path: str | Path) -> Path:
    return write_parquet_atomic(check_rankings(df, source=path)[list(RANKING_COLUMNS)], path)


def _check_rankings_file(df: pd.DataFrame, source: str | Path) -> pd.DataFrame:
    if "protocol" not in df.columns:  # written before the protocols existed
        df = df.assign(protocol=LEGACY_PROTOCOL)
    return check_rankings(df, source=source)


def load_rankings(path: str | Path) -> pd.DataFrame | None:
    return _load(path, _check_rankings_file)


__all__ = [
    "BLOCK",
    "KEY",
    "PREDICTION_COLUMNS",
    "LEGACY_PROTOCOL",
    "RANKING_BLOCK",
    "RANKING_COLUMNS",
    "TASKS",
    "block",
    "check",
    "check_rankings",
    "like_rows",
    "load",
    "load_rankings",
    "merge",
    "merge_rankings",
    "rating_rows",
    "ranking_rows",
    "save",
    "save_rankings",
]
