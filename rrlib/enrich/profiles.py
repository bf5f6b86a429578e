"""User profiles (notebook 03, paper section 3.3): a q-word profile per user from their earliest
items, each marked liked or disliked with its description."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from rrlib.config.params import Config
from rrlib.data.schema import as_list
from rrlib.enrich.generation import (
    PROFILE_COLUMNS,
    StepOutput,
    _imported_row,
    _table,
    generated_rows,
    step_summary,
    teacher_request,
)
from rrlib.llm.base import GenerationRequest
from rrlib.prompts.items import ItemCatalog
from rrlib.prompts.postprocess import Generator
from rrlib.prompts.teacher import RatedItem


def rated(catalog: ItemCatalog, item_id: str, liked: bool) -> RatedItem:
    """An item of a teacher prompt: title, description (or its fallback) and liked/disliked."""
    return RatedItem(
        title=catalog.title(item_id),
        description=catalog.description(item_id),
        liked=bool(liked),
        attributes=catalog.attributes_of(item_id),
    )


def profile_request(
    user_row: Mapping[str, Any], catalog: ItemCatalog, *, domain: str, cfg: Config
) -> GenerationRequest:
    items = [
        rated(catalog, str(i), bool(liked))
        for i, liked in zip(as_list(user_row["profile_item_ids"]), as_list(user_row["profile_liked"]))
    ]
    return teacher_request(
        "user_profile",
        cfg,
        words=cfg.enrich.profile_words,
        domain=domain,
        tag=str(user_row["user_id"]),
        items=items,
        q_words=cfg.enrich.profile_words,
    )


def generate_profiles(
    users: pd.DataFrame,
    user_ids: Sequence[str],
    catalog: ItemCatalog,
    *,
    domain: str,
    cfg: Config,
    generator: Generator,
    imported: Mapping[str, str] | None = None,
) -> StepOutput:
    """Profiles of ``user_ids``: imported where available; '' with status 'no_history' for a
    user without profile items; generated otherwise."""
    imported = imported or {}
    by_id = users.assign(user_id=users["user_id"].astype(str)).set_index("user_id", drop=False)
    missing = [u for u in user_ids if u not in by_id.index]
    if missing:
        raise ValueError(f"{len(missing)} user id(s) are not in the users table, e.g. {missing[:3]}.")
    n_items = {u: len(as_list(by_id.loc[u, "profile_item_ids"])) for u in user_ids}
    rows = [_imported_row("user_id", u, imported[u]) for u in user_ids if u in imported]
    empty = [u for u in user_ids if u not in imported and n_items[u] == 0]
    rows += [
        {
            "user_id": u,
            "text": "",
            "source": "no_history",
            "status": "no_history",
            "n_words": 0,
            "detail": "no interactions before the history window",
            "attempts": 0,
            "truncated_prompt": False,
            "raw": "",
        }
        for u in empty
    ]
    todo = [u for u in user_ids if u not in imported and n_items[u] > 0]
    requests = {u: profile_request(by_id.loc[u].to_dict(), catalog, domain=domain, cfg=cfg) for u in todo}
    rows += generated_rows(generator, requests, "user_id", cfg.enrich.profile_words, cfg, "user profiles")
    table = _table(rows, "user_id", "profile", user_ids, PROFILE_COLUMNS, extra={"n_profile_items": n_items})
    summary = step_summary(table, "profile", imported=imported, needed=user_ids)
    summary["n_no_history"] = len(empty)
    return StepOutput(table, requests, summary)
