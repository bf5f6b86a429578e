"""Seeded orders of examples: label-stratified, label-balanced or uniformly random.

Each split gets one ``sample_rank`` order; the K-shot training set is ``sample_rank < K`` and
the valid/test subsample ``sample_rank < N``, so the sets are nested by construction (the 64
are inside the 128, which are inside the 256) and every method gets the same examples.

* ``stratified`` (valid/test always; K-shot default): proportional. The i-th of the n_c
  shuffled examples of label c gets the key (i + 0.5) / n_c and examples are ordered by key,
  so every prefix holds each label within one example of its share in the split.
* ``balanced`` (the ReasoningRec authors' K-shot sets): 50/50. The i-th shuffled example of
  each label gets the key i, so every even prefix holds as many liked as disliked examples
  until the smaller label runs out (:func:`balanced_limit`); after that the rest is the larger
  label only.
* ``random`` (the TALLRec authors' K-shot sets): a uniformly random permutation.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np


def derived_seed(seed: int, *names: str) -> np.random.SeedSequence:
    """An independent stream per purpose (e.g. per split), stable across runs and platforms."""
    return np.random.SeedSequence([int(seed)] + [zlib.crc32(n.encode()) for n in names])


def stratified_ranks(labels, seed: int, *names: str) -> np.ndarray:
    """Rank 0..n-1 of each example in the seeded, proportionally label-stratified order."""
    return _interleaved_ranks(labels, derived_seed(seed, "stratified_ranks", *names), lambda i, n_c: (i + 0.5) / n_c)


def balanced_ranks(labels, seed: int, *names: str) -> np.ndarray:
    """Rank 0..n-1 in the seeded, label-balanced order (module docstring)."""
    return _interleaved_ranks(labels, derived_seed(seed, "balanced_ranks", *names), lambda i, n_c: i)


def _interleaved_ranks(
    labels, seed: np.random.SeedSequence, key: Callable[[np.ndarray, int], np.ndarray]
) -> np.ndarray:
    """The labels interleaved: each label's examples are shuffled, the i-th of its n_c gets the
    key ``key(i, n_c)``, and examples are ordered by key, ties broken at random."""
    labels = np.asarray(labels)
    n = len(labels)
    rng = np.random.default_rng(seed)
    keys = np.empty(n, dtype=float)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        keys[idx] = key(np.arange(len(idx)), len(idx))
    order = np.lexsort((rng.random(n), keys))
    ranks = np.empty(n, dtype="int64")
    ranks[order] = np.arange(n)
    return ranks


def random_ranks(labels, seed: int, *names: str) -> np.ndarray:
    """Rank 0..n-1 in a seeded uniformly random order (labels ignored)."""
    rng = np.random.default_rng(derived_seed(seed, "random_ranks", *names))
    ranks = np.empty(len(labels), dtype="int64")
    ranks[rng.permutation(len(labels))] = np.arange(len(labels))
    return ranks


RANKERS = {"stratified": stratified_ranks, "balanced": balanced_ranks, "random": random_ranks}


def balanced_limit(labels) -> int:
    """The largest K whose label-balanced set is exactly 50/50: twice the smaller label's count."""
    labels = np.asarray(labels)
    return 2 * int(min((labels == c).sum() for c in (0, 1))) if len(labels) else 0


def sample_users(user_ids, n: int, seed: int) -> list:
    """A seeded subset of ``n`` users (all when n is 0 or too large), in the input order."""
    user_ids = list(user_ids)
    if not n or n >= len(user_ids):
        return user_ids
    rng = np.random.default_rng(derived_seed(seed, "max_users"))
    keep = set(rng.choice(len(user_ids), size=n, replace=False).tolist())
    return [u for i, u in enumerate(user_ids) if i in keep]
