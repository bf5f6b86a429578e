"""How an item is shown to a model: one catalogue of titles, attributes and descriptions, and one
fallback when an item has no usable description. The teacher (profiles, reasoning), the student
and the report all read items through :class:`ItemCatalog`, so every prompt shows an item the
same way.

A prompt shows each item as a card: its title, its known attributes (brand, price, genre, year,
tags) and, where the method sees descriptions, its description (paper Table 1, as the authors'
prompt does). Attributes are always shown beside the title, so an item without a usable
description shows :data:`NO_DESCRIPTION` where the description would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from rrlib.prompts.postprocess import USABLE_STATUSES

#: the one text shown for an item that has neither a description nor attributes
NO_DESCRIPTION = "no description available"


def usable_text(text: object, status: object = "ok") -> bool:
    return isinstance(text, str) and bool(text.strip()) and str(status) in USABLE_STATUSES


@dataclass
class ItemCatalog:
    titles: Mapping[str, str]
    attributes: Mapping[str, str] = field(default_factory=dict)
    descriptions: Mapping[str, str] = field(default_factory=dict)
    #: ids whose description was asked for but missing (so the fallback was shown)
    fallbacks: set[str] = field(default_factory=set)

    @classmethod
    def from_tables(cls, items: pd.DataFrame, descriptions: pd.DataFrame | None = None) -> "ItemCatalog":
        """From notebook 01's items table and (optionally) notebook 02's descriptions table; only
        descriptions with a usable status (ok, too_long_trimmed) are kept."""
        for col in ("item_id", "title"):
            if col not in items.columns:
                raise ValueError(f"items table lacks column {col!r}; rerun 01_data_prep.")
        ids = items["item_id"].astype(str)
        attrs = (
            items["attributes"].fillna("").astype(str) if "attributes" in items.columns else pd.Series("", ids.index)
        )
        desc: dict[str, str] = {}
        if descriptions is not None and len(descriptions):
            for col in ("item_id", "description"):
                if col not in descriptions.columns:
                    raise ValueError(f"item descriptions table lacks column {col!r}; rerun 02_item_descriptions.")
            status = descriptions["status"] if "status" in descriptions.columns else ["ok"] * len(descriptions)
            desc = {
                str(i): str(d).strip()
                for i, d, s in zip(descriptions["item_id"], descriptions["description"], status)
                if usable_text(d, s)
            }
        return cls(
            titles=dict(zip(ids, items["title"].astype(str))),
            attributes={i: a.strip() for i, a in zip(ids, attrs) if a.strip()},
            descriptions=desc,
        )

    def title(self, item_id: str) -> str:
        return self.titles.get(str(item_id)) or f"item {item_id}"

    def attributes_of(self, item_id: str) -> str:
        return self.attributes.get(str(item_id), "")

    def has_description(self, item_id: str) -> bool:
        return str(item_id) in self.descriptions

    def description(self, item_id: str) -> str:
        """The usable description, else :data:`NO_DESCRIPTION` (the id is recorded in
        :attr:`fallbacks`)."""
        text = self.descriptions.get(str(item_id))
        if text:
            return text
        self.fallbacks.add(str(item_id))
        return NO_DESCRIPTION

    def card(self, item_id: str, with_description: bool) -> str:
        """``"Title" (attributes): description`` — the attributes only when known, the
        description only for methods that see descriptions (the fallback never repeats the
        attributes)."""
        head = f'"{self.title(item_id)}"'
        attrs = self.attributes_of(item_id)
        if attrs:
            head += f" ({attrs})"
        if not with_description:
            return head
        return f"{head}: {self.description(item_id)}"


__all__ = ["NO_DESCRIPTION", "ItemCatalog", "usable_text"]
