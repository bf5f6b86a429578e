"""The data layer's error type: :class:`rrlib.errors.DataError` (re-exported here so that
``from rrlib.data import DataError`` and ``rrlib.errors.DataError`` are the same class, and
``LeakageError`` is one of them)."""
from __future__ import annotations

from ..errors import DataError, LeakageError

__all__ = ["DataError", "LeakageError"]
