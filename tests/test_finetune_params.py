"""Every parameter that changes a trained adapter reaches notebook 06: the runner passes a notebook
only the names its parameters cell declares, so an undeclared one would silently train with the
schema default."""

from pathlib import Path

from rrlib.config.params import defaults, notebook_parameters
from rrlib.finetune import RATING_TRAINING_PARAMS, TRAINING_PARAMS

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "06_finetune.ipynb"


def test_notebook_06_declares_every_training_parameter():
    declared = set(notebook_parameters(NOTEBOOK))
    wanted = set(TRAINING_PARAMS + RATING_TRAINING_PARAMS) & set(defaults())
    assert wanted - declared == set()
