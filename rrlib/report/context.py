"""What notebook 08 holds when a family's views run (:mod:`rrlib.report.families`), in a module of
its own so that the family modules and the table of families import it without a circle."""

from __future__ import annotations

from dataclasses import dataclass

from rrlib.config.paths import RunPaths
from rrlib.report.cases import InspectionInputs


@dataclass
class InspectionContext:
    """What notebook 08 holds when the families' views run: the run's folders, its inputs
    (:func:`rrlib.report.cases.load_inputs`), the prompt domain, how many examples a view shows
    (``N_SHOWCASE``) and the seed of its samples."""

    paths: RunPaths
    inputs: InspectionInputs
    domain: str
    n_showcase: int
    seed: int


__all__ = ["InspectionContext"]
