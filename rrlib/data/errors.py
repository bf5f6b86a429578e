"""The one exception type of the data layer."""
from __future__ import annotations


class DataError(ValueError):
    """A dataset file or data parameter is unusable. The message names the file, line or
    column that is wrong and says how to fix it."""
