"""Every error the workbook raises on purpose, under one base class.

Callers can catch :class:`RRLibError` to handle any project error, or a subclass for one kind.
Each subclass also derives from the built-in exception it used to be (``ValueError``,
``RuntimeError``, ``FileNotFoundError``), so ``except ValueError`` keeps working.

Messages name what is wrong and where (file, line, parameter, method) and how to fix it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable


class RRLibError(Exception):
    """Base class of every error raised on purpose by rrlib.

    In a notebook (IPython), it shows as one short box: its kind, its message (which says how to
    fix it) and the notebook line that raised it, without rrlib's internal frames. ``%xmode
    verbose`` (or ``Plain``), :func:`full_tracebacks`, or ``RRLIB_TRACEBACK=full`` in the
    environment bring the full traceback back."""

    @property
    def _render_traceback_(self):  # IPython's hook: a list of lines replaces the traceback
        if _full_traceback_wanted():
            raise AttributeError("_render_traceback_")  # IPython then formats the full traceback
        return lambda: short_traceback(self)


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


class DeviceError(ParamError, ModelLoadError):
    """A parameter asks for something this machine cannot run (4/8-bit weights without a CUDA GPU
    or a bitsandbytes CPU backend, fp16 training on a CPU, more processes than devices). Raised
    before any work starts (``validate``, the runner's preflight) and again at model load; the
    message names the parameter and the fix. A ParamError, so ``validate`` exits 2 on it."""


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


class RatingTokenError(MethodError):
    """The rating cannot be read at one position as one token per rating with this tokenizer."""


class TrainingConfigMismatch(RRLibError, RuntimeError):
    """An adapter folder holds a run trained with a different configuration."""


class ReportError(RRLibError, ValueError):
    """The inspection inputs cannot give what was asked (unknown method or user, empty selection)."""


# ---------------------------------------------------------------------------------------
# How a workbook error shows in a notebook
# ---------------------------------------------------------------------------------------
#: set by :func:`full_tracebacks`; ``RRLIB_TRACEBACK=full`` in the environment turns it on at import
_FULL_TRACEBACKS = [os.environ.get("RRLIB_TRACEBACK", "").strip().lower() == "full"]
_RED, _BOLD, _DIM, _RESET = "\x1b[31m", "\x1b[1m", "\x1b[2m", "\x1b[0m"


def full_tracebacks(on: bool = True) -> None:
    """Show workbook errors in notebooks with their full traceback (``on=False``: the short box)."""
    _FULL_TRACEBACKS[0] = bool(on)


def _full_traceback_wanted() -> bool:
    if _FULL_TRACEBACKS[0]:
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return True
    shell = get_ipython()
    mode = getattr(getattr(shell, "InteractiveTB", None), "mode", "Context")
    return mode in ("Verbose", "Plain")


def _notebook_line(error: BaseException) -> str:
    """The last frame of the traceback that belongs to notebook code (not a module file)."""
    found = ""
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        name = code.co_filename
        if name.startswith("<") or "ipykernel_" in name or "/ipython-input" in name:
            import linecache

            line = linecache.getline(name, tb.tb_lineno).strip()
            found = f"line {tb.tb_lineno}" + (f": {line}" if line else "")
        tb = tb.tb_next
    return found


def short_traceback(error: BaseException) -> list[str]:
    """The lines a notebook shows for a workbook error: its kind and message, and where in the
    cell it was raised; the way to the full traceback last."""
    lines = [f"{_RED}{_BOLD}{type(error).__name__}{_RESET}: {error}"]
    where = _notebook_line(error)
    if where:
        lines.append(f"{_DIM}raised by this cell's {where}{_RESET}")
    lines.append(
        f"{_DIM}(a workbook error: its message says what to change. The full traceback: "
        f"`%xmode verbose`, then `%tb`){_RESET}"
    )
    return ["\n".join(lines)]


# ---------------------------------------------------------------------------------------
# Secrets in error texts
# ---------------------------------------------------------------------------------------
#: environment variables whose values are always masked (the server backend's default key)
SECRET_ENV_DEFAULT = ("OPENAI_API_KEY",)
#: shorter values are not treated as secrets: local servers accept dummy keys such as "x" or
#: "ollama", and masking those would garble every message that happens to contain them
SECRET_MIN_LENGTH = 8
MASK = "***"
#: token-looking text masked even when its value is unknown here
_TOKEN_PATTERNS = (
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{16,}"),
)


def secret_values(env_names: Iterable[str] = ()) -> list[str]:
    """The values of the environment variables ``env_names`` (plus :data:`SECRET_ENV_DEFAULT`)
    that are long enough to be secrets, longest first."""
    found = set()
    for name in (*env_names, *SECRET_ENV_DEFAULT):
        value = os.environ.get(name, "") if name else ""
        for v in (value, value.strip()):
            if len(v) >= SECRET_MIN_LENGTH:
                found.add(v)
    return sorted(found, key=len, reverse=True)


def mask_secrets(
    text: object, secrets: Iterable[str] = (), env_names: Iterable[str] = (), patterns: bool = True
) -> str:
    """``text`` with every secret replaced by ``***``: the given values, the values of the
    environment variables ``env_names`` and ``OPENAI_API_KEY``, each also as ``repr`` and JSON
    escape it (a header echoed in an exception or a JSON body), then any ``Bearer <token>`` and
    ``sk-...`` token (``patterns=False``: known values only, for model outputs, where "bearer"
    may be an ordinary word). Mask BEFORE truncating a text, or a cut key survives in part."""
    out = str(text)
    values = {s for s in secrets if s and len(s) >= SECRET_MIN_LENGTH} | set(secret_values(env_names))
    forms = set()
    for v in values:
        forms |= {v, repr(v)[1:-1], json.dumps(v)[1:-1], json.dumps(v, ensure_ascii=False)[1:-1]}
    for form in sorted(forms, key=len, reverse=True):
        out = out.replace(form, MASK)
    for pattern in _TOKEN_PATTERNS if patterns else ():
        out = pattern.sub(lambda m: f"{m.group(1)} {MASK}" if m.groups() else MASK, out)
    return out


__all__ = [
    "full_tracebacks",
    "short_traceback",
    "MASK",
    "SECRET_ENV_DEFAULT",
    "SECRET_MIN_LENGTH",
    "mask_secrets",
    "secret_values",
    "RRLibError",
    "CorruptFileError",
    "ParamError",
    "DataError",
    "LeakageError",
    "MissingArtifactError",
    "RunError",
    "ModelLoadError",
    "DeviceError",
    "EmbeddedModelError",
    "PromptTooLongError",
    "ServerError",
    "PredictionsError",
    "MethodError",
    "TrainingConfigMismatch",
    "ReportError",
]
