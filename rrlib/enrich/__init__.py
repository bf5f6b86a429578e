"""Teacher enrichment, notebooks 02-04 (and what 05 shares): what needs text (:mod:`.scope`),
import of existing texts (:mod:`.imports`), item descriptions (:mod:`.descriptions`, with movie
plots from :mod:`.movie_plots`), user profiles (:mod:`.profiles`), EXP3RT's review preferences and
profiles (:mod:`.preferences`), the tables and summaries every teacher step shares
(:mod:`.generation`) and the notebooks' report cells (:mod:`.report`).

Data flow: 01's tables -> :func:`enrichment_scope` -> :func:`load_import` -> generate only the
rest -> ``paths.item_descriptions`` / ``paths.user_profiles``. Profiles read the descriptions;
reasoning (:mod:`rrlib.reasoning`) reads both.
"""

from rrlib.enrich.descriptions import description_request, generate_descriptions, item_facts
from rrlib.enrich.generation import (
    DESCRIPTION_COLUMNS,
    PROFILE_COLUMNS,
    StepOutput,
    read_descriptions,
    read_profiles,
    read_table,
    render_chat,
    step_summary,
    write_table,
)
from rrlib.enrich.imports import import_coverage, import_fallbacks, imported_status, load_import, resolve_import
from rrlib.enrich.profiles import generate_profiles, profile_request, rated
from rrlib.enrich.scope import Scope, enrichment_scope, scoped_examples

__all__ = [
    "DESCRIPTION_COLUMNS",
    "PROFILE_COLUMNS",
    "Scope",
    "StepOutput",
    "description_request",
    "enrichment_scope",
    "generate_descriptions",
    "generate_profiles",
    "import_coverage",
    "import_fallbacks",
    "imported_status",
    "resolve_import",
    "item_facts",
    "load_import",
    "profile_request",
    "rated",
    "read_descriptions",
    "read_profiles",
    "read_table",
    "render_chat",
    "scoped_examples",
    "step_summary",
    "write_table",
]
