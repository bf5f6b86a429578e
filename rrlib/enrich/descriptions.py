"""Item descriptions (notebook 02, paper section 3.2): an n-word description per item from its
title, attributes, metadata text, Algorithm-1 sampled reviews and (movies) plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from rrlib.config.params import Config
from rrlib.data.schema import as_list
from rrlib.enrich.generation import (
    DESCRIPTION_COLUMNS,
    StepOutput,
    _imported_row,
    _table,
    generated_rows,
    step_summary,
    teacher_request,
)
from rrlib.llm.base import GenerationRequest
from rrlib.prompts.postprocess import Generator
from rrlib.prompts.teacher import ItemFacts


def item_facts(row: Mapping[str, Any], plot: str = "") -> ItemFacts:
    reviews = tuple((float(r["rating"]), str(r["text"])) for r in as_list(row.get("sampled_reviews")))
    return ItemFacts(
        item_id=str(row["item_id"]),
        title=str(row["title"]),
        attributes=str(row["attributes"] or ""),
        metadata_description=str(row["metadata_description"] or ""),
        reviews=reviews,
        plot=plot,
    )


def description_request(row: Mapping[str, Any], *, domain: str, cfg: Config, plot: str = "") -> GenerationRequest:
    return teacher_request(
        "item_description",
        cfg,
        words=cfg.enrich.description_words,
        domain=domain,
        tag=str(row["item_id"]),
        item=item_facts(row, plot),
        n_words=cfg.enrich.description_words,
    )


def generate_descriptions(
    items: pd.DataFrame,
    item_ids: Sequence[str],
    *,
    domain: str,
    cfg: Config,
    generator: Generator,
    imported: Mapping[str, str] | None = None,
    plots: Mapping[str, str] | None = None,
) -> StepOutput:
    """Descriptions of ``item_ids``: imported where ``imported`` has one, generated otherwise."""
    imported = imported or {}
    plots = plots or {}
    by_id = items.assign(item_id=items["item_id"].astype(str)).set_index("item_id", drop=False)
    missing = [i for i in item_ids if i not in by_id.index]
    if missing:
        raise ValueError(f"{len(missing)} item id(s) are not in the items table, e.g. {missing[:3]}.")
    rows = [_imported_row("item_id", i, imported[i]) for i in item_ids if i in imported]
    todo = [i for i in item_ids if i not in imported]
    requests = {
        i: description_request(by_id.loc[i].to_dict(), domain=domain, cfg=cfg, plot=plots.get(i, "")) for i in todo
    }
    rows += generated_rows(generator, requests, "item_id", cfg.enrich.description_words, cfg, "item descriptions")
    table = _table(rows, "item_id", "description", item_ids, DESCRIPTION_COLUMNS)
    summary = step_summary(table, "description", imported=imported, needed=item_ids)
    summary["n_with_plot"] = sum(1 for i in item_ids if plots.get(i))
    return StepOutput(table, requests, summary)
