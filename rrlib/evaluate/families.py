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

from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from rrlib.config.params import Config
from rrlib.config.paths import RunPaths
from rrlib.data import Tables
from rrlib.evaluate import exp3rt, recpie
from rrlib.evaluate.plan import EvaluationPlan
from rrlib.evaluate.results import Evaluation
from rrlib.evaluate.section import Section
from rrlib.methods import registry


@dataclass
class EvaluationContext:
    """What notebook 07 holds when the families' views run: the run's config and folders, the
    evaluation plan, the run's tables, the test examples, every prediction so far (``predictions``:
    the file's rows, older blocks included) and those of this plan (``scored``), the scored results,
    what the fitted methods reported (``baseline_info``) and the LLM prompt contexts by method
    (``contexts``; a view that needs another one adds it)."""

    cfg: Config
    paths: RunPaths
    plan: EvaluationPlan
    data: Tables
    test: pd.DataFrame
    predictions: pd.DataFrame
    scored: pd.DataFrame
    evaluation: Evaluation
    baseline_info: Mapping[str, Any]
    contexts: MutableMapping[str, Any]
    domain: str


#: family -> its views in notebook 07, in registry order when shown
EVALUATION_SECTIONS: dict[str, Callable[[EvaluationContext], list[Section]]] = {
    "recpie": recpie.sections,
    "exp3rt": exp3rt.sections,
}


def evaluation_sections(ctx: EvaluationContext) -> list[Section]:
    """Every declared family's views of this run, families in registry order."""
    return [
        s for family in registry.families() if family in EVALUATION_SECTIONS for s in EVALUATION_SECTIONS[family](ctx)
    ]


__all__ = ["EVALUATION_SECTIONS", "EvaluationContext", "evaluation_sections"]
