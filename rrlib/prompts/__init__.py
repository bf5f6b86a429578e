"""Prompt templates. ``teacher`` renders the enrichment prompts of notebooks 02-05 and
``postprocess`` cleans and checks what the teacher writes, and ``explainer`` (RecPIE's explanation
prompt) is imported on its own as ``rrlib.prompts.explainer``. The student's finetuning and
prediction prompts read each method's inputs from the registry, so they live after it, in
:mod:`rrlib.student.prompts`."""

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
