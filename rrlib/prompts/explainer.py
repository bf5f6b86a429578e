"""Versioned prompt of RecPIE's explainer: the student is asked to explain what a user wants from
their recent history (wording written for this project, in the style of the student prompts of
:mod:`rrlib.student.prompts`: same role line, item cards and guardrails).

The explanation is not a prediction: it names no target item and gives no Yes/No, because it is
written once per user and fused into the recommender for every later target of that user (see
:mod:`rrlib.methods.recpie`). Which interactions the prompt may show is decided by the caller
(:func:`rrlib.finetune.rl.explainer_inputs`: only those before the user's reward targets).

Generations and RL rounds key on ``TEMPLATE_VERSION``: **any change to the wording must bump it**
(tests/test_recpie_rl.py pins a hash of the rendered text).
"""

from __future__ import annotations

from collections.abc import Sequence

from rrlib.llm.base import Message
from rrlib.prompts.items import ItemCatalog
from rrlib.prompts.teacher import DOMAINS, ROLES

TEMPLATE_NAME = "recpie_explainer"
TEMPLATE_VERSION = "recpie-explainer-v1"

# every domain of rrlib.prompts.teacher.DOMAINS (instruments was missing: the smoke dataset failed in 06)
_CATALOGUE = {
    "movies": "movies",
    "beauty": "beauty and personal-care products",
    "fashion": "fashion products",
    "instruments": "musical instruments and music gear",
    "books": "books",
}


def explainer_messages(
    history: Sequence[tuple[str, bool]], catalog: ItemCatalog, domain: str, words: int, *, with_description: bool = True
) -> list[Message]:
    """System and user turns asking for a ``words``-word explanation of what the user wants, from
    their ``history`` of (item id, liked) pairs, oldest first."""
    if domain not in DOMAINS:
        raise ValueError(f"explainer prompt: domain {domain!r} is not one of {list(DOMAINS)} (set DOMAIN or DATASET).")
    if not history:
        raise ValueError(
            "explainer prompt: the history is empty; a user needs at least one interaction before the "
            "reward targets to be explained."
        )
    role = ROLES[domain]
    verb = "watched" if domain == "movies" else "bought"
    system = (
        f"You are a recommender system for {_CATALOGUE[domain]}. From what a {role.person} has {verb} before and how "
        f"they rated it, you explain what the {role.person} wants, using only the information you are given."
    )
    lines = [
        f"{n}. {catalog.card(i, with_description)} -> {'liked' if liked else 'disliked'}"
        for n, (i, liked) in enumerate(history, 1)
    ]
    user = "\n\n".join(
        [
            f"The {role.person}'s {len(history)} most recent {role.items}, oldest first, with their reaction:\n"
            + "\n".join(lines),
            "Rules:\n"
            f"- Use only the information above. Do not invent {role.item} features or facts about the {role.person}.\n"
            "- Describe preferences, not single items; say what they avoid as well as what they seek.",
            f"Task: in at most {int(words)} words, explain what this {role.person} wants in a {role.item}: the features "
            f"that make them like or dislike one. Write plain sentences.",
        ]
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


__all__ = ["TEMPLATE_NAME", "TEMPLATE_VERSION", "explainer_messages"]
