"""The exception type of the data layer (defined with every other error in :mod:`rrlib.errors`)."""

from rrlib.errors import DataError, LeakageError

__all__ = ["DataError", "LeakageError"]
