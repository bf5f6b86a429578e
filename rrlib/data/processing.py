"""The paper's preprocessing, one transform per function (each unit-tested).

Order of steps (``build_tables``): copy collapse -> dedup -> chronological order with a tie
rule -> user k-core -> binarize -> split targets -> Algorithm 1 review pool and title fallback
-> MAX_USERS slice -> examples (target + history) -> profile items -> sample ranks -> tables.
The leakage audit of the result is :mod:`rrlib.data.audit`.

* Copies (``COLLAPSE_COPIES``, :mod:`rrlib.data.collapse`): one review of a user copied onto
  several listings (same text and rating, different item ids) becomes one interaction.
* Duplicates (``DEDUP``): the same user and item more than once (Amazon has many, most of
  them identical re-posts). ``keep_last`` keeps the most recent row (by timestamp, then file
  order), ``keep_first`` the oldest, ``keep_all`` keeps every row.
* Ties (``TIE_ORDER``): rows of one user with the same timestamp (Amazon timestamps are whole
  days) are ordered by file order (``file``) or item id (``item``). Histories contain only
  interactions at earlier *positions*; a history item may share the target's timestamp
  (counted in the data card), never come after it.
* Split (paper, A.1): last interaction = test target, second last = validation target,
  third last = training target; history = up to ``HISTORY_LEN`` interactions right before.
* The ReasoningRec release (``RELEASE_WINDOWS``): the authors' own windows, located in their
  ``ratings.csv``; ``clean`` drops exact duplicate rows and the target's own item from its
  window (:func:`clean_release_windows`), ``as_released`` keeps them as published.
* Profile items: the first ``PROFILE_ITEMS`` interactions that lie before the test target's
  history window and whose items are neither in that window nor a target.
* Review pool: no review written at any target (train, valid or test) reaches an item
  description or fallback title (:func:`review_pool`).
* K-shot sets (``KSHOT_SAMPLING``): nested prefixes of one seeded order of the train split,
  label-stratified, label-balanced or random (:mod:`rrlib.data.sampling`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .collapse import collapse_copies, normalise_text
from .errors import DataError
from .inputs import input_cleaning
from .loaders import RawDataset
from .reviews import fallback_titles, sample_item_reviews
from .sampling import RANKERS, balanced_limit, sample_users, stratified_ranks
from .tags import apply_tags

SPLIT_OFFSETS = {"test": 1, "valid": 2, "train": 3}  # target = n - offset (0-based)


# ---------------------------------------------------------------------------------------
# interactions
# ---------------------------------------------------------------------------------------
def deduplicate(inter: pd.DataFrame, how: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Drop repeated user-item rows per ``how`` (keep_last | keep_first | keep_all)."""
    if how not in ("keep_last", "keep_first", "keep_all"):
        raise DataError(f"DEDUP={how!r} is not one of keep_last, keep_first, keep_all.")
    dup_mask = inter.duplicated(["user_id", "item_id"], keep=False)
    exact = inter.duplicated(["user_id", "item_id", "rating", "timestamp", "review_text"]).sum()
    conflicting = (inter[dup_mask].groupby(["user_id", "item_id"])["rating"].nunique() > 1).sum()
    stats = {
        "policy": how,
        "rows_in": int(len(inter)),
        "duplicate_pairs": int(inter[dup_mask][["user_id", "item_id"]].drop_duplicates().shape[0]),
        "duplicate_rows_extra": int(inter.duplicated(["user_id", "item_id"]).sum()),
        "exact_duplicate_rows": int(exact),
        "pairs_with_conflicting_ratings": int(conflicting),
    }
    if how == "keep_all":
        out = inter
    else:
        ordered = inter.sort_values(["timestamp", "source_order"], kind="stable")
        out = ordered.drop_duplicates(["user_id", "item_id"], keep="last" if how == "keep_last" else "first")
        out = out.sort_values("source_order", kind="stable")
    stats["rows_removed"] = int(len(inter) - len(out))
    stats["rows_out"] = int(len(out))
    return out.reset_index(drop=True), stats


def order_interactions(inter: pd.DataFrame, tie_order: str) -> pd.DataFrame:
    """Sort each user's interactions chronologically; break timestamp ties by file order or
    item id; add ``position`` (0-based)."""
    if tie_order not in ("file", "item"):
        raise DataError(f"TIE_ORDER={tie_order!r} is not one of file, item.")
    keys = ["user_id", "timestamp"] + (["item_id"] if tie_order == "item" else []) + ["source_order"]
    out = inter.sort_values(keys, kind="stable").reset_index(drop=True)
    out["position"] = out.groupby("user_id", sort=False).cumcount().astype("int64")
    return out


def tie_stats(inter: pd.DataFrame) -> dict[str, Any]:
    tied = inter.duplicated(["user_id", "timestamp"], keep=False)
    return {
        "interactions_sharing_a_timestamp": int(tied.sum()),
        "users_with_ties": int(inter.loc[tied, "user_id"].nunique()),
    }


def users_with_at_least(inter: pd.DataFrame, ks) -> pd.DataFrame:
    """Figure 2 of the paper: number of users with at least k interactions, per k."""
    counts = np.sort(inter.groupby("user_id").size().to_numpy())
    ks = np.asarray(list(ks))
    n_at_least = len(counts) - np.searchsorted(counts, ks, side="left")
    return pd.DataFrame({"k": ks, "users": n_at_least.astype("int64")})


def user_kcore(inter: pd.DataFrame, k: int, source: str = "") -> pd.DataFrame:
    """Keep users with at least ``k`` interactions (the paper's k-core is on users only)."""
    counts = inter.groupby("user_id")["item_id"].transform("size")
    out = inter[counts >= k].reset_index(drop=True)
    if out.empty:
        most = int(counts.max()) if len(counts) else 0
        raise DataError(
            f"KCORE={k} leaves no users{f' in {source}' if source else ''}: the most active "
            f"user has {most} interaction(s) after deduplication. Lower KCORE to at most "
            f"{max(most, 3)} or use a larger dataset."
        )
    return out


def binarize(inter: pd.DataFrame, threshold: float) -> pd.DataFrame:
    out = inter.copy()
    out["liked"] = out["rating"] > float(threshold)
    return out


def mark_targets(inter: pd.DataFrame) -> pd.DataFrame:
    """``target_of`` = test | valid | train for each user's last three positions, else ''."""
    out = inter.copy()
    n = out.groupby("user_id")["position"].transform("size")
    back = n - out["position"]
    out["target_of"] = np.select([back == 1, back == 2, back == 3], ["test", "valid", "train"], "")
    return out


def _user_arrays(inter: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    inter = inter.sort_values(["user_id", "position"], kind="stable")
    out = {}
    for u, g in inter.groupby("user_id", sort=False):
        out[u] = {
            "item": g["item_id"].to_numpy(dtype=object),
            "rating": g["rating"].to_numpy(float),
            "liked": g["liked"].to_numpy(bool),
            "ts": g["timestamp"].to_numpy("int64"),
            "pos": g["position"].to_numpy("int64"),
        }
    return out


def _example_row(split: str, u: str, a: dict, t: int, hist: list[int]) -> dict[str, Any]:
    return {
        "example_id": f"{split}:{u}",
        "split": split,
        "user_id": u,
        "target_item_id": str(a["item"][t]),
        "target_rating": float(a["rating"][t]),
        "target_timestamp": int(a["ts"][t]),
        "label": int(a["liked"][t]),
        "target_position": int(a["pos"][t]),
        "history_item_ids": [str(a["item"][i]) for i in hist],
        "history_ratings": [float(a["rating"][i]) for i in hist],
        "history_liked": [bool(a["liked"][i]) for i in hist],
        "history_positions": [int(a["pos"][i]) for i in hist],
    }


def build_examples(inter: pd.DataFrame, history_len: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One example per (split, user): target at n-1 / n-2 / n-3 and the up-to-``history_len``
    interactions right before it. Examples with an empty history are dropped (counted)."""
    rows, dropped = [], {s: 0 for s in SPLIT_OFFSETS}
    for u, a in _user_arrays(inter).items():
        n = len(a["item"])
        for split, off in SPLIT_OFFSETS.items():
            t = n - off
            if t < 0:
                continue
            if t == 0:
                dropped[split] += 1
                continue
            rows.append(_example_row(split, u, a, t, list(range(max(0, t - history_len), t))))
    return _examples_frame(rows), {"dropped_empty_history": dropped}


def _examples_frame(rows: list[dict]) -> pd.DataFrame:
    cols = [
        "example_id",
        "split",
        "user_id",
        "target_item_id",
        "target_rating",
        "target_timestamp",
        "label",
        "target_position",
        "history_item_ids",
        "history_ratings",
        "history_liked",
        "history_positions",
    ]
    return pd.DataFrame(rows, columns=cols)


def examples_from_windows(
    inter: pd.DataFrame, windows: dict[str, dict[str, list[str]]]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Examples from released windows (last id = target, the rest = history, oldest first).

    Each window is located in the user's sequence: first as the contiguous slice ending at the
    expected target position (n-1 test, n-2 valid, n-3 train); else the target is the nearest
    occurrence of its id at/before that position (after it when there is none: counted as
    target_moved) and the history ids are matched backwards from the target. Ids absent from the user's rows are dropped from histories;
    an example whose target is absent is dropped (both counted)."""
    arrays = _user_arrays(inter)
    rows = []
    stats: dict[str, Any] = {
        "windows": 0,
        "exact_slices": 0,
        "realigned": 0,
        "target_moved": 0,
        "history_ids_not_in_ratings": 0,
        "dropped_target_not_in_ratings": {s: 0 for s in SPLIT_OFFSETS},
    }
    for split in ("test", "valid", "train"):
        for u, window in windows[split].items():
            a = arrays[u]
            n, items = len(a["item"]), list(a["item"])
            end = n - SPLIT_OFFSETS[split]  # expected target position
            stats["windows"] += 1
            matched: list[int | None]
            if end >= 0 and items[max(0, end + 1 - len(window)) : end + 1] == window:
                stats["exact_slices"] += 1
                matched = list(range(end + 1 - len(window), end + 1))
            else:
                stats["realigned"] += 1
                # the target: nearest occurrence at/before the expected position, else after it
                target = next(
                    (i for i in range(min(end, n - 1), -1, -1) if items[i] == window[-1]),
                    next((i for i in range(max(end + 1, 0), n) if items[i] == window[-1]), None),
                )
                matched, cursor = [target], (target - 1 if target is not None else min(end, n - 1))
                for item in reversed(window[:-1]):
                    hit = next((i for i in range(cursor, -1, -1) if items[i] == item), None)
                    matched.append(hit)
                    if hit is not None:
                        cursor = hit - 1
                matched.reverse()
            if matched[-1] is None:
                stats["dropped_target_not_in_ratings"][split] += 1
                continue
            if matched[-1] != end:
                stats["target_moved"] += 1
            stats["history_ids_not_in_ratings"] += sum(m is None for m in matched[:-1])
            rows.append(_example_row(split, u, a, matched[-1], [m for m in matched[:-1] if m is not None]))
    return _examples_frame(rows), stats


def clean_release_windows(
    inter: pd.DataFrame, examples: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """``RELEASE_WINDOWS=clean``: the authors' windows (already located in the full sequence by
    :func:`examples_from_windows`) on the sequence without exact duplicate rows.

    Exact duplicates (same user, item, rating, timestamp) keep their first row; every window
    position is mapped to that row. Then each history loses repeated rows, rows of the target's
    own item (the target's label would sit in its own input) and rows that now come at or after
    the target. An example whose target row is also the target row of a later split of the same
    user is dropped (it would be the same interaction twice). Every change is counted."""
    inter = inter.sort_values(["user_id", "position"], kind="stable").reset_index(drop=True)
    key = ["user_id", "item_id", "rating", "timestamp"]
    rowno = pd.Series(np.arange(len(inter)), index=inter.index)
    first = rowno.groupby([inter[k] for k in key], sort=False).transform("min").to_numpy()
    keep = first == rowno.to_numpy()
    cleaned = inter[keep].copy()
    cleaned["position"] = cleaned.groupby("user_id", sort=False).cumcount().astype("int64")
    new_pos = np.full(len(inter), -1, dtype="int64")
    new_pos[keep] = cleaned["position"].to_numpy()
    new_pos = new_pos[first]  # every row -> the position of its first copy
    lookup = {(u, int(p)): int(q) for u, p, q in zip(inter["user_id"], inter["position"], new_pos)}
    arrays = _user_arrays(cleaned)
    removed = {"repeated_row": 0, "target_item": 0, "at_or_after_target": 0}
    changed = {s: 0 for s in SPLIT_OFFSETS}
    target_in_window = {s: 0 for s in SPLIT_OFFSETS}
    rows, claimed, dropped = [], {}, {s: 0 for s in SPLIT_OFFSETS}
    for split in ("test", "valid", "train"):  # later splits first: they keep a shared target row
        for r in examples[examples["split"] == split].to_dict("records"):
            u, a = r["user_id"], arrays[r["user_id"]]
            t = lookup[(u, int(r["target_position"]))]
            target_in_window[split] += r["target_item_id"] in set(r["history_item_ids"])
            if (u, t) in claimed:
                dropped[split] += 1
                continue
            claimed[(u, t)] = split
            hist, seen = [], set()
            for p in r["history_positions"]:
                q = lookup[(u, int(p))]
                if q in seen:
                    removed["repeated_row"] += 1
                elif a["item"][q] == r["target_item_id"]:
                    removed["target_item"] += 1
                elif q >= t:
                    removed["at_or_after_target"] += 1
                else:
                    hist.append(q)
                seen.add(q)
            changed[split] += len(hist) != len(r["history_positions"])
            rows.append(_example_row(split, u, a, t, sorted(hist)))
    stats = {
        "policy": "clean",
        "exact_duplicate_rows_dropped": int((~keep).sum()),
        "authors_windows_with_target_item_in_history": target_in_window,
        "history_entries_removed": removed,
        "examples_with_shorter_history": changed,
        "examples_dropped_same_target_row_as_a_later_split": dropped,
    }
    return cleaned.reset_index(drop=True), _examples_frame(rows), stats


def profile_items(inter: pd.DataFrame, examples: pd.DataFrame, m: int) -> pd.DataFrame:
    """Per user: the first ``m`` interactions before the test target's history window whose
    items are neither in that window nor any target of the user (the paper's profile items).
    Users without a test example (release: unknown test target) use their latest example."""
    arrays = _user_arrays(inter)
    by_user: dict[str, list[dict]] = {}
    for r in examples[
        ["user_id", "split", "target_item_id", "target_position", "history_item_ids", "history_positions"]
    ].to_dict("records"):
        by_user.setdefault(r["user_id"], []).append(r)
    rows = []
    for u, a in arrays.items():
        ex = by_user.get(u, [])
        if not ex:  # no example to predict: no profile needed (and none can leak)
            cutoff, banned = 0, set()
        else:
            test = [r for r in ex if r["split"] == "test"]
            anchor = test[0] if test else max(ex, key=lambda r: r["target_position"])
            cutoff = min(list(anchor["history_positions"]) + [r["target_position"] for r in ex])
            banned = set(anchor["history_item_ids"]) | {r["target_item_id"] for r in ex}
        chosen = [i for i in range(cutoff) if a["item"][i] not in banned][:m]
        rows.append(
            {
                "user_id": u,
                "n_interactions": int(len(a["item"])),
                "profile_item_ids": [str(a["item"][i]) for i in chosen],
                "profile_liked": [bool(a["liked"][i]) for i in chosen],
                "profile_positions": [int(a["pos"][i]) for i in chosen],
            }
        )
    return pd.DataFrame(
        rows, columns=["user_id", "n_interactions", "profile_item_ids", "profile_liked", "profile_positions"]
    )


def assign_sample_ranks(examples: pd.DataFrame, seed: int, kshot_sampling: str = "stratified") -> pd.DataFrame:
    """``sample_rank`` per split: valid/test label-stratified, train per ``kshot_sampling``
    (stratified | balanced | random; see :mod:`rrlib.data.sampling`)."""
    if kshot_sampling not in RANKERS:
        raise DataError(f"KSHOT_SAMPLING={kshot_sampling!r} is not one of {list(RANKERS)}.")
    out = examples.copy()
    out["sample_rank"] = -1
    for split, idx in out.groupby("split").groups.items():
        part = out.loc[idx].sort_values("user_id")  # independent of row order
        ranker = RANKERS[kshot_sampling] if split == "train" else stratified_ranks
        out.loc[part.index, "sample_rank"] = ranker(part["label"].to_numpy(), seed, split)
    out["sample_rank"] = out["sample_rank"].astype("int64")
    order = {"train": 0, "valid": 1, "test": 2}
    return out.sort_values(
        ["split", "sample_rank"], key=lambda s: s.map(order) if s.name == "split" else s
    ).reset_index(drop=True)


def check_kshot_balance(examples: pd.DataFrame, sizes, kshot_sampling: str) -> None:
    """KSHOT_SAMPLING=balanced needs K/2 examples of each label for every available K."""
    if kshot_sampling != "balanced":
        return
    labels = examples.loc[examples["split"] == "train", "label"].to_numpy()
    limit = balanced_limit(labels)
    bad = [k for k in sizes if limit < k <= len(labels)]
    if bad:
        n_pos = int(labels.sum())
        raise DataError(
            f"KSHOT_SAMPLING='balanced' cannot make K={bad} half liked, half disliked: the train split has "
            f"{n_pos} liked and {len(labels) - n_pos} disliked examples, so balanced sets stop at K={limit}. "
            f"Use KSHOT_SAMPLING='stratified' (proportional) or 'random', KSHOT_SIZES of at most {limit}, "
            f"or a dataset with more examples of the smaller label."
        )


def tie_decided_targets(inter: pd.DataFrame, examples: pd.DataFrame) -> dict[str, int]:
    """Examples whose target shares its timestamp with a neighbouring interaction (so the tie
    rule chose which item is the target) or with an item of its own history."""
    ts = {u: a["ts"] for u, a in _user_arrays(inter).items()}
    decided, hist_same = 0, 0
    for u, t, t_ts, hist in zip(
        examples["user_id"], examples["target_position"], examples["target_timestamp"], examples["history_positions"]
    ):
        seq = ts[u]
        decided += bool((t > 0 and seq[t - 1] == t_ts) or (t + 1 < len(seq) and seq[t + 1] == t_ts))
        hist_same += bool(len(hist) and (seq[np.asarray(hist, dtype=int)] == t_ts).any())
    return {
        "targets_tied_with_a_neighbour": int(decided),
        "examples_with_history_item_at_target_timestamp": int(hist_same),
    }


# ---------------------------------------------------------------------------------------
# whole pipeline on a RawDataset
# ---------------------------------------------------------------------------------------
@dataclass
class Built:
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    examples: pd.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)
    figure2: pd.DataFrame | None = None


def _size_notes(examples: pd.DataFrame, params: dict[str, Any]) -> list[str]:
    """Requested sizes larger than a split: the subsample is then the whole split (noted)."""
    notes = []
    for split, what in (("valid", "N_VALID"), ("test", "N_TEST")):
        have, n = int((examples["split"] == split).sum()), params[what]
        if n > have:
            notes.append(f"{what}={n} exceeds the {have} {split} examples: the whole split is used")
    have = int((examples["split"] == "train").sum())
    too_big = [k for k in params["KSHOT_SIZES"] if k > have]
    if too_big:
        notes.append(
            f"KSHOT_SIZES {too_big} exceed the {have} training examples: those K-shot sets "
            f"are unavailable (use a larger dataset or smaller K)"
        )
    return notes


def review_pool(everything: pd.DataFrame, inter: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Reviews allowed for Algorithm 1 and the title fallback: every review of the dataset
    (users outside the k-core included) except those written at ANY target (train, valid or
    test) and same-user copies of a target's review text. A target's review states the label
    of that example, and an item description or title is shown in that example's own prompt, so
    no example may see its own target's review; excluding all targets is the simple rule that
    guarantees it (a train target's review would otherwise shape the description its own
    training prompt shows)."""
    targets = inter.loc[inter["target_of"] != "", ["user_id", "position", "target_of", "review_text"]]
    split_of = dict(zip(zip(targets["user_id"], targets["position"]), targets["target_of"]))
    target_text = {(u, t) for u, t in zip(targets["user_id"], normalise_text(targets["review_text"])) if t}
    text = normalise_text(everything["review_text"])
    has_text = (text != "").to_numpy()
    at = np.array([split_of.get(k, "") for k in zip(everything["user_id"], everything["position"])], dtype=object)
    copy = np.array([bool(t) and (u, t) in target_text for u, t in zip(everything["user_id"], text)], dtype=bool)
    copy &= at == ""
    allowed = (at == "") & ~copy
    stats = {
        "eval_target_reviews_excluded": int((np.isin(at, ["valid", "test"]) & has_text).sum()),
        "train_target_reviews_excluded": int(((at == "train") & has_text).sum()),
        "copies_of_target_reviews_excluded": int((copy & has_text).sum()),
        "pool_reviews_with_text": int((allowed & has_text).sum()),
        "pool": "all deduplicated reviews (also of users outside the k-core) except those written at "
        "train/validation/test targets and the same user's copies of them",
    }
    return everything[allowed], stats


def _release_steps(
    inter: pd.DataFrame, raw: RawDataset, p: dict[str, Any], stats: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The authors' split: their rows in file order, their windows, cleaned unless
    RELEASE_WINDOWS='as_released'."""
    _, dd = deduplicate(inter, "keep_all")
    inter = binarize(order_interactions(inter, "file"), p["LIKE_THRESHOLD"])
    if raw.windows is None:
        raise ValueError(f"{raw.name}: a release dataset without its split windows.")
    examples, stats["windows"] = examples_from_windows(inter, raw.windows)
    if p["RELEASE_WINDOWS"] == "clean":
        inter, examples, stats["release_cleaning"] = clean_release_windows(inter, examples)
        dd |= {
            "policy": "exact duplicate rows dropped (RELEASE_WINDOWS=clean); other repeated user-item "
            "rows kept (the authors' windows use them); DEDUP not applied",
            "rows_removed": stats["release_cleaning"]["exact_duplicate_rows_dropped"],
        }
    else:
        stats["release_cleaning"] = {
            "policy": "as_released (the authors' windows unchanged, exact duplicate rows kept)"
        }
        dd |= {
            "policy": "keep_all (RELEASE_WINDOWS=as_released: the authors' windows contain repeated "
            "ids; DEDUP not applied)"
        }
    dd["rows_out"] = int(len(inter))
    stats["dedup"] = dd
    stats["ties"] = tie_stats(inter) | {"policy": "file (release order)"}
    return inter, examples


def build_tables(raw: RawDataset, params: dict[str, Any], progress: bool = True) -> Built:
    p = params
    stats: dict[str, Any] = {"notes": list(raw.notes)}
    inter = raw.interactions.copy()
    release = raw.windows is not None
    stats["raw"] = {
        "interactions": int(len(inter)),
        "users": int(inter["user_id"].nunique()),
        "items": int(inter["item_id"].nunique()),
    }
    inter, stats["copies"] = collapse_copies(inter, p["COLLAPSE_COPIES"])
    if release:
        inter, examples = _release_steps(inter, raw, p, stats)
        fig2 = users_with_at_least(inter, range(1, 51))
        everything = inter
    else:
        inter, stats["dedup"] = deduplicate(inter, p["DEDUP"])
        inter = order_interactions(inter, p["TIE_ORDER"])
        fig2 = users_with_at_least(inter, range(1, max(51, 2 * p["KCORE"] + 1)))
        everything = inter  # before the k-core: the review pool includes users outside it
        inter = user_kcore(inter, p["KCORE"], raw.source.get("dataset", ""))
        stats["ties"] = tie_stats(inter) | {"policy": p["TIE_ORDER"]}
        inter = binarize(inter, p["LIKE_THRESHOLD"])
        # examples on all k-core users first: the targets fix which reviews are allowed
        examples, stats["examples_built"] = build_examples(inter, p["HISTORY_LEN"])
    stats["kcore"] = {
        "k": None if release else p["KCORE"],
        "users": int(inter["user_id"].nunique()),
        "items": int(inter["item_id"].nunique()),
        "interactions": int(len(inter)),
    }
    key = examples.set_index(["user_id", "target_position"])["split"]
    key = key[~key.index.duplicated()]
    idx = pd.MultiIndex.from_arrays([inter["user_id"], inter["position"]])
    inter["target_of"] = key.reindex(idx).fillna("").astype(str).to_numpy()
    if release:
        everything = inter

    # Algorithm 1 review pool and title fallback: no target's own review (see review_pool)
    pool, stats["reviews"] = review_pool(everything, inter)

    # MAX_USERS slice (after the k-core, seeded)
    users_all = sorted(inter["user_id"].unique())
    kept = sample_users(users_all, p["MAX_USERS"], p["SEED"])
    if len(kept) < len(users_all):
        keep = set(kept)
        inter = inter[inter["user_id"].isin(keep)].reset_index(drop=True)
        examples = examples[examples["user_id"].isin(keep)].reset_index(drop=True)
        stats["max_users"] = {"requested": p["MAX_USERS"], "kept": len(kept), "of": len(users_all)}

    # items: metadata, fallback titles, counts (without eval targets), Algorithm 1 reviews
    item_ids = list(pd.unique(inter["item_id"]))
    items = raw.items[raw.items["item_id"].isin(set(item_ids))].copy()
    items = fallback_titles(items, pool)
    # [data-loaders hook] user tags (MovieLens) join the attributes now that targets are known
    items, stats["tags"] = apply_tags(items, raw.tags, inter, stats["notes"])
    reviews = sample_item_reviews(
        pool, items["item_id"], p["REVIEWS_PER_ITEM"], p["REVIEW_WORDS"], p["SEED"], progress=progress
    )
    counted = inter[~inter["target_of"].isin(["valid", "test"])]
    agg = counted.groupby("item_id")["liked"].agg(["size", "mean"])
    items["n_ratings"] = items["item_id"].map(agg["size"]).fillna(0).astype("int64")
    items["like_rate"] = items["item_id"].map(agg["mean"]).astype(float)
    items["sampled_reviews"] = items["item_id"].map(reviews)
    items = items.sort_values("item_id").reset_index(drop=True)

    users = profile_items(inter, examples, p["PROFILE_ITEMS"])
    if raw.user_attributes is not None:
        users = users.merge(raw.user_attributes, on="user_id", how="left")
    users["attributes"] = users.get("attributes", pd.Series("", index=users.index)).fillna("").astype(str)

    stats["notes"] += _size_notes(examples, p)
    examples = assign_sample_ranks(examples, p["SEED"], p["KSHOT_SAMPLING"])
    check_kshot_balance(examples, p["KSHOT_SIZES"], p["KSHOT_SAMPLING"])
    stats["ties"].update(tie_decided_targets(inter, examples))
    inter = inter.sort_values(["user_id", "position"]).reset_index(drop=True)
    stats["input_cleaning"] = input_cleaning(raw.cleaning, inter, items, users)
    return Built(inter, items, users, examples, stats, fig2)
