"""A family's own view in notebooks 07 and 08: what a method family shows beyond the tables every
method shares (RecPIE's data-efficiency curve, EXP3RT's reranking tables, ...).

A family declares its views as functions that return :class:`Section` objects: notebook 07 reads
them through :func:`rrlib.evaluate.families.evaluation_sections`, notebook 08 through
:func:`rrlib.report.families.inspection_sections`. The notebooks never name a family: they show
each section (its explanation, lines, tables and images) and record
:func:`section_records` in the step's results, under the family's name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rrlib.methods import registry


@dataclass
class Section:
    """One view of a family: ``name`` is the family (the key of ``record`` in the step's results),
    ``about`` a Markdown explanation of what the view shows, ``lines`` printed text, ``tables``
    displayed under their captions, ``images`` the plots it wrote (shown as they are)."""

    name: str
    title: str
    about: str = ""
    lines: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    images: list[Path] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


def sections_by_family(views: Mapping[str, Callable[[Any], list[Section]]], ctx: Any) -> list[Section]:
    """Every family's views (``views``: family -> function of the step's context), families in
    registry order: notebooks 07 and 08 both show them this way."""
    return [s for family in registry.families() if family in views for s in views[family](ctx)]


def section_records(sections: Iterable[Section]) -> dict[str, dict[str, Any]]:
    """``{family: record}`` for the step's results: the records of one family's sections merged in
    order (a family with a section always has its key, even when the record is empty)."""
    out: dict[str, dict[str, Any]] = {}
    for s in sections:
        out.setdefault(s.name, {}).update(s.record)
    return out


__all__ = ["Section", "section_records", "sections_by_family"]
