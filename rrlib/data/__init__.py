"""Data preparation (notebook 01): loaders, the paper's preprocessing, Algorithm 1 review
sampling, K-shot sampling, the data card and plots. See :mod:`rrlib.data.loaders` for the
supported datasets and the generic format."""

from .audit import audit_table
from .card import flags_html, kshot_flags, kshot_table, splits_table
from .errors import DataError, LeakageError
from .loaders import DATASETS, RawDataset, load_dataset, release_files
from .pipeline import domain_of, figure_paths, load_raw, prepare, read_card
from .schema import eval_subset, kshot
from .storage import Tables, load_tables

__all__ = [
    "DataError",
    "LeakageError",
    "audit_table",
    "DATASETS",
    "RawDataset",
    "Tables",
    "domain_of",
    "eval_subset",
    "figure_paths",
    "flags_html",
    "kshot_flags",
    "kshot_table",
    "splits_table",
    "kshot",
    "load_dataset",
    "load_raw",
    "load_tables",
    "prepare",
    "read_card",
    "release_files",
]
