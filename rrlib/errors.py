"""Every error the workbook raises on purpose, under one base class.

Callers can catch :class:`RRLibError` to handle any project error, or a subclass for one kind.
Each subclass also derives from the built-in exception it used to be (``ValueError``,
``RuntimeError``, ``FileNotFoundError``), so ``except ValueError`` keeps working.

Messages name what is wrong and where (file, line, parameter, method) and how to fix it.
"""
from __future__ import annotations


class RRLibError(Exception):
    """Base class of every error raised on purpose by rrlib."""


class ParamError(RRLibError, ValueError):
    """A parameter file or override names an unknown key or has a wrong type or value."""


class DataError(RRLibError, ValueError):
    """A dataset file is missing, damaged or holds values the pipeline cannot use."""


class LeakageError(DataError):
    """The leakage audit found more label-bearing overlap than LEAKAGE_THRESHOLD allows."""


class CorruptFileError(RRLibError, ValueError):
    """A file the workbook wrote (a manifest, a results record, a state file) cannot be parsed."""


class MissingArtifactError(RRLibError, FileNotFoundError):
    """An artifact an earlier notebook writes is missing from the run folder."""


class RunError(RRLibError, RuntimeError):
    """The run cannot start or continue (collision, bad --only, parameters differ on resume)."""


class ModelLoadError(RRLibError, RuntimeError):
    """A model could not be found, loaded or configured as asked."""


class EmbeddedModelError(ModelLoadError):
    """The package that ships an embedded model is missing or incomplete."""


class PromptTooLongError(RRLibError, ValueError):
    """A prompt cannot be cut to fit the context by the truncation policy."""


class ServerError(RRLibError, RuntimeError):
    """An LLM server could not be reached, refused a request or answered nonsense."""


class PredictionsError(RRLibError, ValueError):
    """A predictions or rankings table breaks the contract of :mod:`rrlib.predictions`."""


class MethodError(RRLibError, ValueError):
    """A method name is unknown or used where its kind does not fit."""


class TrainingConfigMismatch(RRLibError, RuntimeError):
    """An adapter folder holds a run trained with a different configuration."""


class ReportError(RRLibError, ValueError):
    """The inspection inputs cannot give what was asked (unknown method or user, empty selection)."""


__all__ = ["RRLibError", "CorruptFileError", "ParamError", "DataError", "LeakageError", "MissingArtifactError", "RunError",
           "ModelLoadError", "EmbeddedModelError", "PromptTooLongError", "ServerError", "PredictionsError",
           "MethodError", "TrainingConfigMismatch", "ReportError"]
