"""Prompt templates. ``teacher`` renders the enrichment prompts of notebooks 02-05 and
``postprocess`` cleans and checks what the teacher writes; ``student`` (finetuning and
prediction prompts) is imported on its own as ``rrlib.prompts.student``, and ``explainer`` (RecPIE's
explanation prompt) as ``rrlib.prompts.explainer``."""

from rrlib.prompts.teacher import (
    DOMAINS,
    PAPER_SETTINGS,
    ROLES,
    TASKS,
    TEMPLATES,
    ItemFacts,
    RatedItem,
    TeacherTemplate,
    generation_settings,
    template_for,
)

__all__ = [
    "DOMAINS",
    "PAPER_SETTINGS",
    "ROLES",
    "TASKS",
    "TEMPLATES",
    "ItemFacts",
    "RatedItem",
    "TeacherTemplate",
    "generation_settings",
    "template_for",
]
