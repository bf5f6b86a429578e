"""Each family's own views in notebook 08, after the cases, failure types and report every method
shares.

A family with more to show declares a function in :data:`INSPECTION_SECTIONS` (family -> function
of an :class:`InspectionContext` returning its :class:`~rrlib.evaluate.section.Section` objects),
written in its own module of this step (:mod:`rrlib.report.recpie`, :mod:`rrlib.report.exp3rt`).
As in notebook 07 (:mod:`rrlib.evaluate.families`), every declared family is asked, in registry
order, and its record lands in the results under the family's name; the notebook only shows what
comes back.
"""

from __future__ import annotations

from collections.abc import Callable

from rrlib.evaluate.section import Section, sections_by_family
from rrlib.report import exp3rt, recpie
from rrlib.report.context import InspectionContext

#: family -> its views in notebook 08, in registry order when shown
INSPECTION_SECTIONS: dict[str, Callable[[InspectionContext], list[Section]]] = {
    "recpie": recpie.sections,
    "exp3rt": exp3rt.sections,
}


def inspection_sections(ctx: InspectionContext) -> list[Section]:
    """Every declared family's views of this run, families in registry order."""
    return sections_by_family(INSPECTION_SECTIONS, ctx)


__all__ = ["INSPECTION_SECTIONS", "InspectionContext", "inspection_sections"]
