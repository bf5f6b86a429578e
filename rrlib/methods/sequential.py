"""SASRec (Kang & McAuley 2018) and Caser (Tang & Wang 2018) as like/dislike classifiers.

As in the paper's appendix, both end in a sigmoid instead of a softmax over items and are
trained with binary cross-entropy on **all** training interactions: every position of every
user's sequence before the valid target is a training target (given the items before it and
whether each was liked, is this item liked?). Each history step is encoded as
item embedding + liked/disliked embedding (+ position for SASRec).

- SASRec: causal self-attention over the history with the target item appended as a query
  token (its liked/disliked slot holds a "?" embedding); the query token's output, plus an item
  bias, gives the logit.
- Caser: the last ``caser_window`` steps form an L x d "image"; horizontal filters of every
  height 1..L (max-pooled) and vertical filters over the whole window give z, which is joined
  with a user embedding and scored against the target's output embedding plus an item bias
  (Caser's own prediction layer).

Early stopping on the AUC of the valid targets (second-last interaction of every user); the
best epoch's weights score the evaluation examples, whose history runs up to their target
(for test: including the valid interaction, which precedes it). Seeded; seconds on CPU for the
embedded dataset.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from rrlib.config.paths import resolve_path
from rrlib.data.sequences import target_positions, training_cutoffs, user_sequences
from rrlib.errors import DataError, MethodError
from rrlib.methods.fit_cache import cached_fit, frame_fingerprint
from rrlib.methods.registry import names
from rrlib.predictions import like_rows

SEQUENTIAL_METHODS = tuple(names(kind="sequential"))
PAD, OOV = 0, 1  # item/user index 0 pads, 1 stands for "not seen in training"
FB_PAD, FB_DISLIKED, FB_LIKED, FB_QUERY = 0, 1, 2, 3


@dataclass(frozen=True)
class SeqConfig:
    max_len: int = 50  # history steps fed to SASRec
    hidden: int = 64  # embedding / model width
    epochs: int = 50  # at most
    patience: int = 5  # epochs without a valid-AUC gain before stopping
    lr: float = 3e-3
    weight_decay: float = 1e-5
    batch_size: int = 128
    dropout: float = 0.2
    unseen_item_rate: float = 0.1  # training items replaced by the "unseen" index (see _hide_items)
    n_heads: int = 2  # SASRec
    n_layers: int = 2  # SASRec
    caser_window: int = 5  # Caser's L (its paper's default)
    caser_h_filters: int = 16  # per height
    caser_v_filters: int = 4
    seed: int = 0

    @classmethod
    def from_config(cls, cfg, **overrides: Any) -> "SeqConfig":
        """From the typed configuration (:class:`rrlib.config.params.Config`)."""
        ev = cfg.evaluate
        base = dict(
            max_len=ev.seq_max_len,
            hidden=ev.seq_hidden,
            epochs=ev.seq_epochs,
            patience=ev.seq_patience,
            lr=ev.seq_learning_rate,
            batch_size=ev.seq_batch_size,
            seed=cfg.common.seed,
        )
        base.update(overrides)
        return cls(**base)


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------
@dataclass
class SeqBatch:
    items: torch.Tensor  # (N, L) history item indices, left-padded
    feedback: torch.Tensor  # (N, L) FB_* codes
    target: torch.Tensor  # (N,) target item index
    user: torch.Tensor  # (N,) user index
    label: torch.Tensor  # (N,) float 0/1

    def __len__(self) -> int:
        return len(self.target)

    def subset(self, idx) -> "SeqBatch":
        # every field is indexed by example, so subclasses with more fields (RecPIE's text codes) work too
        return replace(self, **{f.name: getattr(self, f.name)[idx] for f in fields(self)})


class SequenceData:
    """Index maps built from the training interactions and tensors for any set of targets.

    ``train_users`` (default: every user) restricts what is learned from to those users'
    training interactions (the data-efficiency curves); ``held_out`` (user -> position) keeps a
    user's training targets from that position on out of what is learned (RecPIE's cross-fitted
    reward scores them out of sample; :attr:`train_end` is where each user's learning stops).
    Every user's sequence stays available as the history of its evaluation targets."""

    def __init__(
        self,
        interactions: pd.DataFrame,
        max_len: int,
        train_users: Sequence[str] | None = None,
        held_out: Mapping[str, int] | None = None,
    ):
        self.sequences = user_sequences(interactions)
        # no wider than the longest history any target can have (saves padding compute)
        longest = max((len(s) - 1 for s in self.sequences.values()), default=1)
        self.max_len = max(1, min(int(max_len), longest))
        self.cutoffs = training_cutoffs(self.sequences)
        if train_users is None:
            self.train_users = set(self.sequences)
        else:
            self.train_users = {str(u) for u in train_users}
            unknown = sorted(self.train_users - set(self.sequences))
            if unknown:
                raise DataError(f"train_users names {len(unknown)} user(s) without interactions, e.g. {unknown[:3]}.")
        self.held_out = {str(u): int(p) for u, p in (held_out or {}).items()}
        unknown = sorted(set(self.held_out) - set(self.sequences))
        if unknown:
            raise DataError(f"held_out names {len(unknown)} user(s) without interactions, e.g. {unknown[:3]}.")
        self.train_end = {u: max(0, min(c, self.held_out.get(u, c))) for u, c in self.cutoffs.items()}
        learn = {u: c for u, c in self.train_end.items() if u in self.train_users}
        train_items = sorted({i for u, c in learn.items() for i in self.sequences[u]["item_id"].iloc[:c]})
        self.item_index = {item: n + 2 for n, item in enumerate(train_items)}
        self.user_index = {u: n + 2 for n, u in enumerate(sorted(u for u, c in learn.items() if c > 0))}
        self._codes = {
            u: (
                np.array([self.item_index.get(i, OOV) for i in s["item_id"]], dtype=np.int64),
                np.where(s["liked"].to_numpy(bool), FB_LIKED, FB_DISLIKED).astype(np.int64),
            )
            for u, s in self.sequences.items()
        }

    @property
    def n_items(self) -> int:
        return len(self.item_index) + 2

    @property
    def n_users(self) -> int:
        return len(self.user_index) + 2

    def windows(
        self, users: Sequence[str], positions: Sequence[int], codes: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """For each (user, position): the ``max_len`` codes of the steps before it (left-padded
        with 0) and the code at it. ``codes`` holds one array per user, aligned with its sequence."""
        n, L = len(users), self.max_len
        hist = np.zeros((n, L), dtype=np.int64)
        at = np.zeros(n, dtype=np.int64)
        for r, (u, p) in enumerate(zip(users, positions)):
            c = codes[u]
            start = max(0, p - L)
            h = p - start
            if h:
                hist[r, L - h :] = c[start:p]
            at[r] = c[p]
        return hist, at

    def tensors(self, users: list[str], positions: list[int]) -> SeqBatch:
        items, target = self.windows(users, positions, {u: c[0] for u, c in self._codes.items()})
        fb, fb_at = self.windows(users, positions, {u: c[1] for u, c in self._codes.items()})
        label = (fb_at == FB_LIKED).astype(np.float32)
        user = np.array([self.user_index.get(u, OOV) for u in users], dtype=np.int64)
        return SeqBatch(
            torch.from_numpy(items),
            torch.from_numpy(fb),
            torch.from_numpy(target),
            torch.from_numpy(user),
            torch.from_numpy(label),
        )

    def training_positions(self) -> tuple[list[str], list[int]]:
        """(user, position) of every training target: each position before the user's valid
        target (and before its ``held_out`` position) with at least one earlier interaction."""
        users, positions = [], []
        for u, cut in self.train_end.items():
            if u not in self.train_users:
                continue
            for p in range(1, cut):
                users.append(u)
                positions.append(p)
        return users, positions

    def training_targets(self) -> SeqBatch:
        """Every training position with at least one earlier interaction."""
        return self.tensors(*self.training_positions())

    def example_positions(self, examples: pd.DataFrame) -> tuple[list[str], list[int]]:
        pos = target_positions(examples, self.sequences)
        return [str(u) for u in examples["user_id"]], [int(p) for p in pos]

    def example_targets(self, examples: pd.DataFrame) -> SeqBatch:
        return self.tensors(*self.example_positions(examples))


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------
class SASRec(nn.Module):
    def __init__(self, n_items: int, cfg: SeqConfig):
        super().__init__()
        d = cfg.hidden
        if d % cfg.n_heads:
            raise ValueError(f"SEQ_HIDDEN={d} must be divisible by SASRec's {cfg.n_heads} attention heads.")
        self.n_heads = cfg.n_heads
        self.item = nn.Embedding(n_items, d, padding_idx=PAD)
        self.feedback = nn.Embedding(4, d, padding_idx=FB_PAD)
        self.pos = nn.Embedding(cfg.max_len + 1, d)
        self.drop = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(
            d, cfg.n_heads, dim_feedforward=d, dropout=cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.zeros_(self.item_bias.weight)

    def token_items(self, b: SeqBatch) -> torch.Tensor:
        """(N, L+1, d) item representations of the history steps and the target (query) token;
        subclasses fuse more into them (RecPIE: item text)."""
        return self.item(torch.cat([b.items, b.target[:, None]], dim=1))

    def encode(self, b: SeqBatch, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """(N, d): the query token's output, the user state given the history and the target
        (``tokens``: :meth:`token_items` of ``b`` when the caller has them already)."""
        n, L = b.items.shape
        items = torch.cat([b.items, b.target[:, None]], dim=1)
        fb = torch.cat([b.feedback, torch.full((n, 1), FB_QUERY, dtype=b.feedback.dtype)], dim=1)
        x = (self.token_items(b) if tokens is None else tokens) + self.feedback(fb)
        x = self.drop(x + self.pos.weight[None, : L + 1])
        # causal and not-padding; every token may see itself so no row is fully masked
        causal = torch.ones(L + 1, L + 1, dtype=torch.bool).tril()
        allowed = causal[None] & (items != PAD)[:, None, :]
        allowed = allowed | torch.eye(L + 1, dtype=torch.bool)[None]
        mask = torch.zeros(allowed.shape, dtype=x.dtype).masked_fill(~allowed, float("-inf"))
        mask = mask.repeat_interleave(self.n_heads, dim=0)
        return self.norm(self.encoder(x, mask=mask)[:, -1])

    def forward(self, b: SeqBatch) -> torch.Tensor:
        return self.out(self.encode(b)).squeeze(-1) + self.item_bias(b.target).squeeze(-1)


class Caser(nn.Module):
    def __init__(self, n_items: int, n_users: int, cfg: SeqConfig):
        super().__init__()
        d, L = cfg.hidden, min(cfg.caser_window, cfg.max_len)
        self.window = L
        self.item = nn.Embedding(n_items, d, padding_idx=PAD)
        self.feedback = nn.Embedding(4, d, padding_idx=FB_PAD)
        self.user = nn.Embedding(n_users, d)
        self.vertical = nn.Conv2d(1, cfg.caser_v_filters, (L, 1))
        self.horizontal = nn.ModuleList(nn.Conv2d(1, cfg.caser_h_filters, (h, d)) for h in range(1, L + 1))
        self.fc = nn.Linear(cfg.caser_v_filters * d + cfg.caser_h_filters * L, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.target_out = nn.Embedding(n_items, 2 * d)
        self.target_bias = nn.Embedding(n_items, 1)
        nn.init.normal_(self.target_out.weight, std=1.0 / (2 * d))
        nn.init.zeros_(self.target_bias.weight)

    def forward(self, b: SeqBatch) -> torch.Tensor:
        items, fb = b.items[:, -self.window :], b.feedback[:, -self.window :]
        e = (self.item(items) + self.feedback(fb)).unsqueeze(1)  # (N, 1, L, d)
        out_v = self.vertical(e).flatten(1)
        out_h = [torch.relu(conv(e).squeeze(3)).amax(dim=2) for conv in self.horizontal]
        z = torch.relu(self.fc(self.drop(torch.cat([out_v, *out_h], dim=1))))
        x = torch.cat([z, self.user(b.user)], dim=1)
        return (x * self.target_out(b.target)).sum(-1) + self.target_bias(b.target).squeeze(-1)


def _build(model_name: str, data: SequenceData, cfg: SeqConfig) -> nn.Module:
    if model_name == "sasrec":
        return SASRec(data.n_items, cfg)
    if model_name == "caser":
        return Caser(data.n_items, data.n_users, cfg)
    raise MethodError(f"unknown sequential baseline {model_name!r}; choose from {list(SEQUENTIAL_METHODS)}.")


def _hide_items(b: SeqBatch, rate: float, gen: torch.Generator) -> SeqBatch:
    """Replace a share of target and history items by the "unseen" index, so that its
    embedding learns what an item never seen in training looks like (test targets are often
    new items: on the embedded Beauty data most are)."""
    if rate <= 0:
        return b
    items = b.items.masked_fill((torch.rand(b.items.shape, generator=gen) < rate) & (b.items != PAD), OOV)
    target = b.target.masked_fill(torch.rand(b.target.shape, generator=gen) < rate, OOV)
    return replace(b, items=items, target=target)  # other fields (e.g. text codes) stay


@torch.no_grad()
def _predict(model: nn.Module, batch: SeqBatch, batch_size: int = 1024) -> np.ndarray:
    model.eval()
    out = [torch.sigmoid(model(batch.subset(slice(s, s + batch_size)))) for s in range(0, len(batch), batch_size)]
    return torch.cat(out).numpy().astype(float) if out else np.zeros(0)


def _valid_score(labels: np.ndarray, p: np.ndarray) -> tuple[float, str]:
    if len(np.unique(labels)) == 2:
        return float(roc_auc_score(labels, p)), "auc"
    eps = 1e-7  # single-class validation: fall back to minus the log-loss
    return float(np.mean(labels * np.log(p + eps) + (1 - labels) * np.log(1 - p + eps))), "neg_log_loss"


@contextlib.contextmanager
def single_thread():
    """One torch thread (RecPIE's many small fits; not re-measured with two since SASRec's were)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class FitResult:
    best: float  # best validation score (AUC, or minus the log-loss for one class)
    metric: str  # "auc" or "neg_log_loss"
    best_epoch: int
    curve: list[dict]  # per epoch: train_loss, valid_<metric>


def fit_early_stopped(
    model: nn.Module, train: SeqBatch, valid: SeqBatch, cfg: SeqConfig, *, desc: str, progress: bool = True
) -> FitResult:
    """Adam on binary cross-entropy over ``train`` (shuffled with a generator seeded by
    ``cfg.seed``; a share ``unseen_item_rate`` of item ids hidden), validation score after
    every epoch, stop after ``patience`` epochs without a gain; the best epoch's weights are
    loaded into ``model`` before returning."""
    from tqdm.auto import tqdm

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(cfg.seed)
    valid_y = valid.label.numpy()
    best, best_epoch, bad, curve, metric = -math.inf, 0, 0, [], "auc"
    best_state = copy.deepcopy(model.state_dict())  # kept if no epoch scores above -inf
    bar = tqdm(range(1, cfg.epochs + 1), desc=desc, disable=not progress)
    for epoch in bar:
        model.train()
        perm = torch.randperm(len(train), generator=gen)
        total = 0.0
        for s in range(0, len(train), cfg.batch_size):
            b = _hide_items(train.subset(perm[s : s + cfg.batch_size]), cfg.unseen_item_rate, gen)
            loss = loss_fn(model(b), b.label)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        score, metric = _valid_score(valid_y, _predict(model, valid))
        curve.append({"epoch": epoch, "train_loss": total / len(train), f"valid_{metric}": score})
        bar.set_postfix(loss=f"{total / len(train):.4f}", **{metric: f"{score:.4f}"})
        if score > best + 1e-6:
            best, best_state, best_epoch, bad = score, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    model.load_state_dict(best_state)
    return FitResult(best, metric, best_epoch, curve)


def train_sequential(
    model_name: str,
    interactions: pd.DataFrame,
    examples: pd.DataFrame,
    eval_examples: pd.DataFrame,
    cfg: SeqConfig,
    progress: bool = True,
    train_users: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train SASRec or Caser on every training interaction (of ``train_users``, default all),
    stop early on the valid targets of ``examples``, and return predictions-table rows (K = 0)
    for ``eval_examples`` with an info dict (best epoch, valid AUC per epoch, sizes, seconds)."""
    # every core: 2 threads measured 18% faster than 1 per SASRec epoch on an idle 2-core machine
    return _train_sequential(model_name, interactions, examples, eval_examples, cfg, progress, train_users)


def _train_sequential(model_name, interactions, examples, eval_examples, cfg, progress, train_users=None):
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    data = SequenceData(interactions, cfg.max_len, train_users)
    cfg = replace(cfg, max_len=data.max_len)
    train = data.training_targets()
    if len(train) == 0:
        raise ValueError(f"{model_name}: no training interactions (every user needs at least 4).")
    valid_examples = examples[examples["split"] == "valid"]
    if valid_examples.empty:
        raise ValueError(f"{model_name}: the examples table has no valid split for early stopping.")
    valid = data.example_targets(valid_examples)
    model = _build(model_name, data, cfg)
    fit = fit_early_stopped(model, train, valid, cfg, desc=f"{model_name} epochs", progress=progress)
    p = _predict(model, data.example_targets(eval_examples))
    rows = like_rows(model_name, 0, eval_examples, p, seed=cfg.seed)
    info = {
        "method": model_name,
        "best_epoch": fit.best_epoch,
        f"best_valid_{fit.metric}": fit.best,
        "epochs_run": len(fit.curve),
        "n_train_targets": len(train),
        "n_valid": len(valid),
        "n_items": data.n_items - 2,
        "n_users": data.n_users - 2,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "seconds": time.perf_counter() - t0,
        "curve": fit.curve,
        "config": asdict(cfg),
    }
    return rows, info


def predict(methods: Sequence[str], tables, eval_examples: pd.DataFrame, cfg) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Registry entry point: train and score each sequential model in ``methods``, or reuse the
    rows of an identical earlier fit from CACHE_DIR (:mod:`rrlib.methods.fit_cache`)."""
    seq_cfg = SeqConfig.from_config(cfg)
    payload = {
        "config": asdict(seq_cfg),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),  # the reduction order, so the last digits, depend on it
        "interactions": frame_fingerprint(tables.interactions),
        "examples": frame_fingerprint(tables.examples, ["example_id", "split", "user_id", "target_item_id", "label"]),
        "eval_examples": list(map(str, eval_examples["example_id"])),
    }
    parts, info = [], {}
    for name in methods:
        fit = functools.partial(train_sequential, name, tables.interactions, tables.examples, eval_examples, seq_cfg)
        rows, info[name] = cached_fit(resolve_path(cfg.common.cache_dir), name, payload, fit)
        parts.append(rows)
    return pd.concat(parts, ignore_index=True), info
