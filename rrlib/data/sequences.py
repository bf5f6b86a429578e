"""Users' chronological sequences and the positions of their split targets, for every model that
learns from interactions (bias baselines, sequential recommenders, rating baselines, retrievers).

The split follows the paper: in each user's chronological sequence the last interaction is the
test target, the second last the valid target, the third last the train target. "Training
interactions" are every interaction before the user's valid target; nothing at or after it is
used to fit anything.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: position of each split's target counted from the end of the user's sequence
SPLIT_OFFSET = {"train": 3, "valid": 2, "test": 1}


def user_sequences(interactions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each user's interactions in sequence order (by ``position``)."""
    need = ["user_id", "item_id", "liked", "position"]
    missing = [c for c in need if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions table lacks column(s) {missing} (see rrlib/data/schema.py).")
    # target_of (from 01) marks each split's target; it matters where the authors' own split
    # (release_beauty) does not put the targets at the last three positions.
    # rating and timestamp ride along when present (rating baselines fit on them).
    extra = [c for c in ("target_of", "rating", "timestamp") if c in interactions.columns]
    df = interactions[need + extra].copy()
    df["user_id"] = df["user_id"].astype(str)
    df["item_id"] = df["item_id"].astype(str)
    df["liked"] = df["liked"].astype(bool)
    df = df.sort_values(["user_id", "position"], kind="stable")
    return {u: g.reset_index(drop=True) for u, g in df.groupby("user_id", sort=False)}


def target_positions(examples: pd.DataFrame, sequences: dict[str, pd.DataFrame]) -> np.ndarray:
    """Index of each example's target in its user's sequence (train: 3rd last, valid: 2nd last,
    test: last), checked against ``target_item_id`` so that a table from a different split or
    ordering fails here instead of silently leaking labels."""
    out = np.empty(len(examples), dtype=int)
    recorded: list[int | None] = (
        examples["target_position"].astype(int).tolist()
        if "target_position" in examples.columns
        else [None] * len(examples)
    )
    for i, (eid, split, user, item) in enumerate(
        zip(examples["example_id"], examples["split"], examples["user_id"], examples["target_item_id"])
    ):
        if split not in SPLIT_OFFSET:
            raise ValueError(f"example {eid}: unknown split {split!r} (expected train, valid or test).")
        seq = sequences.get(str(user))
        if seq is None:
            raise ValueError(f"example {eid}: user {user} has no interactions in the interactions table.")
        given = recorded[i]
        pos = given if given is not None else len(seq) - SPLIT_OFFSET[split]
        if pos < 0 or pos >= len(seq) or seq["item_id"].iat[pos] != str(item):
            found = seq["item_id"].iat[pos] if pos >= 0 else None
            raise ValueError(
                f"example {eid}: its target item {item} is not the {split} target of user "
                f"{user} (position {pos} of {len(seq)} holds {found}); examples and "
                f"interactions come from different runs or splits — rerun 01_data_prep."
            )
        out[i] = pos
    return out


def training_cutoffs(sequences: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Per user, the number of leading interactions usable for training (before the valid target)."""
    out = {}
    for u, seq in sequences.items():
        held_out = seq.index[seq["target_of"].isin(["valid", "test"])] if "target_of" in seq.columns else []
        out[u] = int(min(held_out)) if len(held_out) else max(len(seq) - SPLIT_OFFSET["valid"], 0)
    return out


def training_interactions(interactions: pd.DataFrame) -> pd.DataFrame:
    """Every interaction strictly before its user's valid target (no valid/test label inside)."""
    seqs = user_sequences(interactions)
    cut = training_cutoffs(seqs)
    parts = [seq.iloc[: cut[u]].assign(user_id=u) for u, seq in seqs.items() if cut[u] > 0]
    if not parts:
        return pd.DataFrame(
            {
                "user_id": pd.Series(dtype=str),
                "item_id": pd.Series(dtype=str),
                "liked": pd.Series(dtype=bool),
                "position": pd.Series(dtype="int64"),
                "rating": pd.Series(dtype=float),
            }
        )
    return pd.concat(parts, ignore_index=True)
