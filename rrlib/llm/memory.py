"""Handing a finished model's memory back before the next one loads."""

from __future__ import annotations


def release_memory() -> None:
    """Collect garbage (trainers hold reference cycles), empty the CUDA cache and hand freed heap
    pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere), so one finished model does
    not add to the next one's peak."""
    import ctypes
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
