"""Each family's own views in notebook 07, after the tables every method shares.

A family with more to show than its rows of the results table declares a function in
:data:`EVALUATION_SECTIONS` (family -> function of an :class:`EvaluationContext` returning its
:class:`~rrlib.evaluate.section.Section` objects), written in its own module of this step
(:mod:`rrlib.evaluate.recpie`, :mod:`rrlib.evaluate.exp3rt`). Every declared family is asked, in
registry order, whether or not the run holds its methods: the function decides what applies (and
says so when nothing does), and its record always lands in the results under the family's name.
The notebook only shows what comes back.
"""

from __future__ import annotations

from collections.abc import Callable

from rrlib.evaluate import exp3rt, recpie
from rrlib.evaluate.context import EvaluationContext
from rrlib.evaluate.section import Section, sections_by_family

#: family -> its views in notebook 07, in registry order when shown
EVALUATION_SECTIONS: dict[str, Callable[[EvaluationContext], list[Section]]] = {
    "recpie": recpie.sections,
    "exp3rt": exp3rt.sections,
}


def evaluation_sections(ctx: EvaluationContext) -> list[Section]:
    """Every declared family's views of this run, families in registry order."""
    return sections_by_family(EVALUATION_SECTIONS, ctx)


__all__ = ["EVALUATION_SECTIONS", "EvaluationContext", "evaluation_sections"]
