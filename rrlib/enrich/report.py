"""The report cells notebooks 02-05 share: a status table, a length histogram and the generation
speed, for any table of teacher-written texts (descriptions, profiles, reasoning)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from rrlib.prompts.postprocess import STATUSES, USABLE_STATUSES


def status_table(table: pd.DataFrame) -> pd.DataFrame:
    """Count and share of each post-processing status, by source (generated / imported / ...),
    with whether the status is usable downstream."""
    counts = table.groupby(["source", "status"]).size().rename("count").reset_index()
    counts["share"] = counts["count"] / max(len(table), 1)
    counts["usable"] = counts["status"].isin(USABLE_STATUSES)
    order = {s: i for i, s in enumerate(STATUSES)}
    return counts.sort_values(
        ["source", "status"], key=lambda c: c.map(order) if c.name == "status" else c, kind="stable"
    ).reset_index(drop=True)


def plot_lengths(table: pd.DataFrame, budget: int, what: str, ax=None):
    """Histogram of the word counts of the usable texts, with the word budget marked."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    usable = table[table["status"].isin(USABLE_STATUSES) & (table["n_words"] > 0)]
    ax.hist(usable["n_words"], bins=min(30, max(5, usable["n_words"].nunique())), color="tab:blue", alpha=0.8)
    ax.axvline(budget, color="tab:red", ls="--", label=f"budget {budget} words")
    ax.set_xlabel(f"words per {what}")
    ax.set_ylabel("texts")
    ax.set_title(f"{len(usable)} usable {what}s of {len(table)}")
    ax.legend()
    return ax


def speed(stats: Mapping[str, Any]) -> dict[str, float]:
    """Generation speed of a :class:`rrlib.llm.CachedGenerator` ``stats`` dict: new completion
    tokens per second and prompt + completion tokens per second (0 when nothing was generated)."""
    seconds = float(stats.get("seconds") or 0.0)
    completion, prompt = int(stats.get("completion_tokens") or 0), int(stats.get("prompt_tokens") or 0)
    if seconds <= 0 or not stats.get("generated"):
        return {"completion_tok_s": 0.0, "all_tok_s": 0.0, "seconds": seconds}
    return {
        "completion_tok_s": round(completion / seconds, 1),
        "all_tok_s": round((completion + prompt) / seconds, 1),
        "seconds": round(seconds, 1),
    }


def speed_line(stats: Mapping[str, Any]) -> str:
    """One printable line: what was generated, cached, and how fast."""
    s = speed(stats)
    line = (
        f"{stats.get('generated', 0)} generated, {stats.get('cached', 0)} from the cache, "
        f"{stats.get('completion_tokens', 0):,} new completion tokens"
    )
    if s["seconds"]:
        line += f" in {s['seconds']:.0f} s ({s['completion_tok_s']} tok/s; {s['all_tok_s']} tok/s with the prompt)"
    return line


__all__ = ["plot_lengths", "speed", "speed_line", "status_table"]
