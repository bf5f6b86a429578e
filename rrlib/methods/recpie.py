"""RecPIE's discriminative half (Wang, Li & Chen 2025): SASRec with text fused into its user and
item representations, as a like/dislike classifier. Written from the paper's description (no
public code); the explainer that writes the user texts and its reward live in
:mod:`rrlib.finetune.rl`.

Architecture (``d`` = RECPIE_HIDDEN, ``t`` = 384-d unit sentence vectors from
:mod:`rrlib.llm.encoder`, frozen):

* **Item representation** of every item token (history steps and the target/query token):
  ``r_i = g * e_i + (1 - g) * p_i`` with ``p_i = LayerNorm(W_p t_i)`` (the item text projected
  to width d), ``g = sigmoid(W_g [e_i ; p_i] + b_g)`` (concatenation, then a per-dimension gate)
  and ``e_i`` the item-id embedding. An item without text keeps ``r_i = e_i``. The item text
  reaches items never seen in training, whose id embedding is the shared "unseen" one.
* **Sequence encoder**: SASRec of :mod:`rrlib.methods.sequential` unchanged (causal
  self-attention over ``r_i`` + liked/disliked + position, the target appended as the query
  token); its query output ``h`` is the user state given the history and the target.
* **User representation**: ``u = g * h + (1 - g) * q`` with ``q = LayerNorm(W_q t_user)`` and the
  same gate form over ``[h ; q]``; a target without available user text keeps ``u = h``.
* **Score**: ``logit = w . u + (M u) . r_target / sqrt(d) + b_item``; the bilinear term lets the
  user text meet the target's text (``M`` starts at zero, so the untrained head is SASRec's).

Ablations are the same model with a text switched off: ``recpie_no_text`` (neither),
``recpie_user_text``, ``recpie_item_text``, ``recpie_hybrid`` (both). ``recpie_rl`` is the
hybrid whose user texts are always the reward-tuned explainer's (the last RL round of
notebook 06, :mod:`rrlib.finetune.rl`), whatever RECPIE_USER_TEXT says; its predictions rows carry
the explanation shown as ``reasoning``.

**When a user text may be shown.** A user text is written from some of the user's
interactions; it is shown only for targets *after* all of them (``UserText.available_from``):
notebook 03's profile after its profile items, an explanation after the window the explainer
saw. Earlier training targets see "no text", so no training target is ever explained by a text
written from its own label, and the model learns both the with-text and the without-text case
(which the reward of :func:`explanation_gain` compares).

Training, splits, early stopping on validation AUC, seeding and the "unseen item" masking are
SASRec's (:func:`rrlib.methods.sequential.fit_early_stopped`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from rrlib.config.paths import RunPaths, resolve_path
from rrlib.errors import DataError, LeakageError, MethodError, ParamError
from rrlib.io import write_parquet_atomic
from rrlib.llm.encoder import default_encoder
from rrlib.methods.registry import names
from rrlib.methods.sequential import (
    SASRec,
    SeqBatch,
    SeqConfig,
    SequenceData,
    _predict,
    fit_early_stopped,
    single_thread,
)
from rrlib.predictions import PREDICTION_COLUMNS, like_rows
from rrlib.prompts.items import usable_text

HYBRID_METHODS = tuple(names(kind="hybrid"))
#: method -> (uses user text, uses item text)
VARIANTS: dict[str, tuple[bool, bool]] = {
    "recpie_no_text": (False, False),
    "recpie_user_text": (True, False),
    "recpie_item_text": (False, True),
    "recpie_hybrid": (True, True),
    "recpie_rl": (True, True),
}
#: methods whose user text is the explainer's whatever RECPIE_USER_TEXT says
EXPLAINED = ("recpie_rl",)
NO_TEXT = 0  # row 0 of both text tables is "no text"


def variant(method: str) -> tuple[bool, bool]:
    if method not in VARIANTS:
        raise MethodError(f"unknown RecPIE variant {method!r}; choose from {list(VARIANTS)}.")
    return VARIANTS[method]


def hybrid_config(cfg, **overrides: Any) -> SeqConfig:
    """The recommender's settings from the typed configuration (RECPIE_* parameters)."""
    rc = cfg.recpie
    base = dict(
        max_len=rc.recpie_max_len,
        hidden=rc.recpie_hidden,
        epochs=rc.recpie_epochs,
        patience=rc.recpie_patience,
        lr=rc.recpie_learning_rate,
        seed=cfg.common.seed,
    )
    base.update(overrides)
    return SeqConfig(**base)


# ---------------------------------------------------------------------------------------
# Text features
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UserText:
    """A user's text and the first position (in the user's sequence) at which it may be shown:
    everything it was written from lies strictly before ``available_from``."""

    text: str
    available_from: int = 0


@dataclass
class TextFeatures:
    """Frozen sentence vectors of the user and item texts; row 0 of each table is "no text"."""

    dim: int
    user_row: dict[str, int]
    user_from: dict[str, int]
    user_table: np.ndarray  # (n_users_with_text + 1, dim)
    item_row: dict[str, int]
    item_table: np.ndarray  # (n_items_with_text + 1, dim)

    @classmethod
    def empty(cls, dim: int = 384) -> "TextFeatures":
        z = np.zeros((1, dim), dtype=np.float32)
        return cls(dim, {}, {}, z, {}, z.copy())

    @classmethod
    def encode(cls, user_texts: Mapping[str, UserText | str], item_texts: Mapping[str, str], encoder) -> "TextFeatures":
        """Embed the texts with ``encoder`` (:class:`rrlib.llm.encoder.TextEncoder` or anything with
        ``dim`` and ``encode(texts) -> (n, dim)``); blank texts count as missing."""
        users = {str(u): (t if isinstance(t, UserText) else UserText(str(t))) for u, t in user_texts.items()}
        users = {u: t for u, t in users.items() if isinstance(t.text, str) and t.text.strip()}
        bad = [u for u, t in users.items() if int(t.available_from) < 0]
        if bad:
            raise DataError(f"user text of {bad[0]} has a negative available_from ({len(bad)} such users).")
        items = {str(i): str(t) for i, t in item_texts.items() if isinstance(t, str) and t.strip()}
        dim = int(encoder.dim)
        u_ids, i_ids = sorted(users), sorted(items)
        u_vec = encoder.encode([users[u].text.strip() for u in u_ids]) if u_ids else np.zeros((0, dim))
        i_vec = encoder.encode([items[i].strip() for i in i_ids]) if i_ids else np.zeros((0, dim))
        z = np.zeros((1, dim), dtype=np.float32)
        return cls(
            dim,
            {u: n + 1 for n, u in enumerate(u_ids)},
            {u: int(users[u].available_from) for u in u_ids},
            np.vstack([z, np.asarray(u_vec, dtype=np.float32)]),
            {i: n + 1 for n, i in enumerate(i_ids)},
            np.vstack([z, np.asarray(i_vec, dtype=np.float32)]),
        )

    def with_users(self, vectors: Mapping[str, np.ndarray], available_from: Mapping[str, int]) -> "TextFeatures":
        """The same item texts with the user texts replaced by ``vectors`` (already embedded)."""
        ids = sorted(vectors)
        table = np.vstack(
            [np.zeros((1, self.dim), dtype=np.float32)] + [np.asarray(vectors[u], dtype=np.float32)[None] for u in ids]
        )
        return replace(
            self,
            user_row={u: n + 1 for n, u in enumerate(ids)},
            user_from={u: int(available_from[u]) for u in ids},
            user_table=table,
        )


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------
def _no_rows() -> torch.Tensor:
    return torch.zeros(0, dtype=torch.long)


@dataclass
class TextSeqBatch(SeqBatch):
    # always given (TextSequenceData builds them); defaults only because SeqBatch's fields have none
    items_text: torch.Tensor = field(default_factory=_no_rows)  # (N, L) item-text rows of the history steps
    target_text: torch.Tensor = field(default_factory=_no_rows)  # (N,) item-text row of the target
    user_text: torch.Tensor = field(default_factory=_no_rows)  # (N,) user-text row (0 when not yet available)


class TextSequenceData(SequenceData):
    """SASRec's sequences and index maps, plus which text row every step and target may see."""

    def __init__(
        self,
        interactions: pd.DataFrame,
        max_len: int,
        features: TextFeatures,
        *,
        use_user: bool,
        use_item: bool,
        train_users: Sequence[str] | None = None,
        held_out: Mapping[str, int] | None = None,
    ):
        super().__init__(interactions, max_len, train_users, held_out)
        self.features, self.use_user, self.use_item = features, bool(use_user), bool(use_item)
        rows = features.item_row if use_item else {}
        self._text_codes = {
            u: np.array([rows.get(i, NO_TEXT) for i in s["item_id"]], dtype=np.int64) for u, s in self.sequences.items()
        }

    def user_rows(self, users: Sequence[str], positions: Sequence[int]) -> np.ndarray:
        """Each target's user-text row: the user's text once available, else 0."""
        if not self.use_user:
            return np.zeros(len(users), dtype=np.int64)
        f = self.features
        return np.array(
            [
                f.user_row.get(u, NO_TEXT) if p >= f.user_from.get(u, math.inf) else NO_TEXT
                for u, p in zip(users, positions)
            ],
            dtype=np.int64,
        )

    def tensors(self, users: list[str], positions: list[int], user_rows: np.ndarray | None = None) -> TextSeqBatch:
        base = super().tensors(users, positions)
        hist, at = self.windows(users, positions, self._text_codes)
        rows = self.user_rows(users, positions) if user_rows is None else np.asarray(user_rows, dtype=np.int64)
        return TextSeqBatch(
            base.items,
            base.feedback,
            base.target,
            base.user,
            base.label,
            torch.from_numpy(hist),
            torch.from_numpy(at),
            torch.from_numpy(rows),
        )

    def text_coverage(self, users: Sequence[str], positions: Sequence[int]) -> dict[str, float]:
        b = self.tensors(list(users), list(positions))
        n = max(len(b), 1)
        return {
            "user_text": float((b.user_text != NO_TEXT).sum()) / n,
            "target_item_text": float((b.target_text != NO_TEXT).sum()) / n,
        }


# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------
class GatedFusion(nn.Module):
    """``g * a + (1 - g) * LayerNorm(W t)``, ``g = sigmoid(W_g [a ; LayerNorm(W t)])``; where
    ``has`` is False the input ``a`` passes unchanged."""

    def __init__(self, d: int, text_dim: int, dropout: float):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(text_dim, d), nn.LayerNorm(d), nn.Dropout(dropout))
        self.gate = nn.Linear(2 * d, d)

    def forward(self, a: torch.Tensor, t: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
        p = self.proj(t)
        g = torch.sigmoid(self.gate(torch.cat([a, p], dim=-1)))
        return torch.where(has.unsqueeze(-1), g * a + (1 - g) * p, a)


class RecPIE(SASRec):
    """SASRec with gated text fusion into the item and user representations (module docstring)."""

    item_text: torch.Tensor  # buffers (register_buffer): the text-embedding tables
    user_text: torch.Tensor

    def __init__(self, n_items: int, cfg: SeqConfig, features: TextFeatures, use_user: bool, use_item: bool):
        super().__init__(n_items, cfg)
        d = cfg.hidden
        self.scale = 1.0 / math.sqrt(d)
        self.item_fusion = GatedFusion(d, features.dim, cfg.dropout) if use_item else None
        self.user_fusion = GatedFusion(d, features.dim, cfg.dropout) if use_user else None
        self.match = nn.Linear(d, d, bias=False)
        nn.init.zeros_(self.match.weight)
        # not in the state dict: the tables are rebuilt from the texts (and swapped for rewards)
        self.register_buffer("item_text", torch.from_numpy(features.item_table), persistent=False)
        self.register_buffer("user_text", torch.from_numpy(features.user_table), persistent=False)

    def set_user_table(self, table: np.ndarray) -> None:
        self.user_text = torch.as_tensor(np.asarray(table, dtype=np.float32))

    def token_items(self, b: SeqBatch) -> torch.Tensor:
        assert isinstance(b, TextSeqBatch), "RecPIE reads batches of TextSequenceData"
        e = super().token_items(b)
        if self.item_fusion is None:
            return e
        rows = torch.cat([b.items_text, b.target_text[:, None]], dim=1)
        return self.item_fusion(e, self.item_text[rows], rows != NO_TEXT)

    def forward(self, b: SeqBatch) -> torch.Tensor:
        assert isinstance(b, TextSeqBatch), "RecPIE reads batches of TextSequenceData"
        tokens = self.token_items(b)
        u = self.encode(b, tokens)
        if self.user_fusion is not None:
            u = self.user_fusion(u, self.user_text[b.user_text], b.user_text != NO_TEXT)
        match = (self.match(u) * tokens[:, -1]).sum(-1) * self.scale
        return self.out(u).squeeze(-1) + match + self.item_bias(b.target).squeeze(-1)


# ---------------------------------------------------------------------------------------
# Training and prediction
# ---------------------------------------------------------------------------------------
@dataclass
class FittedHybrid:
    """A trained RecPIE recommender with the data maps it was trained on."""

    method: str
    model: RecPIE
    data: TextSequenceData
    cfg: SeqConfig
    best_valid: float
    metric: str
    best_epoch: int
    curve: list[dict]
    seconds: float

    def predict(self, examples: pd.DataFrame) -> np.ndarray:
        with single_thread():
            return _predict(self.model, self.data.example_targets(examples))

    def info(self) -> dict[str, Any]:
        users, pos = self.data.training_positions()
        return {
            "method": self.method,
            "best_epoch": self.best_epoch,
            f"best_valid_{self.metric}": self.best_valid,
            "epochs_run": len(self.curve),
            "n_train_targets": len(users),
            "train_text_coverage": self.data.text_coverage(users, pos),
            "n_items": self.data.n_items - 2,
            "n_users": self.data.n_users - 2,
            "n_parameters": sum(p.numel() for p in self.model.parameters()),
            "seconds": self.seconds,
            "curve": self.curve,
            "config": asdict(self.cfg),
        }

    def state(self) -> dict[str, Any]:
        """What restores this model (with the same interactions and texts): weights and settings."""
        return {
            "method": self.method,
            "state_dict": self.model.state_dict(),
            "config": asdict(self.cfg),
            "best_valid": self.best_valid,
            "metric": self.metric,
            "best_epoch": self.best_epoch,
            "curve": self.curve,
            "seconds": self.seconds,
            "held_out": dict(self.data.held_out),
        }


def _valid_examples(examples: pd.DataFrame, method: str) -> pd.DataFrame:
    valid = examples[examples["split"] == "valid"]
    if valid.empty:
        raise DataError(f"{method}: the examples table has no valid split for early stopping.")
    return valid


def fit_hybrid(
    method: str,
    interactions: pd.DataFrame,
    examples: pd.DataFrame,
    features: TextFeatures,
    cfg: SeqConfig,
    *,
    train_users: Sequence[str] | None = None,
    held_out: Mapping[str, int] | None = None,
    progress: bool = True,
) -> FittedHybrid:
    """Train one RecPIE variant on the training interactions (of ``train_users``; a user's
    targets from its ``held_out`` position on are left out), early-stopped on the AUC of
    ``examples``' valid targets."""
    use_user, use_item = variant(method)
    with single_thread():
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed)
        data = TextSequenceData(
            interactions,
            cfg.max_len,
            features,
            use_user=use_user,
            use_item=use_item,
            train_users=train_users,
            held_out=held_out,
        )
        cfg = replace(cfg, max_len=data.max_len)
        train = data.training_targets()
        if len(train) == 0:
            raise DataError(f"{method}: no training interactions (every user needs at least 4).")
        valid = data.example_targets(_valid_examples(examples, method))
        model = RecPIE(data.n_items, cfg, features, use_user, use_item)
        fit = fit_early_stopped(model, train, valid, cfg, desc=f"{method} epochs", progress=progress)
    return FittedHybrid(
        method, model, data, cfg, fit.best, fit.metric, fit.best_epoch, fit.curve, time.perf_counter() - t0
    )


def restore_hybrid(
    state: Mapping[str, Any],
    interactions: pd.DataFrame,
    features: TextFeatures,
    train_users: Sequence[str] | None = None,
) -> FittedHybrid:
    """A model saved with :meth:`FittedHybrid.state`, rebuilt on the same interactions and texts
    (and the same held-out positions)."""
    method = state["method"]
    use_user, use_item = variant(method)
    cfg = SeqConfig(**state["config"])
    data = TextSequenceData(
        interactions,
        cfg.max_len,
        features,
        use_user=use_user,
        use_item=use_item,
        train_users=train_users,
        held_out=state.get("held_out"),
    )
    model = RecPIE(data.n_items, cfg, features, use_user, use_item)
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        raise DataError(
            f"saved {method} recommender does not fit these interactions (items or users changed): {str(e)[:300]}"
        ) from e
    model.eval()
    return FittedHybrid(
        method,
        model,
        data,
        cfg,
        state["best_valid"],
        state["metric"],
        state["best_epoch"],
        state["curve"],
        state["seconds"],
    )


def train_hybrid(
    method: str,
    interactions: pd.DataFrame,
    examples: pd.DataFrame,
    eval_examples: pd.DataFrame,
    cfg: SeqConfig,
    features: TextFeatures,
    *,
    train_users: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predictions-table rows (K = 0) of one RecPIE variant for ``eval_examples`` and its info."""
    fitted = fit_hybrid(method, interactions, examples, features, cfg, train_users=train_users, progress=progress)
    p = fitted.predict(eval_examples)
    info = fitted.info()
    info["eval_text_coverage"] = fitted.data.text_coverage(*fitted.data.example_positions(eval_examples))
    return like_rows(method, 0, eval_examples, p, seed=cfg.seed), info


# ---------------------------------------------------------------------------------------
# The reward: how much an explanation helps the recommender on held-out training targets
# ---------------------------------------------------------------------------------------
def reward_positions(data: SequenceData, user: str, available_from: int) -> list[int]:
    """The user's training targets an explanation written before ``available_from`` may be scored
    on: positions ``available_from <= p < `` the user's valid target (never valid or test)."""
    if user not in data.cutoffs:
        raise DataError(f"user {user} has no interactions; cannot score an explanation for them.")
    cut = data.cutoffs[user]
    positions = list(range(max(int(available_from), 1), cut))
    if any(p >= cut for p in positions):  # guards the range above against edits
        raise LeakageError(f"user {user}: a reward position reaches the valid target ({cut}).")
    return positions


def check_out_of_sample(data: SequenceData, user: str, positions: Sequence[int]) -> None:
    """Raise :class:`LeakageError` when any of ``positions`` is a training target of the model
    built on ``data``: the reward must be scored on targets its recommender never learned from
    (fit it with ``held_out`` = the user's first reward position, e.g. by cross-fitting)."""
    if not positions or user not in data.train_users:
        return
    trained = set(range(1, data.train_end.get(user, 0)))
    inside = sorted(trained.intersection(positions))
    if inside:
        raise LeakageError(
            f"user {user}: reward target(s) at position(s) {inside} are in the scoring recommender's training data "
            f"(it learned from positions 1..{data.train_end[user] - 1}); score the reward with a recommender fitted "
            f"with held_out={{{user!r}: {min(positions)}}} (rrlib.finetune.rl cross-fits one per fold of users)."
        )


def log_likelihood(
    fitted: FittedHybrid, users: Sequence[str], positions: Sequence[int], user_rows: np.ndarray
) -> np.ndarray:
    """log P(true label) of each (user, position) target with the given user-text rows."""
    b = fitted.data.tensors(list(users), list(positions), user_rows=user_rows)
    with single_thread(), torch.no_grad():
        fitted.model.eval()
        logit = fitted.model(b)
    y = b.label
    return (y * nn.functional.logsigmoid(logit) + (1 - y) * nn.functional.logsigmoid(-logit)).numpy()


def explanation_gain(
    fitted: FittedHybrid,
    users: Sequence[str],
    vectors: np.ndarray,
    available_from: Mapping[str, int],
    *,
    measure: str = "log_likelihood",
) -> np.ndarray:
    """Per explanation ``i`` (the embedded text ``vectors[i]`` of user ``users[i]``): the mean over
    the user's reward targets (:func:`reward_positions`) of the recommender's log-likelihood of the
    true label with the explanation minus without it (``measure="correct"``: the gain in the
    share of targets classified correctly at 0.5). Reads labels of training targets only, and
    only of targets ``fitted`` did not learn from (:func:`check_out_of_sample`: out of sample)."""
    if measure not in ("log_likelihood", "correct"):
        raise ParamError(f"explanation_gain: measure must be log_likelihood or correct, got {measure!r}.")
    if not fitted.data.use_user:
        raise MethodError(
            f"{fitted.method} uses no user text, so an explanation cannot change its predictions; "
            f"score rewards with recpie_user_text or recpie_hybrid."
        )
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape != (len(users), fitted.data.features.dim):
        raise ValueError(
            f"explanation_gain: {vectors.shape} vectors for {len(users)} users of dim {fitted.data.features.dim}."
        )
    rep_users, rep_pos, owner = [], [], []
    for i, u in enumerate(users):
        pos = reward_positions(fitted.data, str(u), available_from[str(u)])
        if not pos:
            raise DataError(
                f"user {u}: no training target after the explanation's window (available_from="
                f"{available_from[str(u)]}, valid target at {fitted.data.cutoffs[str(u)]}); keep "
                f"RECPIE_REWARD_TARGETS >= 1 and users with at least 4 interactions."
            )
        check_out_of_sample(fitted.data, str(u), pos)
        rep_users += [str(u)] * len(pos)
        rep_pos += pos
        owner += [i] * len(pos)
    owner_arr = np.asarray(owner)
    saved = fitted.model.user_text
    try:
        # row i + 1 holds candidate i; row 0 is "no text"
        fitted.model.set_user_table(np.vstack([np.zeros((1, vectors.shape[1]), np.float32), vectors]))
        with_text = log_likelihood(fitted, rep_users, rep_pos, owner_arr + 1)
        without = log_likelihood(fitted, rep_users, rep_pos, np.zeros(len(rep_pos), dtype=np.int64))
    finally:
        fitted.model.user_text = saved
    if measure == "correct":
        with_text, without = (with_text > math.log(0.5)).astype(float), (without > math.log(0.5)).astype(float)
    gain = with_text - without
    return np.bincount(owner_arr, weights=gain, minlength=len(users)) / np.bincount(owner_arr, minlength=len(users))


# ---------------------------------------------------------------------------------------
# Texts from the run folder
# ---------------------------------------------------------------------------------------
def profile_texts(profiles: pd.DataFrame, users: pd.DataFrame) -> dict[str, UserText]:
    """Notebook 03's usable profiles, each shown after its last profile item (users table)."""
    for col in ("user_id", "profile"):
        if col not in profiles.columns:
            raise DataError(f"user profiles table lacks column {col!r}; rerun 03_user_profiles.")
    if "profile_positions" not in users.columns:
        raise DataError("users table lacks profile_positions; rerun 01_data_prep.")
    last = {
        str(u): (max(int(x) for x in p) if p is not None and len(p) else None)
        for u, p in zip(users["user_id"], users["profile_positions"])
    }
    status = profiles["status"] if "status" in profiles.columns else ["ok"] * len(profiles)
    source = profiles["source"] if "source" in profiles.columns else ["generated"] * len(profiles)
    out = {}
    for u, text, s, src in zip(profiles["user_id"].astype(str), profiles["profile"], status, source):
        if not usable_text(text, s) or src == "no_history":
            continue
        if u not in last:
            raise DataError(
                f"user profiles table holds user {u}, who is not in the users table; the profiles come "
                f"from another run — rerun 03_user_profiles."
            )
        seen_until = last[u]
        if seen_until is None:
            continue  # a profile without profile items (imported): its source window is unknown, never shown
        out[u] = UserText(str(text).strip(), seen_until + 1)
    return out


def explanation_texts(table: pd.DataFrame, where: str = "explanations") -> dict[str, UserText]:
    """The explainer's texts (columns user_id, explanation, available_from)."""
    need = ["user_id", "explanation", "available_from"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise DataError(f"{where} lacks column(s) {missing}; it is written by rrlib.finetune.rl.")
    return {
        str(u): UserText(str(t), int(a))
        for u, t, a in zip(table["user_id"], table["explanation"], table["available_from"])
        if isinstance(t, str) and t.strip()
    }


def item_texts_from(items: pd.DataFrame, descriptions: pd.DataFrame | None, source: str) -> dict[str, str]:
    """Item texts: notebook 02's usable descriptions, or title + attributes."""
    if source == "description":
        if descriptions is None:
            raise DataError("RECPIE_ITEM_TEXT is 'description' but no descriptions table was given.")
        status = descriptions["status"] if "status" in descriptions.columns else ["ok"] * len(descriptions)
        return {
            str(i): str(t).strip()
            for i, t, s in zip(descriptions["item_id"], descriptions["description"], status)
            if usable_text(t, s)
        }
    if source == "title":
        attrs = items["attributes"] if "attributes" in items.columns else [""] * len(items)
        return {
            str(i): " ".join(x for x in (str(t or ""), str(a or "")) if x.strip())
            for i, t, a in zip(items["item_id"], items["title"], attrs)
        }
    raise ParamError(f"RECPIE_ITEM_TEXT={source!r} names no item text (description, title).")


def run_texts(paths, tables, user_source: str, item_source: str) -> tuple[dict[str, UserText], dict[str, str]]:
    """The user and item texts RECPIE_USER_TEXT / RECPIE_ITEM_TEXT name, from the run folder."""
    users: dict[str, UserText] = {}
    if user_source == "profile":
        users = profile_texts(pd.read_parquet(paths.require(paths.user_profiles, "03_user_profiles")), tables.users)
    elif user_source == "explanations":
        path = paths.require(
            paths.explainer_texts, "06_finetune (its RecPIE explainer loop runs when EVAL_METHODS holds recpie_rl)"
        )
        users = explanation_texts(pd.read_parquet(path), str(path))
    items: dict[str, str] = {}
    if item_source != "none":
        desc = (
            pd.read_parquet(paths.require(paths.item_descriptions, "02_item_descriptions"))
            if item_source == "description"
            else None
        )
        items = item_texts_from(tables.items, desc, item_source)
    return users, items


def user_source(method: str, cfg) -> str:
    """Where ``method``'s user text comes from: 'explanations' for :data:`EXPLAINED` methods,
    RECPIE_USER_TEXT for the other user-text variants, 'none' for the rest."""
    if not variant(method)[0]:
        return "none"
    return "explanations" if method in EXPLAINED else cfg.recpie.recpie_user_text


def run_features(methods: Sequence[str], tables, cfg, paths=None, encoder=None) -> dict[str, TextFeatures]:
    """The text features of each method (user texts per :func:`user_source`, item texts per
    RECPIE_ITEM_TEXT), embedded once per user-text source; read from RUN_DIR (or ``paths``)."""
    rc = cfg.recpie
    need_user = [m for m in methods if variant(m)[0] and m not in EXPLAINED]
    need_item = [m for m in methods if variant(m)[1]]
    if need_user and rc.recpie_user_text == "none":
        raise ParamError(f"{need_user} fuse a user text but RECPIE_USER_TEXT is 'none'.")
    if need_item and rc.recpie_item_text == "none":
        raise ParamError(f"{need_item} fuse an item text but RECPIE_ITEM_TEXT is 'none'.")
    if encoder is None:
        encoder = default_encoder(resolve_path(cfg.common.cache_dir))
    paths = paths if paths is not None else RunPaths.of(cfg.common.run_dir, create=False)
    item_source = rc.recpie_item_text if need_item else "none"
    items = run_texts(paths, tables, "none", item_source)[1]
    by_source: dict[str, TextFeatures] = {}
    for src in dict.fromkeys(user_source(m, cfg) for m in methods):
        by_source[src] = TextFeatures.encode(run_texts(paths, tables, src, "none")[0], items, encoder)
    return {m: by_source[user_source(m, cfg)] for m in methods}


def score_shift(fitted: FittedHybrid, examples: pd.DataFrame, texts: Mapping[str, UserText]) -> pd.DataFrame:
    """Per example: the recommender's P(like) without the user text and with it (where it is
    shown), the text and the label; how the explanation moved the score."""
    users, pos = fitted.data.example_positions(examples)
    rows = fitted.data.user_rows(users, pos)
    with single_thread():
        b = fitted.data.tensors(users, pos, user_rows=rows)
        p_with = _predict(fitted.model, b)
        p_without = _predict(fitted.model, fitted.data.tensors(users, pos, user_rows=np.zeros_like(rows)))
    shown = rows != NO_TEXT
    return pd.DataFrame(
        {
            "method": fitted.method,
            "example_id": examples["example_id"].astype(str).to_numpy(),
            "user_id": [str(u) for u in users],
            "target_item_id": examples["target_item_id"].astype(str).to_numpy(),
            "label": examples["label"].to_numpy(dtype=int),
            "p_without_user_text": p_without,
            "p_with_user_text": p_with,
            "user_text_shown": shown,
            "user_text": [texts[u].text if s and u in texts else "" for u, s in zip(users, shown)],
        }
    )


def predict(methods: Sequence[str], tables, eval_examples: pd.DataFrame, cfg) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Registry entry point: train and score each RecPIE variant in ``methods``, with the texts
    RECPIE_USER_TEXT (``recpie_rl``: the explainer's) and RECPIE_ITEM_TEXT name (read from
    RUN_DIR). ``recpie_rl`` is scored only on the examples whose user has an explanation shown
    (info ``coverage``: explained of evaluated; notebook 06 explains every evaluated user it can,
    so the rows are all of them unless a user cannot be explained). Writes the per-example score shift of the user-text variants to
    ``RUN_DIR/recpie/score_shift.parquet`` (notebook 08 reads it)."""
    paths = RunPaths.of(cfg.common.run_dir, create=False)
    features = run_features(methods, tables, cfg, paths)
    seq_cfg = hybrid_config(cfg)
    parts, shifts, info = [], [], {}
    for m in methods:
        src = user_source(m, cfg)
        fitted = fit_hybrid(m, tables.interactions, tables.examples, features[m], seq_cfg)
        p = fitted.predict(eval_examples)
        info[m] = fitted.info()
        info[m]["eval_text_coverage"] = fitted.data.text_coverage(*fitted.data.example_positions(eval_examples))
        info[m]["text_sources"] = {"user": src, "item": cfg.recpie.recpie_item_text if variant(m)[1] else "none"}
        reasoning = None
        rows_of = eval_examples
        if variant(m)[0]:
            texts = run_texts(paths, tables, src, "none")[0]
            shift = score_shift(fitted, eval_examples, texts)
            shifts.append(shift)
            if m in EXPLAINED:
                # scored only where an explanation is shown (its coverage; the like table notes a
                # block smaller than the baseline's), and the explanation shown is its reasoning
                shown = shift["user_text_shown"].to_numpy(dtype=bool)
                info[m]["coverage"] = {"explained": int(shown.sum()), "evaluated": int(len(shown))}
                rows_of, p = eval_examples[shown], p[shown]
                reasoning = shift.loc[shown, "user_text"].tolist()
        if len(rows_of):
            parts.append(like_rows(m, 0, rows_of, p, seed=seq_cfg.seed, reasoning=reasoning))
    if shifts:
        old = pd.read_parquet(paths.explainer_score_shift) if paths.explainer_score_shift.is_file() else None
        new = pd.concat(shifts, ignore_index=True)
        if old is not None:
            new = pd.concat([old[~old["method"].isin(new["method"])], new], ignore_index=True)
        paths.explainer.mkdir(parents=True, exist_ok=True)
        write_parquet_atomic(new, paths.explainer_score_shift)
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(PREDICTION_COLUMNS))), info


__all__ = [
    "EXPLAINED",
    "FittedHybrid",
    "GatedFusion",
    "HYBRID_METHODS",
    "RecPIE",
    "TextFeatures",
    "TextSeqBatch",
    "TextSequenceData",
    "UserText",
    "VARIANTS",
    "check_out_of_sample",
    "explanation_gain",
    "explanation_texts",
    "fit_hybrid",
    "hybrid_config",
    "item_texts_from",
    "log_likelihood",
    "predict",
    "profile_texts",
    "restore_hybrid",
    "reward_positions",
    "run_features",
    "run_texts",
    "score_shift",
    "train_hybrid",
    "user_source",
    "variant",
]
