"""Algorithm 1 of the paper (review sampling for item descriptions) and the title
fallback for items without metadata.

Which reviews may be used (the pool is built by :func:`rrlib.data.processing.review_pool`):
every review of the item except those written at ANY target (train, validation or test) and
the same user's copies of them. A target's review states the very rating that example asks for,
and the item description (and a review-headline title) is shown in that example's own prompt,
so leaving any target's review in would let an example see its own label; for held-out
targets it would also leak into every other user's prompt. Reviews with empty text are skipped
(nothing to describe). Other users' reviews written after a target's time are allowed, as in
the paper (an item description is a property of the item, not of one example).
"""

from __future__ import annotations

import re
import zlib
from collections import Counter

import numpy as np
import pandas as pd


def item_rng(seed: int, item_id: str) -> np.random.Generator:
    """A generator per item, so an item's sample does not depend on which other items exist
    (smoke slices and full runs give the same reviews, hence the same cached prompts)."""
    return np.random.default_rng([int(seed), zlib.crc32(str(item_id).encode())])


def allocate(counts: dict[float, int], p: int) -> dict[float, int]:
    """How many reviews to draw per rating level so the draw follows the item's own rating
    distribution and totals exactly ``p`` (largest-remainder method; ties go to the level
    with more reviews, then the higher rating). Requires ``sum(counts) > p``."""
    total = sum(counts.values())
    quotas = {r: n * p / total for r, n in counts.items()}
    alloc = {r: int(np.floor(q)) for r, q in quotas.items()}
    left = p - sum(alloc.values())
    order = sorted(counts, key=lambda r: (-(quotas[r] - alloc[r]), -counts[r], -r))
    for r in order[:left]:
        alloc[r] += 1
    return alloc


def trim_words(text: str, n_words: int) -> str:
    return " ".join(str(text).split()[:n_words])


def select_reviews(
    ratings: list[float], texts: list[str], p: int, n_words: int, rng: np.random.Generator
) -> list[dict]:
    """Algorithm 1 for one item: at most ``p`` reviews, stratified by rating, trimmed.

    Input order is kept in the output (callers pass reviews oldest first)."""
    n = len(texts)
    if p <= 0 or n == 0:
        return []
    if n <= p:
        chosen = list(range(n))
    else:
        by_rating: dict[float, list[int]] = {}
        for i, r in enumerate(ratings):
            by_rating.setdefault(float(r), []).append(i)
        alloc = allocate({r: len(ix) for r, ix in by_rating.items()}, p)
        chosen = []
        for r in sorted(by_rating):
            if alloc[r]:
                chosen.extend(rng.choice(by_rating[r], size=alloc[r], replace=False).tolist())
        chosen.sort()
    return [{"rating": float(ratings[i]), "text": trim_words(texts[i], n_words)} for i in chosen]


def sample_item_reviews(
    pool: pd.DataFrame, item_ids, p: int, n_words: int, seed: int, progress: bool = True
) -> dict[str, list[dict]]:
    """Algorithm 1 for every item in ``item_ids``. ``pool`` has item_id, rating, review_text,
    timestamp, source_order: the reviews allowed for descriptions (see module docstring)."""
    from tqdm.auto import tqdm

    pool = pool[pool["review_text"].astype(str).str.strip() != ""]
    pool = pool.sort_values(["item_id", "timestamp", "source_order"], kind="stable")
    groups = {k: g for k, g in pool.groupby("item_id", sort=False)}
    out: dict[str, list[dict]] = {}
    for item in tqdm(list(item_ids), desc="Algorithm 1: sampling reviews", disable=not progress):
        g = groups.get(item)
        if g is None:
            out[item] = []
            continue
        out[item] = select_reviews(g["rating"].tolist(), g["review_text"].tolist(), p, n_words, item_rng(seed, item))
    return out


_BOILERPLATE = re.compile(r"^\s*(one|two|three|four|five|[1-5])\s+stars?\W*$", re.I)


def headline_title(summaries: list[str]) -> str:
    """The most frequent usable review headline (case-insensitive; star boilerplate such as
    'Five Stars' ignored; ties -> the longer, then the earlier one). '' when none."""
    cleaned = [" ".join(str(s).split()) for s in summaries]
    usable = [s for s in cleaned if s and not _BOILERPLATE.match(s)]
    if not usable:
        return ""
    counts = Counter(s.lower() for s in usable)
    first: dict[str, tuple[int, str]] = {}
    for i, s in enumerate(usable):
        first.setdefault(s.lower(), (i, s))
    best = max(counts, key=lambda k: (counts[k], len(k), -first[k][0]))
    return first[best][1]


def fallback_titles(items: pd.DataFrame, pool: pd.DataFrame) -> pd.DataFrame:
    """Fill empty titles: '<headline> [<item id>]' from the allowed review pool, else
    'item <id>'. Sets title_source to review_summary or id accordingly."""
    items = items.copy()
    need = items["title"].astype(str).str.strip() == ""
    if not need.any():
        return items
    pool = pool.sort_values(["timestamp", "source_order"], kind="stable")
    heads = pool.groupby("item_id", sort=False)["summary"].agg(list).to_dict()
    titles, sources = [], []
    for item in items.loc[need, "item_id"]:
        h = headline_title(heads.get(item, []))
        titles.append(f"{h} [{item}]" if h else f"item {item}")
        sources.append("review_summary" if h else "id")
    items.loc[need, "title"] = titles
    items.loc[need, "title_source"] = sources
    return items
