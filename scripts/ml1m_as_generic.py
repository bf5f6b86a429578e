#!/usr/bin/env python
"""Write MovieLens 1M (original ``::`` files) as a generic dataset folder, so a preset can be checked
on another MovieLens-format source through ``DATASET: generic`` (docs/learning_study.md, "another
dataset"). The output is ML-1M data: keep it out of the repository (GroupLens: no redistribution).

    python scripts/ml1m_as_generic.py ../shared/data/ml-1m outputs/generic_ml1m
    python -m rrlib run -f params/default.yaml -p DATASET generic -p DATA_DIR outputs/generic_ml1m \\
        -p DOMAIN movies -p MAX_USERS 610 --only 01 --run-id generic

Writes ``interactions.csv`` (user, item, rating, timestamp) from ``ratings.dat`` or the shared
partial ``ratings_PARTIAL_*.dat.gz``, and ``items.csv`` (item, title, genres) from ``movies.dat``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def ratings_file(folder: Path) -> Path:
    """The full ``ratings.dat`` when present, else the shared partial file."""
    for name in ("ratings.dat", *sorted(p.name for p in folder.glob("ratings_PARTIAL_*.dat.gz"))):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no ratings.dat or ratings_PARTIAL_*.dat.gz")


def read_dat(path: Path, names: list[str]) -> pd.DataFrame:
    return pd.read_csv(path, sep="::", engine="python", names=names, encoding="latin-1", dtype=str)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder with movies.dat and ratings")
    parser.add_argument("out", type=Path, help="generic dataset folder to write")
    args = parser.parse_args(argv)
    ratings = read_dat(ratings_file(args.source), ["user", "item", "rating", "timestamp"])
    movies = read_dat(args.source / "movies.dat", ["item", "title", "genres"])
    movies["genres"] = movies["genres"].str.replace("|", ", ", regex=False)
    args.out.mkdir(parents=True, exist_ok=True)
    ratings.to_csv(args.out / "interactions.csv", index=False)
    movies.to_csv(args.out / "items.csv", index=False)
    print(f"{len(ratings)} ratings of {ratings['user'].nunique()} users, {len(movies)} movies -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
