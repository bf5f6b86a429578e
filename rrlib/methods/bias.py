"""User and item bias baselines: on Amazon ratings most targets are liked and a user who liked
most of their past items likes the next one too, so these few numbers predict a lot. A method
that does not beat them has not learned anything beyond bias.

- ``user_like_rate``: the share of liked items in the user's history **window** shown to every
  LLM method (the example's ``history_liked``: the HISTORY_LEN interactions before the target),
  so the baseline sees no more than the LLMs do. ``scope="all_before"`` uses every interaction
  of the user strictly before the target instead. The target itself is never included.
- ``item_like_rate``: the share of liked interactions of the target item among the training
  interactions (every interaction before its user's valid target, see
  :func:`rrlib.data.sequences.training_interactions`). A train example's own target is left out of
  its item's count, so the logistic regression is not fitted on its own label.
- ``bias_logreg``: scikit-learn logistic regression on the logits of both rates, fitted on the
  train-split targets (the third-last interaction of every user).

Both rates are smoothed towards the training like-rate with a Beta prior of
``prior_strength`` pseudo-interactions, so an item seen once is not scored 0 or 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rrlib.data.sequences import target_positions, training_interactions, user_sequences
from rrlib.errors import MethodError
from rrlib.methods.registry import names
from rrlib.predictions import like_rows

#: pseudo-interactions of the Beta prior that pulls small counts towards the global like-rate
PRIOR_STRENGTH = 2.0
BIAS_METHODS = tuple(names(kind="bias"))


def smoothed_rate(
    likes: np.ndarray, counts: np.ndarray, prior_rate: float, prior_strength: float = PRIOR_STRENGTH
) -> np.ndarray:
    """(likes + a * prior) / (counts + a): the posterior mean under a Beta prior."""
    likes = np.asarray(likes, dtype=float)
    counts = np.asarray(counts, dtype=float)
    return (likes + prior_strength * prior_rate) / (counts + prior_strength)


def global_like_rate(interactions: pd.DataFrame) -> float:
    """Like-rate over the training interactions (the prior for both rates)."""
    train = training_interactions(interactions)
    if train.empty:
        raise ValueError("no training interactions: every user has fewer than 3 interactions.")
    return float(train["liked"].mean())


def user_like_rate(
    examples: pd.DataFrame,
    *,
    prior_rate: float,
    prior_strength: float = PRIOR_STRENGTH,
    scope: str = "history",
    interactions: pd.DataFrame | None = None,
) -> np.ndarray:
    """Smoothed like-rate of each example's user before its target (see module docstring)."""
    if scope == "history":
        if "history_liked" not in examples.columns:
            raise ValueError("examples lack column history_liked (see rrlib/data/schema.py).")
        liked = [np.asarray(h if h is not None else [], dtype=bool) for h in examples["history_liked"]]
        likes = np.array([h.sum() for h in liked], dtype=float)
        counts = np.array([len(h) for h in liked], dtype=float)
    elif scope == "all_before":
        if interactions is None:
            raise ValueError("user_like_rate(scope='all_before') needs the interactions table.")
        seqs = user_sequences(interactions)
        pos = target_positions(examples, seqs)
        likes = np.array([seqs[str(u)]["liked"].iloc[:p].sum() for u, p in zip(examples["user_id"], pos)], dtype=float)
        counts = pos.astype(float)
    else:
        raise ValueError(f"user_like_rate: scope must be 'history' or 'all_before', got {scope!r}.")
    return smoothed_rate(likes, counts, prior_rate, prior_strength)


def item_like_rate(
    examples: pd.DataFrame, interactions: pd.DataFrame, *, prior_rate: float, prior_strength: float = PRIOR_STRENGTH
) -> np.ndarray:
    """Smoothed like-rate of each example's target item in the training interactions."""
    train = training_interactions(interactions)
    stats = train.groupby("item_id")["liked"].agg(["sum", "count"])
    items = examples["target_item_id"].astype(str)
    likes = items.map(stats["sum"]).fillna(0).to_numpy(dtype=float)
    counts = items.map(stats["count"]).fillna(0).to_numpy(dtype=float)
    # A train target lies inside the training interactions: leave it out of its own item's rate.
    is_train = (examples["split"] == "train").to_numpy()
    labels = examples["label"].to_numpy(dtype=float)
    likes = likes - np.where(is_train, labels, 0.0)
    counts = counts - is_train.astype(float)
    if (counts < 0).any() or (likes < 0).any():
        raise ValueError(
            "item_like_rate: a train example's target is missing from the training "
            "interactions; examples and interactions come from different runs."
        )
    return smoothed_rate(likes, counts, prior_rate, prior_strength)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def bias_features(
    examples: pd.DataFrame,
    interactions: pd.DataFrame,
    *,
    prior_rate: float,
    user_scope: str = "history",
    prior_strength: float = PRIOR_STRENGTH,
) -> np.ndarray:
    u = user_like_rate(
        examples, prior_rate=prior_rate, prior_strength=prior_strength, scope=user_scope, interactions=interactions
    )
    i = item_like_rate(examples, interactions, prior_rate=prior_rate, prior_strength=prior_strength)
    return np.column_stack([u, i])


def bias_baselines(
    interactions: pd.DataFrame,
    examples: pd.DataFrame,
    eval_examples: pd.DataFrame,
    *,
    seed: int = 0,
    user_scope: str = "history",
    prior_strength: float = PRIOR_STRENGTH,
    methods: Sequence[str] = BIAS_METHODS,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predictions-table rows (K = 0) of the bias baselines for ``eval_examples``.

    ``examples`` is the whole examples table; its train split fits the logistic regression.
    Returns ``(rows, info)``; ``info`` holds the prior, the fitted coefficients and the training
    AUC-free facts worth reporting."""
    unknown = sorted(set(methods) - set(BIAS_METHODS))
    if unknown:
        raise MethodError(f"unknown bias baseline(s) {unknown}; choose from {list(BIAS_METHODS)}.")
    prior = global_like_rate(interactions)
    kw: dict[str, Any] = dict(prior_rate=prior, user_scope=user_scope, prior_strength=prior_strength)
    x_eval = bias_features(eval_examples, interactions, **kw)
    info: dict[str, Any] = {"prior_like_rate": prior, "prior_strength": prior_strength, "user_scope": user_scope}
    parts = []
    if "user_like_rate" in methods:
        parts.append(like_rows("user_like_rate", 0, eval_examples, x_eval[:, 0], seed=seed))
    if "item_like_rate" in methods:
        parts.append(like_rows("item_like_rate", 0, eval_examples, x_eval[:, 1], seed=seed))
    if "bias_logreg" in methods:
        train = examples[examples["split"] == "train"]
        y = train["label"].to_numpy(dtype=int)
        if len(np.unique(y)) < 2:
            raise ValueError(
                f"bias_logreg: the {len(train)} train-split targets hold a single class; "
                f"a logistic regression cannot be fitted (use more users)."
            )
        x_train = bias_features(train, interactions, **kw)
        model = make_pipeline(StandardScaler(), LogisticRegression(random_state=seed))
        model.fit(_logit(x_train), y)
        p = model.predict_proba(_logit(x_eval))[:, 1]
        parts.append(like_rows("bias_logreg", 0, eval_examples, p, seed=seed))
        lr = model[-1]
        info.update(
            logreg_coef={"user_like_rate": float(lr.coef_[0, 0]), "item_like_rate": float(lr.coef_[0, 1])},
            logreg_intercept=float(lr.intercept_[0]),
            logreg_n_train=int(len(train)),
        )
    return pd.concat(parts, ignore_index=True), info


def predict(methods: Sequence[str], tables, eval_examples: pd.DataFrame, cfg) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Registry entry point: the bias baselines ``methods`` on ``eval_examples`` (``tables``: the
    run's data tables; ``cfg``: the typed configuration)."""
    return bias_baselines(
        tables.interactions, tables.examples, eval_examples, seed=cfg.common.seed, methods=tuple(methods)
    )
