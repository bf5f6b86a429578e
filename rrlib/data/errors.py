"""The data layer's error type: :class:`rrlib.errors.DataError` (one class for the whole project)."""
from __future__ import annotations

from ..errors import DataError

__all__ = ["DataError"]
