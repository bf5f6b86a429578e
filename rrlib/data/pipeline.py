"""Notebook 01 in one call: read the dataset, process it as the paper does, audit it for
leakage, write the tables, data card and plots into the run folder (or refuse, see
:func:`prepare`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rrlib.config.params import defaults, validate
from rrlib.config.paths import RunPaths, resolve_path
from rrlib.io import write_json_atomic, write_text_atomic

from .audit import check_audit
from .card import FIGURE2_PNG, RATINGS_PNG, build_card, card_markdown, plot_figure2, plot_ratings
from .errors import DataError
from .loaders import CATEGORY_DOMAINS, RawDataset, load_dataset
from .processing import build_tables
from .storage import Tables, write_tables

DOMAINS = {
    "ml1m": "movies",
    "ml_latest_small": "movies",
    "beauty": "beauty",
    "embedded_beauty": "beauty",
    "release_beauty": "beauty",
    "fashion": "fashion",
    "amazon_instruments": "instruments",
}


def domain_of(params: dict[str, Any]) -> str:
    """The prompt domain: DOMAIN when set, else implied by DATASET (amazon2018: by AMAZON_CATEGORY)."""
    if params.get("DOMAIN"):
        return params["DOMAIN"]
    dataset = params.get("DATASET", "embedded_beauty")
    if dataset == "amazon2018" and params.get("AMAZON_CATEGORY") in CATEGORY_DOMAINS:
        return CATEGORY_DOMAINS[params["AMAZON_CATEGORY"]]
    if dataset not in DOMAINS:
        what = (
            f"AMAZON_CATEGORY={params.get('AMAZON_CATEGORY', '')!r}"
            if dataset == "amazon2018"
            else f"DATASET={dataset!r}"
        )
        raise DataError(
            f"{what} implies no domain: set DOMAIN to movies, beauty, fashion, instruments or books "
            f"(the wording of every prompt depends on it)."
        )
    return DOMAINS[dataset]


def full_params(params: dict[str, Any]) -> dict[str, Any]:
    """The given parameters (validated) over the schema defaults."""
    return {**defaults(), **validate(dict(params), where="data parameters")}


def load_raw(params: dict[str, Any]) -> RawDataset:
    """The dataset named by DATASET, read (or downloaded) as DATA_DIR / CACHE_DIR say."""
    return _load(full_params(params))


def _load(p: dict[str, Any]) -> RawDataset:
    return load_dataset(
        p["DATASET"],
        resolve_path(p["DATA_DIR"]) if p["DATA_DIR"] else "",
        resolve_path(p["CACHE_DIR"]),
        p["ALLOW_DOWNLOAD"],
        encoding=p["ENCODING"],
        date_order=p["DATE_ORDER"],
        rating_scale=p["RATING_SCALE"],
        amazon_category=p["AMAZON_CATEGORY"],
    )


def prepare(
    params: dict[str, Any], paths: RunPaths, progress: bool = True, raw: RawDataset | None = None
) -> dict[str, Any]:
    """Build and write interactions/items/users/examples Parquet tables, the data card
    (JSON + Markdown) and the plots; return the data-card dict. ``raw``: an already loaded
    dataset (from :func:`load_raw` with the same parameters), to avoid reading it twice.

    Refuses (after writing the data card, without the tables) with LeakageError when the
    leakage audit finds more copied labels than LEAKAGE_THRESHOLD, and with DataError when a
    set used to train or evaluate holds one class only (:mod:`rrlib.data.audit`)."""
    p = full_params(params)
    domain = domain_of(p)
    if raw is None:
        raw = _load(p)
    elif raw.name != p["DATASET"]:
        raise DataError(f"prepare(): the raw dataset given is {raw.name!r} but DATASET={p['DATASET']!r}.")
    built = build_tables(raw, p, progress=progress)
    tables = Tables(built.interactions, built.items, built.users, built.examples)
    paths.data.mkdir(parents=True, exist_ok=True)
    card = build_card(built, raw.source, p, domain)
    if not card["audit"]["passed"]:
        # refuse: the card (with the audit) is written for inspection, the tables are not, and
        # tables of an earlier run in this folder are removed so no later step reads them
        for name in ("interactions", "items", "users", "examples"):
            getattr(paths, name).unlink(missing_ok=True)
        _write_card(card, paths)
        check_audit(card["audit"])
    card["tables"] = write_tables(tables, paths)
    card["plots"] = {
        "figure2": str(
            plot_figure2(
                built.figure2,
                card["kcore"]["k"],
                paths.data / FIGURE2_PNG,
                f"{p['DATASET']}: users with at least k interactions",
            )
        ),
        "rating_distribution": str(
            plot_ratings(
                card["rating_distribution"], p["LIKE_THRESHOLD"], paths.data / RATINGS_PNG, f"{p['DATASET']}: ratings"
            )
        ),
    }
    _write_card(card, paths)
    return card


def _write_card(card: dict[str, Any], paths: RunPaths) -> None:
    write_json_atomic(paths.data_card_json, card)
    write_text_atomic(paths.data_card_md, card_markdown(card))


def read_card(paths: RunPaths) -> dict[str, Any]:
    return json.loads(paths.require(paths.data_card_json, "01_data_prep").read_text())


def figure_paths(paths: RunPaths) -> dict[str, Path]:
    return {"figure2": paths.data / FIGURE2_PNG, "rating_distribution": paths.data / RATINGS_PNG}
