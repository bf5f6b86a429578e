"""What notebook 07 holds when a family's views run (:mod:`rrlib.evaluate.families`), in a module of
its own so that the family modules and the table of families import it without a circle."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from rrlib.config.params import Config
from rrlib.config.paths import RunPaths
from rrlib.data import Tables
from rrlib.evaluate.plan import EvaluationPlan
from rrlib.evaluate.results import Evaluation


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


__all__ = ["EvaluationContext"]
