"""Leakage audit of the prepared tables, degenerate-data flags, and the refusals of notebook 01.

The audit answers, for every split (train / valid / test), the questions a reader must be able to
answer before trusting any AUC computed on these examples:

* **copied labels**: the share of targets whose own item, or an identical review (same
  non-empty text, same rating), appears in the example's history window or in the user's profile
  items. Such a target's label can be read off its own input. Causes and fixes: repeated
  user-item rows (``DEDUP``), one review copied onto several listings (``COLLAPSE_COPIES``), the
  authors' windows of the ReasoningRec release (``RELEASE_WINDOWS``).
* **constant raters**: the share of users whose ratings are all equal; for them the history's
  like-rate states the label.
* **user like-rate AUC**: the AUC of the history-window like-rate (the ``user_like_rate``
  baseline of the evaluation step, recomputed here from the examples so the data step imports no
  later step). Near 1.0 means the labels are predictable from the history alone.
* **class counts** per split and for every set used to train or evaluate (valid/test subsample,
  each K-shot set).

:func:`check_audit` stops notebook 01 with :class:`~rrlib.errors.LeakageError` when copied labels
exceed ``LEAKAGE_THRESHOLD`` in any split, and with :class:`~rrlib.errors.DataError` when a set
used to train or evaluate holds one class only (AUC is then undefined; the failure would
otherwise surface only after the teacher has run).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, LeakageError
from .collapse import normalise_text

SPLITS = ("train", "valid", "test")
#: pseudo-interactions of the Beta prior of the user like-rate (as in the bias baselines)
PRIOR_STRENGTH = 2.0


def _share(n: int, of: int) -> float | None:
    return round(n / of, 4) if of else None


def auc(scores, labels) -> float | None:
    """Binary ROC AUC by the rank-sum formula (ties get the average rank); None when the
    labels hold one class only."""
    labels = np.asarray(labels, dtype=int)
    n_pos, n_neg = int(labels.sum()), int((1 - labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(np.asarray(scores, dtype=float)).rank(method="average").to_numpy()
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def training_like_rate(interactions: pd.DataFrame) -> float:
    """Like-rate of the interactions strictly before each user's first validation/test target
    (the prior the bias baselines smooth towards)."""
    inter = interactions.sort_values(["user_id", "position"], kind="stable")
    held = inter["target_of"].isin(["valid", "test"])
    first_held = inter["position"].where(held).groupby(inter["user_id"]).transform("min")
    cutoff = first_held.fillna(inter.groupby("user_id")["position"].transform("size") - 2)
    train = inter[inter["position"] < cutoff]
    return float(train["liked"].mean()) if len(train) else float(inter["liked"].mean())


def user_like_rate_scores(examples: pd.DataFrame, prior: float) -> np.ndarray:
    """Smoothed like-rate of each example's history window: (likes + a*prior) / (n + a)."""
    likes = np.array([np.sum(np.asarray(h, dtype=bool)) for h in examples["history_liked"]], dtype=float)
    counts = np.array([len(h) for h in examples["history_liked"]], dtype=float)
    return (likes + PRIOR_STRENGTH * prior) / (counts + PRIOR_STRENGTH)


def _sequences(interactions: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    inter = interactions.sort_values(["user_id", "position"], kind="stable")
    text = normalise_text(inter["review_text"]).to_numpy(dtype=object)
    out = {}
    for u, idx in inter.groupby("user_id", sort=False).indices.items():
        g = inter.iloc[idx]
        out[str(u)] = {
            "pos": g["position"].to_numpy("int64"),
            "item": g["item_id"].astype(str).to_numpy(object),
            "rating": g["rating"].to_numpy(float),
            "text": text[idx],
        }
    return out


def _context_flags(seq: dict[str, np.ndarray], target_pos: int, positions: list[int]) -> tuple[bool, bool]:
    """(target item among ``positions``, identical text + rating among ``positions``)."""
    where = {int(p): i for i, p in enumerate(seq["pos"])}
    t = where[int(target_pos)]
    idx = [where[int(p)] for p in positions if int(p) in where]
    item = any(seq["item"][i] == seq["item"][t] for i in idx)
    text = seq["text"][t]
    copied = bool(text) and any(seq["text"][i] == text and seq["rating"][i] == seq["rating"][t] for i in idx)
    return item, copied


def _class_counts(labels) -> dict[str, int]:
    labels = np.asarray(labels, dtype=int)
    return {"examples": int(len(labels)), "liked": int(labels.sum()), "disliked": int((1 - labels).sum())}


def eval_sets(examples: pd.DataFrame, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Class counts of every set used to train or evaluate, with the parameter that sizes it."""
    out = {}
    for split, name in (("valid", "N_VALID"), ("test", "N_TEST")):
        part = examples[examples["split"] == split]
        n = params.get(name, 0)
        sub = part[part["sample_rank"] < n] if n else part
        out[f"{split}_subsample"] = _class_counts(sub["label"]) | {
            "parameter": name,
            "split": split,
            "requested": int(n),
        }
    train = examples[examples["split"] == "train"]
    for k in params.get("KSHOT_SIZES", []):
        if k <= len(train):
            out[f"kshot_{k}"] = _class_counts(train.loc[train["sample_rank"] < k, "label"]) | {
                "parameter": "KSHOT_SIZES",
                "split": "train",
                "requested": int(k),
            }
    return out


def leakage_audit(
    interactions: pd.DataFrame, examples: pd.DataFrame, users: pd.DataFrame, params: dict[str, Any]
) -> dict[str, Any]:
    """The audit figures (module docstring) of the final tables."""
    seqs = _sequences(interactions)
    profile = {str(u): list(p) for u, p in zip(users["user_id"], users["profile_positions"])}
    per_user = interactions.groupby("user_id")["rating"].nunique()
    constant = set(per_user.index[per_user == 1].astype(str))
    prior = training_like_rate(interactions)
    splits: dict[str, Any] = {}
    for split in SPLITS:
        part = examples[examples["split"] == split]
        flags = {
            "target_item_in_history": 0,
            "target_item_in_profile": 0,
            "copied_review_in_history": 0,
            "copied_review_in_profile": 0,
            "copied_label": 0,
        }
        for u, tp, hist in zip(part["user_id"].astype(str), part["target_position"], part["history_positions"]):
            item_h, text_h = _context_flags(seqs[u], tp, list(hist))
            item_p, text_p = _context_flags(seqs[u], tp, profile.get(u, []))
            flags["target_item_in_history"] += item_h
            flags["target_item_in_profile"] += item_p
            flags["copied_review_in_history"] += text_h
            flags["copied_review_in_profile"] += text_p
            flags["copied_label"] += item_h or item_p or text_h or text_p
        n = len(part)
        n_const = int(part["user_id"].astype(str).isin(constant).sum())
        splits[split] = (
            _class_counts(part["label"])
            | {k: int(v) for k, v in flags.items()}
            | {
                "copied_label_share": _share(flags["copied_label"], n),
                "examples_of_constant_raters": n_const,
                "constant_rater_share": _share(n_const, n),
                "user_like_rate_auc": (
                    round(a, 4) if (a := auc(user_like_rate_scores(part, prior), part["label"])) is not None else None
                ),
            }
        )
    return {
        "threshold": float(params.get("LEAKAGE_THRESHOLD", 0.0)),
        "like_threshold": params.get("LIKE_THRESHOLD"),
        "policies": {k: params.get(k) for k in ("COLLAPSE_COPIES", "DEDUP", "RELEASE_WINDOWS", "DATASET")},
        "splits": splits,
        "users": {
            "users": int(len(per_user)),
            "constant_raters": len(constant),
            "constant_rater_share": _share(len(constant), len(per_user)),
        },
        "user_like_rate_prior": round(prior, 4),
        "eval_sets": eval_sets(examples, params),
    }


ROWS = [
    ("examples", "examples"),
    ("liked", "liked"),
    ("disliked", "disliked"),
    ("copied_label", "copied labels (item or identical review in history/profile)"),
    ("copied_label_share", "copied-label share"),
    ("target_item_in_history", "target item in its history"),
    ("target_item_in_profile", "target item in the profile items"),
    ("copied_review_in_history", "identical review + rating in the history"),
    ("copied_review_in_profile", "identical review + rating in the profile items"),
    ("constant_rater_share", "share of examples whose user gives one rating to everything"),
    ("user_like_rate_auc", "AUC of the user's history like-rate"),
]


def audit_table(audit: dict[str, Any]) -> pd.DataFrame:
    """The audit as one table: a row per figure, a column per split."""
    data = {s: [audit["splits"][s][k] for k, _ in ROWS] for s in SPLITS}
    return pd.DataFrame(data, index=[label for _, label in ROWS], dtype=object)  # counts stay integers


def _fix_for(split_figures: dict[str, Any], policies: dict[str, Any]) -> str:
    fixes = []
    if split_figures["target_item_in_history"] or split_figures["target_item_in_profile"]:
        if policies.get("DATASET") == "release_beauty" and policies.get("RELEASE_WINDOWS") != "clean":
            fixes.append(
                "RELEASE_WINDOWS='clean' (drops exact duplicate rows and the target's own item from its window)"
            )
        elif policies.get("DEDUP") == "keep_all":
            fixes.append("DEDUP='keep_last' (one row per user-item pair)")
        else:
            fixes.append("DEDUP='keep_last'")
    if split_figures["copied_review_in_history"] or split_figures["copied_review_in_profile"]:
        if not policies.get("COLLAPSE_COPIES"):
            fixes.append("COLLAPSE_COPIES=true (one review copied onto several listings becomes one interaction)")
        else:  # after the collapse only repeats on the same item remain
            fixes.append("DEDUP='keep_last' (the identical reviews left are repeats on the same item)")
    return " and ".join(fixes) or "a stricter DEDUP / COLLAPSE_COPIES policy"


def problems(audit: dict[str, Any]) -> list[dict[str, Any]]:
    """What :func:`check_audit` refuses, as (kind, message) records (empty = all good)."""
    out = []
    thr = audit["threshold"]
    for split in SPLITS:
        f = audit["splits"][split]
        if f["examples"] and f["copied_label_share"] > thr:
            out.append(
                {
                    "kind": "leakage",
                    "split": split,
                    "message": (
                        f"leakage audit: {f['copied_label']} of {f['examples']} {split} targets "
                        f"({f['copied_label_share']:.1%}) have their own item ({f['target_item_in_history']} in the "
                        f"history, {f['target_item_in_profile']} in the profile) or an identical review and rating "
                        f"({f['copied_review_in_history']} in the history, {f['copied_review_in_profile']} in the "
                        f"profile) in their input, above LEAKAGE_THRESHOLD={thr:g}: their labels can be copied "
                        f"from the input. Fix: {_fix_for(f, audit['policies'])}."
                    ),
                }
            )
    for name, s in audit["eval_sets"].items():
        if s["examples"] and min(s["liked"], s["disliked"]) == 0:
            only = "liked" if s["disliked"] == 0 else "disliked"
            what = (
                f"the K={s['requested']} training set"
                if name.startswith("kshot")
                else f"the {s['split']} subsample ({s['parameter']}={s['requested']})"
            )
            out.append(
                {
                    "kind": "one_class",
                    "split": name,
                    "message": (
                        f"{what} holds only {only} examples ({s['liked']} liked, {s['disliked']} disliked): AUC is "
                        f"undefined and a model trained on it learns one answer. "
                        + (
                            _too_few_users(s, audit)
                            if not name.startswith("kshot") and not 0 < s["requested"] <= s["examples"]
                            else f"Change LIKE_THRESHOLD (now {audit.get('like_threshold')}; liked = rating > "
                            f"threshold), enlarge {s['parameter']}, or use a dataset with both labels."
                        )
                    ),
                }
            )
    return out


def _too_few_users(s: dict[str, Any], audit: dict[str, Any]) -> str:
    """The fix for a one-class validation/test set that already is the whole split: more users or
    another threshold, not a larger subsample (each user gives one example per split)."""
    users = audit.get("users", {}).get("users", s["examples"])
    threshold = f"change LIKE_THRESHOLD (now {audit.get('like_threshold')}; liked = rating > threshold)"
    head = (
        f"The {s['split']} split has only {s['examples']:,} example(s), one per user, and {s['parameter']}="
        f"{s['requested']} asks for {s['requested'] or 'all of them'}: the data has {users:,} user(s) after "
        f"the k-core"
    )
    if s["examples"] < 2:
        return (
            f"{head}, and a {s['split']} set with both labels needs at least 2 users (one who liked their "
            f"target and one who did not). Use a file with more users (or lower KCORE), or {threshold}."
        )
    return f"{head}. {threshold[0].upper()}{threshold[1:]}, or use a file with more users or both labels."


def check_audit(audit: dict[str, Any]) -> None:
    """Raise LeakageError (copied labels above threshold) or DataError (one-class set)."""
    found = problems(audit)
    leaks = [p["message"] for p in found if p["kind"] == "leakage"]
    if leaks:
        raise LeakageError(" ".join(leaks))
    one = [p["message"] for p in found if p["kind"] == "one_class"]
    if one:
        raise DataError(" ".join(one))


# ---------------------------------------------------------------------------------------
# degenerate data
# ---------------------------------------------------------------------------------------
def degenerate_flags(
    interactions: pd.DataFrame, audit: dict[str, Any], copies: dict[str, Any] | None = None
) -> list[str]:
    """Visible warnings about data that makes figures meaningless or fragile."""
    flags = []
    ratings = interactions["rating"].nunique()
    if ratings == 1:
        flags.append(
            f"every interaction has the same rating ({interactions['rating'].iloc[0]:g}): every label is the same"
        )
    like = float(interactions["liked"].mean()) if len(interactions) else 0.0
    if like > 0.95 or like < 0.05:
        flags.append(f"like rate {like:.1%}: one label dominates, so AUC intervals are wide and accuracy means little")
    n_items = interactions["item_id"].nunique()
    if n_items < 100:
        flags.append(f"only {n_items} items: item like-rates and item descriptions are shared by most examples")
    n_users = interactions["user_id"].nunique()
    if n_users < 100:
        flags.append(f"only {n_users} users: at most {n_users} examples per split")
    u = audit["users"]
    if u["constant_rater_share"] and u["constant_rater_share"] > 0.1:
        flags.append(
            f"{u['constant_raters']} of {u['users']} users ({u['constant_rater_share']:.0%}) give "
            f"one rating to everything: their history like-rate states their label"
        )
    for split in ("valid", "test"):
        f = audit["splits"][split]
        if f["examples"] and 0 < min(f["liked"], f["disliked"]) < 10:
            flags.append(
                f"{split} split: only {min(f['liked'], f['disliked'])} "
                f"{'disliked' if f['disliked'] < f['liked'] else 'liked'} examples, so its AUC "
                f"interval is very wide"
            )
        a = f["user_like_rate_auc"]
        if a is not None and a >= 0.95:
            flags.append(
                f"{split} split: the user's history like-rate alone reaches AUC {a:.3f}: labels are "
                f"predictable from the history (check COLLAPSE_COPIES / DEDUP)"
            )
    if copies and copies.get("rows_that_would_be_removed") and not copies.get("rows_removed"):
        flags.append(
            f"COLLAPSE_COPIES is off: {copies['rows_that_would_be_removed']} rows are copies of one "
            f"review onto other listings"
        )
    return flags
