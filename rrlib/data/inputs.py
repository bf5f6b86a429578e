"""What reading changed in the input, and which input texts look like instructions to a model: the
data card's ``input_cleaning`` section (notebook 01).

* ``ids_stripped``: per file and id column (generic tables), the ids whose surrounding
  whitespace was stripped and how many of them then equalled another id and were merged with it
  (``' x '`` and ``x`` are one user) (:func:`rrlib.data.loaders.base.id_changes`);
* ``titles_rewritten``: titles that HTML unescaping and tag removal changed (``<b>Rose</b>``
  becomes ``Rose``, ``<script>alert(1)</script>`` becomes ``alert(1)``), with the first item ids
  (generic items tables);
* ``instruction_like_texts``: per text field that reaches the teacher's prompts (reviews and their
  headlines, titles, attributes, seller descriptions, user attributes), how many texts of the final
  tables match the heuristic of :func:`instruction_like` (orders to ignore
  the prompt, addresses to the model, forced answers such as ``Prediction: Yes``, chat-template
  markup, ``<data>`` tags), with the first ids. Nothing is removed: the teacher's prompts carry
  every such text inside a data block announced as data (:mod:`rrlib.prompts.datablock`).
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

HEURISTIC = (
    "rrlib.data.inputs.instruction_like: 'ignore/disregard ... previous/all ... instructions', "
    "'you are (now) an assistant/AI/model', 'act as', 'system prompt', 'new instructions', 'Prediction: Yes/No', "
    "'answer ... Rating: <digit>', chat-template tokens (<|...|>, [INST], <<SYS>>), 'system:'/'assistant:' lines, "
    "<data> tags"
)
#: (table, column, id columns) of the texts that reach teacher prompts
_FIELDS = (
    ("interactions", "review_text", ("user_id", "item_id")),
    ("interactions", "summary", ("user_id", "item_id")),
    ("items", "title", ("item_id",)),
    ("items", "attributes", ("item_id",)),
    ("items", "metadata_description", ("item_id",)),
    ("users", "attributes", ("user_id",)),
)


_INSTRUCTION_PATTERNS = tuple(
    re.compile(p, re.IGNORECASE | re.MULTILINE)
    for p in (
        r"\b(?:ignore|disregard|forget|override)\b[^.!?\n]{0,40}?\b(?:previous|prior|above|earlier|all|any|your|"
        r"the|these|those|system)\b[^.!?\n]{0,25}?\b(?:instructions?|prompts?|rules|directions|context|guidelines)\b",
        r"\byou\s+are\s+(?:now\s+)?(?:a|an|the)?\s*(?:helpful\s+|new\s+)?(?:assistant|ai|language\s+model|"
        r"model|chatbot|llm)\b",
        r"\b(?:act\s+as|pretend\s+to\s+be)\s+(?:a|an|the)?\s*(?:assistant|ai|model|chatbot|system|llm)\b",
        r"\b(?:system\s+prompt|system\s+message|new\s+instructions?|jailbreak)\b",
        r"\b(?:prediction|answer)\s*:\s*(?:yes|no)\b",
        r"\b(?:answer|respond|reply|say|output|print)\b[^.!?\n]{0,20}?\brating\s*:\s*\d",
        r"<\|[^|<>\s]{1,40}\|>|\[/?INST\]|<<\s*/?SYS\s*>>",
        r"^\s*(?:system|assistant)\s*:",
        r"<\s*/?\s*data\b",
    )
)


def instruction_like(text: object) -> bool:
    """Whether ``text`` looks like an instruction to a model (module docstring: the heuristic)."""
    if not isinstance(text, str) or not text:
        return False
    return any(p.search(text) for p in _INSTRUCTION_PATTERNS)


def instruction_like_counts(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """``{"heuristic": ..., "<table>.<column>": {"count": n, "first": [ids]}, "total": n}``."""
    out: dict[str, Any] = {"heuristic": HEURISTIC}
    total = 0
    for table, column, keys in _FIELDS:
        df = tables.get(table)
        if df is None or column not in df:
            continue
        hit = df[column].map(instruction_like).to_numpy(dtype=bool)
        first = df.loc[hit, list(keys)].head(5).astype(str).agg("/".join, axis=1).tolist() if hit.any() else []
        out[f"{table}.{column}"] = {"count": int(hit.sum()), "first": first}
        total += int(hit.sum())
    out["total"] = total
    return out


def input_cleaning(
    cleaning: dict[str, Any], interactions: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame
) -> dict[str, Any]:
    """The data card's ``input_cleaning`` section from what the reader recorded
    (:attr:`RawDataset.cleaning`) and the final tables."""
    stripped = list(cleaning.get("ids_stripped", []))
    return {
        "ids_stripped": stripped,
        "ids_changed": sum(int(r["ids_changed"]) for r in stripped),
        "ids_merged": sum(int(r["ids_merged"]) for r in stripped),
        "titles_rewritten": cleaning.get("titles_rewritten", {"count": 0, "first": []}),
        "instruction_like_texts": instruction_like_counts(
            {"interactions": interactions, "items": items, "users": users}
        ),
    }


def input_cleaning_markdown(section: dict[str, Any] | None) -> list[str]:
    """The data card's Markdown lines for ``input_cleaning``."""
    if not section:
        return []
    titles = section.get("titles_rewritten") or {}
    like = section.get("instruction_like_texts") or {}
    fields = {k: v for k, v in like.items() if isinstance(v, dict)}
    out = [
        "## Input cleaning",
        "",
        f"- Ids with surrounding whitespace stripped: {section.get('ids_changed', 0)}, of which merged with "
        f"another id: {section.get('ids_merged', 0)}.",
        f"- Titles rewritten (HTML entities decoded, tags removed): {titles.get('count', 0)}"
        + (f" (first items: {', '.join(titles['first'])})" if titles.get("first") else "")
        + ".",
        f"- Texts that look like instructions to a model: {like.get('total', 0)}"
        + (
            " ("
            + "; ".join(f"{k}: {v['count']} (first: {', '.join(v['first'])})" for k, v in fields.items() if v["count"])
            + ")"
            if like.get("total")
            else ""
        )
        + ". They are kept; teacher prompts carry them inside a data block announced as data. Heuristic: "
        + str(like.get("heuristic", "")),
        "",
    ]
    return out


__all__ = ["HEURISTIC", "input_cleaning", "input_cleaning_markdown", "instruction_like_counts"]
