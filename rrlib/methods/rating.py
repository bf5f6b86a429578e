"""Rating-prediction baselines for EXP3RT's rating task: what an LLM that reads reviews must beat.

All are fitted on the **training interactions** only (every interaction before each user's
valid target, :func:`rrlib.data.sequences.training_interactions`), score the same evaluation
pairs (user, target item), and clip their predictions to the rating scale seen in training.

- ``global_mean``: mu, the mean training rating.
- ``user_mean`` / ``item_mean``: the user's (item's) mean training rating; mu for a user (item)
  with none.
- ``user_item_bias``: Koren's regularised baseline predictor mu + b_u + b_i (Koren 2010,
  "Factor in the neighbors", section 2.1), fitted by alternating least squares: each sweep
  sets b_i = sum(r - mu - b_u) / (reg_item + n_i) over the item's ratings, then
  b_u = sum(r - mu - b_i) / (reg_user + n_u). The shrinkage pulls rarely rated users and items
  towards mu. Unknown users or items get no bias.
- ``mf``: biased matrix factorisation, mu + b_u + b_i + p_u . q_i, trained by SGD
  (scikit-surprise's ``SVD``, Funk / Koren). The number of epochs is chosen by early stopping on
  the RMSE of the valid targets (second-last interaction of every user, never trained on):
  surprise's SGD visits the ratings in a fixed order from a seeded start, so a fit of E epochs is
  the same model as the first E epochs of a longer fit, and the checkpoints are exact.

Predictions for examples whose target lies inside the training interactions (the train split)
would be in-sample; they are refused (:class:`rrlib.errors.MethodError`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from rrlib.data.sequences import target_positions, training_cutoffs, training_interactions, user_sequences
from rrlib.errors import MethodError, ModelLoadError
from rrlib.methods.registry import names
from rrlib.predictions import rating_rows

RATING_METHODS = tuple(names(kind="rating_baseline"))


@dataclass(frozen=True)
class RatingConfig:
    reg_item: float = 10.0  # ALS shrinkage of b_i (pseudo-ratings at mu; surprise's default)
    reg_user: float = 15.0  # ALS shrinkage of b_u
    als_epochs: int = 10  # ALS sweeps (converges in a few)
    mf_factors: int = 32
    mf_lr: float = 0.01
    mf_reg: float = 0.05
    mf_max_epochs: int = 200
    mf_min_epochs: int = 20  # never stop before: the factors start to help only after the biases settle
    mf_patience: int = 3  # checkpoints without a valid-RMSE gain before stopping
    seed: int = 0

    @classmethod
    def from_config(cls, cfg, **overrides: Any) -> RatingConfig:
        """From the typed configuration (:class:`rrlib.config.params.Config`): the seed."""
        return cls(**{"seed": cfg.common.seed, **overrides})


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------
def rating_training_data(interactions: pd.DataFrame) -> pd.DataFrame:
    """user_id, item_id, rating of the training interactions; a MethodError when ratings are missing."""
    if "rating" not in interactions.columns:
        raise MethodError("rating baselines: the interactions table has no rating column (see rrlib/data/schema.py).")
    train = training_interactions(interactions)
    if train.empty:
        raise MethodError("rating baselines: no training interactions (every user has fewer than 3 interactions).")
    bad = ~np.isfinite(pd.to_numeric(train["rating"], errors="coerce").to_numpy(dtype=float))
    if bad.any():
        row = train[bad].iloc[0]
        raise MethodError(
            f"rating baselines: {int(bad.sum())} training interaction(s) have no numeric rating, e.g. "
            f"user {row['user_id']} item {row['item_id']} position {row['position']}."
        )
    return train[["user_id", "item_id", "rating"]].astype({"rating": float}).reset_index(drop=True)


def check_out_of_sample(interactions: pd.DataFrame, examples: pd.DataFrame, what: str) -> None:
    """Refuse examples whose target is a training interaction (a train-split target): a model
    fitted on it would be scored on its own label."""
    seqs = user_sequences(interactions)
    pos = target_positions(examples, seqs)
    cut = training_cutoffs(seqs)
    inside = [eid for eid, u, p in zip(examples["example_id"], examples["user_id"], pos) if p < cut[str(u)]]
    if inside:
        raise MethodError(
            f"{what}: {len(inside)} example(s) have their target inside the training interactions "
            f"(e.g. {inside[0]}), so they would be scored in-sample; score valid or test examples."
        )


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------
def _codes(values: pd.Series) -> tuple[np.ndarray, dict[str, int]]:
    cats = pd.Categorical(values.astype(str))
    return cats.codes.astype(np.int64), {c: n for n, c in enumerate(cats.categories)}


def baseline_als(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    *,
    reg_user: float,
    reg_item: float,
    epochs: int,
    n_users: int | None = None,
    n_items: int | None = None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Koren's baseline predictor by ALS on integer-coded (user, item, rating) triples:
    returns (mu, b_u, b_i). Item biases are updated first in each sweep, then user biases."""
    if reg_user < 0 or reg_item < 0 or epochs < 1:
        raise MethodError(
            f"baseline_als: reg_user={reg_user}, reg_item={reg_item} must be >= 0 and epochs={epochs} >= 1."
        )
    n_users = int(users.max()) + 1 if n_users is None else n_users
    n_items = int(items.max()) + 1 if n_items is None else n_items
    mu = float(ratings.mean())
    n_u = np.bincount(users, minlength=n_users).astype(float)
    n_i = np.bincount(items, minlength=n_items).astype(float)
    bu, bi = np.zeros(n_users), np.zeros(n_items)
    for _ in range(epochs):
        bi = np.bincount(items, ratings - mu - bu[users], minlength=n_items) / (reg_item + n_i)
        bu = np.bincount(users, ratings - mu - bi[items], minlength=n_users) / (reg_user + n_u)
    return mu, bu, bi


class _Means:
    def __init__(self, train: pd.DataFrame):
        self.mu = float(train["rating"].mean())
        self.user = train.groupby("user_id")["rating"].mean().to_dict()
        self.item = train.groupby("item_id")["rating"].mean().to_dict()


class _Bias:
    def __init__(self, train: pd.DataFrame, cfg: RatingConfig):
        u, self.users = _codes(train["user_id"])
        i, self.items = _codes(train["item_id"])
        self.mu, self.bu, self.bi = baseline_als(
            u,
            i,
            train["rating"].to_numpy(float),
            reg_user=cfg.reg_user,
            reg_item=cfg.reg_item,
            epochs=cfg.als_epochs,
            n_users=len(self.users),
            n_items=len(self.items),
        )

    def predict(self, users: Sequence[str], items: Sequence[str]) -> np.ndarray:
        bu = np.array([self.bu[self.users[u]] if u in self.users else 0.0 for u in users])
        bi = np.array([self.bi[self.items[i]] if i in self.items else 0.0 for i in items])
        return self.mu + bu + bi


def _surprise():
    try:
        import surprise
    except ImportError as e:  # a dependency of the project: a broken environment, not a user error
        raise ModelLoadError(
            "the mf rating baseline needs scikit-surprise (a project dependency): pip install 'scikit-surprise==1.1.*'"
        ) from e
    return surprise


def svd_predict(algo, users: Sequence[str], items: Sequence[str]) -> np.ndarray:
    """mu + b_u + b_i + p_u . q_i of a fitted surprise ``SVD`` (biases only where known, as
    surprise's own estimate), unclipped."""
    ts = algo.trainset
    user_index = {ts.to_raw_uid(n): n for n in ts.all_users()}
    item_index = {ts.to_raw_iid(n): n for n in ts.all_items()}
    out = np.full(len(users), ts.global_mean, dtype=float)
    for n, (u, i) in enumerate(zip(users, items)):
        iu, ii = user_index.get(u), item_index.get(i)
        if iu is not None:
            out[n] += algo.bu[iu]
        if ii is not None:
            out[n] += algo.bi[ii]
        if iu is not None and ii is not None:
            out[n] += float(np.dot(algo.pu[iu], algo.qi[ii]))
    return out


def checkpoints(max_epochs: int, first: int = 5, ratio: float = 1.5) -> list[int]:
    """Epoch counts at which MF is evaluated: 5, 8, 11, 17, 25, ... (each fit restarts, so a
    geometric schedule keeps the total cost within a few times that of the final fit)."""
    out: list[int] = []
    e = float(first)
    while round(e) <= max_epochs:
        if not out or round(e) > out[-1]:
            out.append(int(round(e)))
        e *= ratio
    return out or [max_epochs]


def fit_mf(
    train: pd.DataFrame, valid: pd.DataFrame, cfg: RatingConfig, scale: tuple[float, float]
) -> tuple[Any, dict[str, Any]]:
    """Biased MF with early stopping on the RMSE of ``valid`` (user_id, item_id, rating)."""
    surprise = _surprise()
    if valid.empty:
        raise MethodError("mf: no valid targets for early stopping (the examples table has no valid split).")
    data = surprise.Dataset.load_from_df(train[["user_id", "item_id", "rating"]], surprise.Reader(rating_scale=scale))
    trainset = data.build_full_trainset()
    vu, vi = valid["user_id"].astype(str).tolist(), valid["item_id"].astype(str).tolist()
    vr = valid["rating"].to_numpy(dtype=float)
    curve, best, best_algo, bad = [], (math.inf, 0), None, 0
    for epochs in checkpoints(cfg.mf_max_epochs):
        algo = surprise.SVD(
            n_factors=cfg.mf_factors, n_epochs=epochs, lr_all=cfg.mf_lr, reg_all=cfg.mf_reg, random_state=cfg.seed
        )
        algo.fit(trainset)
        rmse = float(np.sqrt(np.mean((np.clip(svd_predict(algo, vu, vi), *scale) - vr) ** 2)))
        curve.append({"epoch": epochs, "valid_rmse": rmse})
        if rmse < best[0] - 1e-6:
            best, best_algo, bad = (rmse, epochs), algo, 0
        else:
            bad += 1
            if bad >= cfg.mf_patience and epochs >= cfg.mf_min_epochs:
                break
    return best_algo, {"best_epoch": best[1], "best_valid_rmse": best[0], "curve": curve}


# ---------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------
def _pairs(df: pd.DataFrame, item_col: str) -> tuple[list[str], list[str]]:
    return df["user_id"].astype(str).tolist(), df[item_col].astype(str).tolist()


def rating_baselines(
    interactions: pd.DataFrame,
    examples: pd.DataFrame,
    eval_examples: pd.DataFrame,
    *,
    like_threshold: float,
    cfg: RatingConfig = RatingConfig(),
    methods: Sequence[str] = RATING_METHODS,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predictions-table rows (task ``rating``, K = 0) of the rating baselines for ``eval_examples``
    and an info dict per method (fitted sizes, cold users/items, MF's early-stopping curve).
    ``examples`` (the whole table) gives MF its valid targets."""
    unknown = sorted(set(methods) - set(RATING_METHODS))
    if unknown:
        raise MethodError(f"unknown rating baseline(s) {unknown}; choose from {list(RATING_METHODS)}.")
    check_out_of_sample(interactions, eval_examples, "rating baselines")
    train = rating_training_data(interactions)
    scale = (float(train["rating"].min()), float(train["rating"].max()))
    users, items = _pairs(eval_examples, "target_item_id")
    means = _Means(train)
    common = {
        "n_train": len(train),
        "rating_scale": list(scale),
        "mu": means.mu,
        "n_eval": len(eval_examples),
        "cold_users": int(sum(u not in means.user for u in users)),
        "cold_items": int(sum(i not in means.item for i in items)),
    }
    info: dict[str, Any] = {}
    parts = []
    for name in methods:
        t = time.perf_counter()
        extra: dict[str, Any] = {}
        if name == "global_mean":
            pred = np.full(len(users), means.mu)
        elif name == "user_mean":
            pred = np.array([means.user.get(u, means.mu) for u in users])
        elif name == "item_mean":
            pred = np.array([means.item.get(i, means.mu) for i in items])
        elif name == "user_item_bias":
            bias = _Bias(train, cfg)
            pred = bias.predict(users, items)
            extra = {"reg_user": cfg.reg_user, "reg_item": cfg.reg_item, "als_epochs": cfg.als_epochs}
        else:  # mf
            valid_ex = examples[examples["split"] == "valid"]
            valid = pd.DataFrame(
                {
                    "user_id": valid_ex["user_id"].astype(str),
                    "item_id": valid_ex["target_item_id"].astype(str),
                    "rating": valid_ex["target_rating"].astype(float),
                }
            )
            algo, extra = fit_mf(train, valid, cfg, scale)
            pred = svd_predict(algo, users, items)
        pred = np.clip(pred, *scale)
        parts.append(rating_rows(name, 0, eval_examples, pred, like_threshold=like_threshold, seed=cfg.seed))
        info[name] = {"method": name, **common, **extra, "seconds": time.perf_counter() - t, "config": asdict(cfg)}
    return pd.concat(parts, ignore_index=True), info


def predict(methods: Sequence[str], tables, eval_examples: pd.DataFrame, cfg) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Registry entry point: the rating baselines ``methods`` on ``eval_examples``; the like
    threshold of ``predicted_label`` is LIKE_THRESHOLD."""
    return rating_baselines(
        tables.interactions,
        tables.examples,
        eval_examples,
        like_threshold=cfg.data.like_threshold,
        cfg=RatingConfig.from_config(cfg),
        methods=tuple(methods),
    )


__all__ = [
    "RATING_METHODS",
    "RatingConfig",
    "baseline_als",
    "check_out_of_sample",
    "fit_mf",
    "predict",
    "rating_baselines",
    "rating_training_data",
    "svd_predict",
]
