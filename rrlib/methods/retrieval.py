"""Top-k candidate generation (the first stage of EXP3RT's multi-stage pipeline) and reranking.

Retrievers propose ``n_candidates`` items for each evaluation example (one per user: the
user's held-out target is the item to find):

- ``popularity``: items by their number of training interactions (no personalisation: the
  floor any recommender must clear).
- ``bpr_mf``: matrix factorisation trained with the BPR pairwise loss (Rendle et al. 2009) by
  the ``implicit`` library (CPU, one thread, seeded, so runs repeat exactly). Every training
  interaction counts as a positive (``positives="liked"``: only liked ones). The number of epochs
  is chosen by early stopping on NDCG@``valid_k`` of the valid targets; the best checkpoint's
  factors produce the candidates.

**Ranking protocols** (:func:`candidate_lists`; every ranking table names its protocol). A ranking
user is a test user whose held-out item they **liked** (label 1): the relevant item is one the user
wanted, which is what the rerankers sort by. Users whose held-out item is disliked are not ranking
users (each user has a single held-out test item, so there is no other liked one to use instead).

- ``retrieved`` (a): the retriever's top ``n_candidates``; when the held-out item is not among
  them, it replaces the last one, with its own retriever score (so the retriever alone still ranks
  it last, and the retriever's HitRate@k below the list length is its full-catalogue HitRate@k).
- ``sampled`` (b): the held-out item plus ``n_candidates - 1`` items drawn uniformly from the
  training catalogue among those the user never rated (in any split), with a generator seeded by
  (seed, user): the same user gets the same negatives in any subsample of users.

Both lists have ``n_candidates`` items, scored by the retriever; the rerankers reorder exactly these
lists. An item the user interacted with before the target, or one absent from the training
interactions, gets the retriever's floor (below every other item of its list).

No leakage: both are fitted on the **training interactions** only (every interaction before
each user's valid target, :func:`rrlib.data.sequences.training_interactions`); the valid and
test interactions never reach a model. The items a user interacted with before the example's
target (for a test example: the training interactions and the valid one) are excluded from its
candidates, as in every leave-one-out evaluation; that filter reads the user's history before
the target only. Items that never occur in the training interactions cannot be proposed.

:func:`rerank` reorders candidate lists by any scorer (an LLM's expected rating, P(Yes)), ties
broken by the retriever's score; :func:`candidate_pairs` lists the (user, item) pairs a
reranker must score. Both write the rankings contract of :mod:`rrlib.predictions`.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rrlib.data.schema import eval_subset
from rrlib.data.sequences import target_positions, training_cutoffs, user_sequences
from rrlib.errors import MethodError, ModelLoadError, PredictionsError
from rrlib.methods.registry import names
from rrlib.predictions import ranking_rows

RETRIEVERS = tuple(names(kind="retriever"))
#: the candidate-list protocols of the ranking task (module docstring)
PROTOCOLS = ("retrieved", "sampled")
PROTOCOL_LABELS = {
    "retrieved": "(a) retriever's top-N, held-out item inserted",
    "sampled": "(b) held-out item + N-1 sampled unrated items",
    "topn": "retriever's top-N alone (held-out item may be absent)",
}
SCORE_CHUNK = 2048  # users scored at once (a dense users x items block)


@dataclass(frozen=True)
class RetrievalConfig:
    n_candidates: int = 20  # EXP3RT reranks the top 20 of a CF retriever
    positives: str = "all"  # all | liked: which training interactions are BPR positives
    bpr_factors: int = 64
    bpr_learning_rate: float = 0.05
    bpr_regularization: float = 0.001  # chosen on the valid NDCG of ML-1M and Musical Instruments
    bpr_max_epochs: int = 300
    bpr_check_every: int = 10  # epochs between two early-stopping checkpoints
    bpr_patience: int = 3  # checkpoints without a valid-NDCG gain before stopping
    valid_k: int = 20  # early stopping on NDCG@valid_k of the valid targets
    seed: int = 0

    def __post_init__(self) -> None:
        if self.positives not in ("all", "liked"):
            raise MethodError(f"RetrievalConfig.positives must be 'all' or 'liked', got {self.positives!r}.")
        if self.n_candidates < 1 or self.valid_k < 1:
            raise MethodError(
                f"RetrievalConfig: n_candidates={self.n_candidates} and valid_k={self.valid_k} must be >= 1."
            )

    @classmethod
    def from_config(cls, cfg, **overrides: Any) -> RetrievalConfig:
        """From the typed configuration (:class:`rrlib.config.params.Config`): the seed, and
        RANK_CANDIDATES where the configuration declares it."""
        base: dict[str, Any] = {"seed": cfg.common.seed}
        if hasattr(cfg, "exp3rt") and cfg.declared("RANK_CANDIDATES"):
            base["n_candidates"] = cfg.exp3rt.rank_candidates
        return cls(**{**base, **overrides})


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------
class InteractionIndex:
    """The training user x item matrix and, for any examples, what each user saw before its target."""

    def __init__(self, interactions: pd.DataFrame, positives: str = "all"):
        self.sequences = user_sequences(interactions)
        self.cutoffs = training_cutoffs(self.sequences)
        train = [(u, seq.iloc[: self.cutoffs[u]]) for u, seq in self.sequences.items() if self.cutoffs[u] > 0]
        if positives == "liked":
            train = [(u, s[s["liked"]]) for u, s in train]
        train = [(u, s) for u, s in train if len(s)]
        if not train:
            raise MethodError(
                "retrieval: no training interactions to learn from (every user has fewer than 3 "
                "interactions, or none is liked)."
            )
        items = sorted({i for _, s in train for i in s["item_id"]})
        self.item_ids = np.array(items, dtype=object)
        self.item_index = {i: n for n, i in enumerate(items)}
        self.user_ids = [u for u, _ in train]
        self.user_index = {u: n for n, u in enumerate(self.user_ids)}
        rows = np.concatenate([np.full(len(s), self.user_index[u]) for u, s in train])
        cols = np.concatenate([[self.item_index[i] for i in s["item_id"]] for _, s in train]).astype(np.int64)
        mat = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(self.user_ids), len(items))
        )
        mat.sum_duplicates()
        mat.data[:] = 1.0  # a repeated interaction is one positive
        self.matrix = mat
        self.n_interactions = int(sum(len(s) for _, s in train))

    def seen_before(self, examples: pd.DataFrame) -> list[np.ndarray]:
        """Per example, the item indices its user interacted with before the example's target."""
        pos = target_positions(examples, self.sequences)
        out = []
        for u, p in zip(examples["user_id"].astype(str), pos):
            before = self.sequences[u]["item_id"].iloc[:p]
            out.append(np.array(sorted({self.item_index[i] for i in before if i in self.item_index}), dtype=np.int64))
        return out


def _one_per_user(examples: pd.DataFrame, what: str) -> None:
    dup = examples["user_id"].astype(str).duplicated()
    if dup.any():
        u = examples.loc[dup.to_numpy(), "user_id"].iloc[0]
        raise MethodError(
            f"{what}: user {u} has several examples; a ranking holds one held-out target per user "
            f"(pass one split, e.g. the test examples)."
        )


def ranking_examples(examples: pd.DataFrame, n: int = 0, *, within: int = 0) -> pd.DataFrame:
    """The ranking users' test examples: the test examples whose held-out item the user liked
    (``label`` 1), in the seeded sample order (``sample_rank``); ``within``: among the first
    ``within`` test examples only (N_TEST; 0: every test example); ``n``: the first ``n`` of them
    (0: all). A larger ``n`` or ``within`` only adds users (nested)."""

    test = eval_subset(examples, "test", within)
    liked = test[test["label"].astype(int) == 1]
    return liked.head(n) if n else liked


# ---------------------------------------------------------------------------------------
# Top-N
# ---------------------------------------------------------------------------------------
def top_n(scores: np.ndarray, exclude: Sequence[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``scores`` (users x items), the ``n`` best item indices and their scores,
    excluded items left out; ties go to the lower item index (the item ids are sorted)."""
    scores = np.array(scores, dtype=float, copy=True)
    for r, ex in enumerate(exclude):
        scores[r, ex] = -np.inf
    n = min(n, scores.shape[1])
    # stable ordering: by score descending, then item index
    order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    return order, np.take_along_axis(scores, order, axis=1)


def _lists(examples: pd.DataFrame, index: InteractionIndex, order: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    keep = np.isfinite(values)  # fewer unseen items than n: that list is shorter
    rows = np.repeat(np.arange(len(examples)), order.shape[1])[keep.ravel()]
    items = index.item_ids[order[keep]].astype(str)
    targets = examples["target_item_id"].astype(str).to_numpy()[rows]
    return pd.DataFrame(
        {
            "user_id": examples["user_id"].astype(str).to_numpy()[rows],
            "example_id": examples["example_id"].astype(str).to_numpy()[rows],
            "item_id": items,
            "score": values[keep],
            "retriever_score": values[keep],
            "is_target": items == targets,
        }
    )


def _ndcg_at(order: np.ndarray, index: InteractionIndex, targets: Sequence[str]) -> float:
    gains = []
    for r, t in enumerate(targets):
        hit = np.flatnonzero(index.item_ids[order[r]] == t)
        gains.append(1.0 / np.log2(hit[0] + 2) if len(hit) else 0.0)
    return float(np.mean(gains)) if gains else 0.0


# ---------------------------------------------------------------------------------------
# Retrievers
# ---------------------------------------------------------------------------------------
def popularity_scores(index: InteractionIndex) -> np.ndarray:
    """Training interactions per item (users who interacted with it)."""
    return np.asarray(index.matrix.sum(axis=0)).ravel().astype(float)


def _implicit_bpr():
    try:
        from implicit.cpu.bpr import BayesianPersonalizedRanking
    except ImportError as e:  # a dependency of the project: a broken environment, not a user error
        raise ModelLoadError(
            "the bpr_mf retriever needs implicit (a project dependency): pip install 'implicit==0.7.*'"
        ) from e
    return BayesianPersonalizedRanking


def _user_scores(factors: tuple[np.ndarray, np.ndarray], users: np.ndarray) -> np.ndarray:
    # implicit keeps the item bias in the last item-factor column, against a constant 1 per user
    user_factors, item_factors = factors
    return user_factors[users].astype(float) @ item_factors.T.astype(float)


def fit_bpr(
    index: InteractionIndex, valid_examples: pd.DataFrame, cfg: RetrievalConfig
) -> tuple[tuple[np.ndarray, np.ndarray], dict]:
    """BPR-MF on ``index.matrix`` with early stopping on NDCG@valid_k of ``valid_examples``
    (their users' candidates exclude what they saw before the valid target). Returns the best
    checkpoint's (user factors, item factors) in ``index`` order and the training facts."""
    BPR = _implicit_bpr()
    valid = valid_examples[valid_examples["user_id"].astype(str).isin(index.user_index)]
    if valid.empty:
        raise MethodError(
            "bpr_mf: no valid targets for early stopping (the examples table has no valid split "
            "for the users with training interactions)."
        )
    v_users = np.array([index.user_index[str(u)] for u in valid["user_id"]])
    v_seen = index.seen_before(valid)
    v_targets = valid["target_item_id"].astype(str).tolist()
    model = BPR(
        factors=cfg.bpr_factors,
        learning_rate=cfg.bpr_learning_rate,
        regularization=cfg.bpr_regularization,
        iterations=cfg.bpr_check_every,
        num_threads=1,
        random_state=cfg.seed,
    )
    curve, best, best_epoch, best_factors, bad, epochs = [], -1.0, 0, None, 0, 0
    while epochs < cfg.bpr_max_epochs:
        model.fit(index.matrix, show_progress=False)  # continues from the current factors
        epochs += cfg.bpr_check_every
        factors = (model.user_factors, model.item_factors)
        order, _ = top_n(_user_scores(factors, v_users), v_seen, cfg.valid_k)
        ndcg = _ndcg_at(order, index, v_targets)
        curve.append({"epoch": epochs, f"valid_ndcg@{cfg.valid_k}": ndcg})
        if ndcg > best + 1e-9:
            best, best_epoch, bad = ndcg, epochs, 0
            best_factors = (np.array(model.user_factors, copy=True), np.array(model.item_factors, copy=True))
        else:
            bad += 1
            if bad >= cfg.bpr_patience:
                break
    assert best_factors is not None  # the first checkpoint always improves on -1
    return best_factors, {
        "best_epoch": best_epoch,
        f"best_valid_ndcg@{cfg.valid_k}": best,
        "curve": curve,
        "n_valid": len(valid),
    }


class _Scorer:
    """A fitted retriever's scores of every training item for the evaluated users, a chunk of
    users at a time (a user without training interactions gets popularity)."""

    def __init__(
        self, method: str, index: InteractionIndex, examples: pd.DataFrame, users: Sequence[str], cfg: RetrievalConfig
    ):
        self.pop = popularity_scores(index)
        self.info: dict[str, Any] = {}
        self.factors: tuple[np.ndarray, np.ndarray] | None = None
        self.rows = np.array([index.user_index.get(u, -1) for u in users], dtype=np.int64)
        if method == "bpr_mf":
            self.factors, fit_info = fit_bpr(index, examples[examples["split"] == "valid"], cfg)
            self.info.update(fit_info)
            self.info["cold_users_popularity"] = int((self.rows < 0).sum())

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        scores = np.tile(self.pop, (len(idx), 1))
        if self.factors is not None:
            rows = self.rows[idx]
            known = rows >= 0
            if known.any():
                scores[known] = _user_scores(self.factors, rows[known])
        return scores


def _chunks(n: int) -> Iterator[np.ndarray]:
    for start in range(0, n, SCORE_CHUNK):
        yield np.arange(start, min(start + SCORE_CHUNK, n))


def _prepare(
    method: str, interactions: pd.DataFrame, eval_examples: pd.DataFrame, cfg: RetrievalConfig
) -> tuple[InteractionIndex, list[np.ndarray], dict[str, Any]]:
    if method not in RETRIEVERS:
        raise MethodError(f"unknown retriever {method!r}; choose from {list(RETRIEVERS)}.")
    _one_per_user(eval_examples, method)
    index = InteractionIndex(interactions, cfg.positives)
    # Same check as the rating baselines: a target inside the training data would be scored in-sample.
    pos = target_positions(eval_examples, index.sequences)
    inside = [
        e for e, u, p in zip(eval_examples["example_id"], eval_examples["user_id"], pos) if p < index.cutoffs[str(u)]
    ]
    if inside:
        raise MethodError(
            f"{method}: {len(inside)} example(s) have their target inside the training interactions "
            f"(e.g. {inside[0]}); retrieve for valid or test examples."
        )
    seen = index.seen_before(eval_examples)
    targets = eval_examples["target_item_id"].astype(str).tolist()
    info: dict[str, Any] = {
        "method": method,
        "n_users_train": len(index.user_ids),
        "n_items": len(index.item_ids),
        "n_train_interactions": index.n_interactions,
        "n_eval": len(eval_examples),
        "targets_not_in_training_items": int(sum(t not in index.item_index for t in targets)),
        "targets_seen_before": int(sum(index.item_index.get(t, -1) in s for t, s in zip(targets, seen))),
    }
    return index, seen, info


def retrieve(
    method: str,
    interactions: pd.DataFrame,
    examples: pd.DataFrame,
    eval_examples: pd.DataFrame,
    cfg: RetrievalConfig = RetrievalConfig(),
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The retriever's own top-``n_candidates`` for ``eval_examples`` (one per user; the held-out
    item may be absent): columns user_id, example_id, item_id, score (= retriever_score),
    retriever_score, is_target; and an info dict (sizes, how many targets cannot be retrieved,
    BPR's early-stopping curve). :func:`candidate_lists` builds the ranking protocols' lists."""
    t0 = time.perf_counter()
    index, seen, info = _prepare(method, interactions, eval_examples, cfg)
    scorer = _Scorer(method, index, examples, eval_examples["user_id"].astype(str).tolist(), cfg)
    info.update(scorer.info)
    parts = []
    for idx in _chunks(len(eval_examples)):
        order, values = top_n(scorer(idx), [seen[i] for i in idx], cfg.n_candidates)
        parts.append(_lists(eval_examples.iloc[idx], index, order, values))
    lists = pd.concat(parts, ignore_index=True)
    info.update(
        targets_in_candidates=int(lists["is_target"].sum()),
        n_candidates=cfg.n_candidates,
        seconds=time.perf_counter() - t0,
        config=asdict(cfg),
    )
    return lists, info


def _user_seed(seed: int, user: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(str(user).encode())])


def candidate_lists(
    method: str,
    interactions: pd.DataFrame,
    examples: pd.DataFrame,
    eval_examples: pd.DataFrame,
    cfg: RetrievalConfig = RetrievalConfig(),
    protocols: Sequence[str] = PROTOCOLS,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The candidate lists of each ranking protocol (module docstring) for ``eval_examples`` (one
    per user; pass :func:`ranking_examples`): columns protocol, user_id, example_id, item_id,
    score (= retriever_score), retriever_score, is_target; every list holds the held-out item.
    The info dict counts, per protocol, the lists and how many held-out items were inserted."""
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise MethodError(f"ranking protocols {list(protocols)}: choose one or more of {list(PROTOCOLS)}.")
    if cfg.n_candidates < 2:
        raise MethodError("candidate_lists: n_candidates must be >= 2 (the held-out item and one other).")
    t0 = time.perf_counter()
    index, seen, info = _prepare(method, interactions, eval_examples, cfg)
    users = eval_examples["user_id"].astype(str).tolist()
    targets = eval_examples["target_item_id"].astype(str).tolist()
    scorer = _Scorer(method, index, examples, users, cfg)
    info.update(scorer.info)
    n_items = len(index.item_ids)
    rated = {u: {index.item_index[i] for i in index.sequences[u]["item_id"] if i in index.item_index} for u in users}
    rows: list[tuple[str, int, int, float]] = []  # (protocol, example row, item index or -1 for the target, score)
    counts = {p: {"lists": 0, "inserted": 0, "target_floor": 0, "short_lists": 0} for p in protocols}
    for idx in _chunks(len(users)):
        scores = scorer(idx)
        order, values = (
            top_n(scores, [seen[i] for i in idx], cfg.n_candidates) if "retrieved" in protocols else (None, None)
        )
        for r, e in enumerate(idx):
            t = index.item_index.get(targets[e], -1)
            t_free = t >= 0 and t not in set(seen[e].tolist())
            if "retrieved" in protocols:
                assert order is not None and values is not None
                keep = np.isfinite(values[r])
                items, vals = order[r][keep], values[r][keep]
                if t < 0 or t not in items:
                    items, vals = items[: cfg.n_candidates - 1], vals[: cfg.n_candidates - 1]
                    floor = float(vals.min()) - 1.0 if len(vals) else 0.0
                    rows.append(("retrieved", int(e), -1, float(scores[r, t]) if t_free else floor))
                    counts["retrieved"]["inserted"] += 1
                    counts["retrieved"]["target_floor"] += int(not t_free)
                rows += [("retrieved", int(e), int(i), float(v)) for i, v in zip(items, vals)]
                counts["retrieved"]["lists"] += 1
                counts["retrieved"]["short_lists"] += int(len(items) + (t < 0 or t not in items) < cfg.n_candidates)
            if "sampled" in protocols:
                pool = np.setdiff1d(
                    np.arange(n_items), np.fromiter(rated[users[e]], dtype=np.int64), assume_unique=False
                )
                take = min(cfg.n_candidates - 1, len(pool))
                neg = np.sort(_user_seed(cfg.seed, users[e]).choice(pool, size=take, replace=False))
                vals = scores[r, neg]
                floor = float(vals.min()) - 1.0 if len(vals) else 0.0
                rows.append(("sampled", int(e), -1, float(scores[r, t]) if t_free else floor))
                rows += [("sampled", int(e), int(i), float(v)) for i, v in zip(neg, vals)]
                counts["sampled"]["lists"] += 1
                counts["sampled"]["inserted"] += 1
                counts["sampled"]["target_floor"] += int(not t_free)
                counts["sampled"]["short_lists"] += int(take + 1 < cfg.n_candidates)
    proto = [p for p, _, _, _ in rows]
    ex_rows = np.array([e for _, e, _, _ in rows], dtype=np.int64)
    item_idx = np.array([i for _, _, i, _ in rows], dtype=np.int64)
    tgt = np.array(targets, dtype=object)[ex_rows]
    items = np.where(item_idx >= 0, index.item_ids[np.maximum(item_idx, 0)], tgt).astype(str)
    values = np.array([v for _, _, _, v in rows], dtype=float)
    lists = pd.DataFrame(
        {
            "protocol": proto,
            "user_id": np.array(users, dtype=object)[ex_rows].astype(str),
            "example_id": eval_examples["example_id"].astype(str).to_numpy()[ex_rows],
            "item_id": items,
            "score": values,
            "retriever_score": values,
            "is_target": items == tgt.astype(str),
        }
    )
    info.update(
        protocols={
            p: {**c, "targets_in_topn": c["lists"] - c["inserted"] if p == "retrieved" else None}
            for p, c in counts.items()
        },
        n_candidates=cfg.n_candidates,
        seconds=time.perf_counter() - t0,
        config=asdict(cfg),
    )
    return lists, info


def predict(
    methods: Sequence[str], tables, eval_examples: pd.DataFrame, cfg, protocols: Sequence[str] | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Registry entry point: **rankings** rows (:func:`rrlib.predictions.ranking_rows`, K = 0) of
    each retriever in ``methods`` for ``eval_examples`` (the ranking users, :func:`ranking_examples`)
    under each ranking protocol (default: RANK_PROTOCOLS where declared, else both); they belong
    in ``rankings.parquet``, not in the predictions table."""
    rcfg = RetrievalConfig.from_config(cfg)
    if protocols is None:
        protocols = list(cfg.exp3rt.rank_protocols) if cfg.declared("RANK_PROTOCOLS") else list(PROTOCOLS)
    parts, info = [], {}
    for name in methods:
        lists, info[name] = candidate_lists(name, tables.interactions, tables.examples, eval_examples, rcfg, protocols)
        parts.append(ranking_rows(name, 0, lists, seed=rcfg.seed))
    return pd.concat(parts, ignore_index=True), info


# ---------------------------------------------------------------------------------------
# Reranking
# ---------------------------------------------------------------------------------------
def candidate_pairs(candidates: pd.DataFrame) -> pd.DataFrame:
    """The (user, item) pairs a reranker has to score: user_id, example_id, item_id,
    retriever_rank (1 = the retriever's top), one row per candidate."""
    need = ["user_id", "example_id", "item_id"]
    missing = [c for c in need if c not in candidates.columns]
    if missing:
        raise PredictionsError(f"candidate_pairs: the candidates lack column(s) {missing}.")
    out = candidates[need].astype(str).copy()
    rank = candidates["rank"] if "rank" in candidates.columns else candidates.groupby("user_id").cumcount() + 1
    out["retriever_rank"] = np.asarray(rank, dtype=int)
    return out.reset_index(drop=True)


Scores: TypeAlias = (
    Mapping[tuple[str, str], float] | pd.Series | pd.DataFrame | Callable[[list[str], list[str]], Sequence[float]]
)


def _lookup(scores: Scores, users: list[str], items: list[str]) -> np.ndarray:
    if callable(scores) and not isinstance(scores, (pd.Series, pd.DataFrame, Mapping)):
        return np.asarray(scores(users, items), dtype=float)
    if isinstance(scores, pd.DataFrame):
        missing = [c for c in ("user_id", "item_id", "score") if c not in scores.columns]
        if missing:
            raise PredictionsError(f"rerank: the score table lacks column(s) {missing}.")
        keys = zip(scores["user_id"].astype(str), scores["item_id"].astype(str))
        scores = dict(zip(keys, scores["score"].astype(float)))
    elif isinstance(scores, pd.Series):
        scores = {(str(u), str(i)): float(v) for (u, i), v in scores.items()}
    return np.array([scores.get((u, i), np.nan) for u, i in zip(users, items)], dtype=float)


def rerank(candidates: pd.DataFrame, scores: Scores, *, method: str, k: int = 0, seed: int = 0) -> pd.DataFrame:
    """Reorder every user's candidates by ``scores`` (higher first), ties broken by the
    retriever's score and then item id; returns rankings rows for ``method`` (same users and
    items, new ranks). ``candidates``: a retriever's rankings rows (or lists with user_id,
    example_id, item_id, retriever_score, is_target). ``scores``: a mapping (user_id, item_id) ->
    score, a Series with that index, a DataFrame with user_id, item_id, score, or a function
    ``(user_ids, item_ids) -> scores``. Every candidate needs a finite score."""
    need = ["user_id", "example_id", "item_id", "retriever_score", "is_target"]
    missing = [c for c in need if c not in candidates.columns]
    if missing:
        raise PredictionsError(
            f"rerank ({method}): the candidates lack column(s) {missing}; pass a retriever's rankings rows."
        )
    users = candidates["user_id"].astype(str).tolist()
    items = candidates["item_id"].astype(str).tolist()
    new = _lookup(scores, users, items)
    if len(new) != len(users):
        raise PredictionsError(f"rerank ({method}): the scorer returned {len(new)} scores for {len(users)} candidates.")
    bad = ~np.isfinite(new)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise PredictionsError(
            f"rerank ({method}): {int(bad.sum())} of {len(new)} candidates have no finite score, "
            f"e.g. user {users[first]} item {items[first]}; score every pair of "
            f"candidate_pairs(candidates)."
        )
    lists = candidates[need + (["protocol"] if "protocol" in candidates.columns else [])].copy()
    lists["score"] = new
    return ranking_rows(method, k, lists, seed=seed)


__all__ = [
    "InteractionIndex",
    "PROTOCOLS",
    "PROTOCOL_LABELS",
    "RETRIEVERS",
    "RetrievalConfig",
    "candidate_lists",
    "candidate_pairs",
    "fit_bpr",
    "popularity_scores",
    "predict",
    "ranking_examples",
    "rerank",
    "retrieve",
    "top_n",
]
