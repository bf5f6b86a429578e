"""Versioned prompt templates for the student model (finetuning in 06, prediction in 07).

One prompt layout per LLM method of :mod:`rrlib.methods.registry` (wording written for this
project from ReasoningRec's Table 1 and section 4.2); what a method shows is its registry
``inputs``:

* reasoning methods (``reasoningrec`` and its ablations, ``zeroshot_reasoningrec``): role, user
  profile (if shown), the k most recent items with liked/disliked, the target, guardrails against
  invented facts, and the instruction to answer ``Prediction: Yes`` or ``Prediction: No`` first,
  then reason;
* prediction-only methods (``tallrec``, ``zeroshot_vanilla``): the liked and disliked recent items
  and the target; the answer is the prediction alone.

Every item is shown as a card (:meth:`rrlib.prompts.items.ItemCatalog.card`): title and known
attributes, plus the description for methods that see descriptions; the "w/o description"
ablation keeps titles and attributes.

The completion always starts with the prediction (``Prediction: Yes``): the Yes/No probability
that gives the AUC is read at that position, so it must come before the reasoning. The
generation and score caches key on ``TEMPLATE_VERSION``, so **any change to the wording must
bump it** (tests/test_student_prompts.py pins a hash of the rendered text).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from rrlib.data.schema import as_list
from rrlib.errors import MethodError
from rrlib.llm.base import Message
from rrlib.methods.registry import MethodSpec
from rrlib.methods.registry import get as get_method
from rrlib.prompts.answers import PREDICTION_PREFIX, prediction_line
from rrlib.prompts.exp3rt import RatingContext
from rrlib.prompts.items import ItemCatalog, usable_text
from rrlib.prompts.teacher import DOMAINS, ROLES

TEMPLATE_NAME = "student"
TEMPLATE_VERSION = "student-v2"

NO_PROFILE_TEXT = "No profile available for this user."
NO_HISTORY_TEXT = "(no earlier interactions recorded)"


def method_spec(method: str) -> MethodSpec:
    """The registry entry of an LLM method (the student answers only those)."""
    spec = get_method(method)
    if not spec.llm:
        raise MethodError(
            f"method {method!r} is a {spec.kind} method, not an LLM student; its prompt does not "
            f"exist (check METHODS / EVAL_METHODS)."
        )
    return spec


@dataclass(frozen=True)
class PromptContext:
    """Everything a prompt needs besides the example row: the item catalogue and user profiles by
    id (missing ones are allowed and rendered as 'not available')."""

    catalog: ItemCatalog
    profiles: Mapping[str, str] = field(default_factory=dict)
    domain: str = "beauty"

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ValueError(
                f"PromptContext.domain={self.domain!r} is not one of {list(DOMAINS)} (set DOMAIN or DATASET)."
            )

    @classmethod
    def from_tables(
        cls,
        items: pd.DataFrame,
        descriptions: pd.DataFrame | None = None,
        profiles: pd.DataFrame | None = None,
        domain: str = "beauty",
    ) -> "PromptContext":
        """Build from the items table and (optionally) the enrichment tables of notebooks
        02/03; only descriptions/profiles with a usable status (ok, too_long_trimmed) are shown."""
        prof: dict[str, str] = {}
        if profiles is not None:
            for col in ("user_id", "profile"):
                if col not in profiles.columns:
                    raise ValueError(f"user profiles table lacks column {col!r}; rerun 03_user_profiles.")
            status = profiles["status"] if "status" in profiles.columns else ["ok"] * len(profiles)
            source = profiles["source"] if "source" in profiles.columns else ["generated"] * len(profiles)
            prof = {
                str(u): str(p).strip()
                for u, p, s, src in zip(profiles["user_id"], profiles["profile"], status, source)
                if usable_text(p, s) and src != "no_history"
            }
        return cls(catalog=ItemCatalog.from_tables(items, descriptions), profiles=prof, domain=domain)

    @classmethod
    def from_run(cls, paths, domain: str, method: str) -> "PromptContext":
        """Load what ``method`` shows from a run folder: titles and attributes always,
        descriptions (02) and profiles (03) only when the method shows them. A rating method
        (EXP3RT) gets its own context, :meth:`rrlib.prompts.exp3rt.RatingContext.from_run`."""
        spec = method_spec(method)
        if spec.task == "rating":
            return RatingContext.from_run(paths, domain)  # type: ignore[return-value]
        items = pd.read_parquet(paths.require(paths.items, "01_data_prep"))
        descriptions = (
            pd.read_parquet(paths.require(paths.item_descriptions, "02_item_descriptions"))
            if spec.shows("descriptions")
            else None
        )
        profiles = (
            pd.read_parquet(paths.require(paths.user_profiles, "03_user_profiles")) if spec.shows("profile") else None
        )
        return cls.from_tables(items, descriptions, profiles, domain=domain)

    def title(self, item_id: str) -> str:
        return self.catalog.title(item_id)

    def profile(self, user_id: str) -> str:
        return self.profiles.get(str(user_id)) or NO_PROFILE_TEXT


def _history(example: pd.Series) -> list[tuple[str, bool]]:
    for col in ("history_item_ids", "history_liked", "user_id", "target_item_id"):
        if col not in example.index:
            raise ValueError(
                f"example {example.get('example_id', '?')} lacks column {col!r}; the examples "
                f"table was not written by this version of 01_data_prep."
            )
    ids = [str(i) for i in as_list(example["history_item_ids"])]
    liked = [bool(x) for x in as_list(example["history_liked"])]
    if len(ids) != len(liked):
        raise ValueError(
            f"example {example.get('example_id', '?')}: history_item_ids has {len(ids)} entries "
            f"but history_liked has {len(liked)}; rerun 01_data_prep."
        )
    return list(zip(ids, liked))


#: how each domain's catalogue and its checkable facts are named in the prompts
_CATALOGUE = {
    "movies": "movies",
    "beauty": "beauty and personal-care products",
    "fashion": "fashion products",
    "instruments": "musical instruments and music gear",
}
_FACTS = {
    "movies": "plot points, cast, genres",
    "beauty": "ingredients, brands, prices",
    "fashion": "materials, sizes, brands, prices",
    "instruments": "sound, build quality, compatibility, brands, prices",
}


def _system(domain: str, with_reasoning: bool) -> str:
    role = ROLES[domain]
    verb = "watched" if domain == "movies" else "bought"
    text = (
        f"You are a recommender system for {_CATALOGUE[domain]}. From what a {role.person} has {verb} "
        f"before and how they rated it, you predict whether they will like a new {role.item}"
    )
    return text + (
        ", and you explain the prediction using only the information you are given." if with_reasoning else "."
    )


def _guardrails(domain: str) -> str:
    role = ROLES[domain]
    return (
        "Rules:\n"
        f"- Use only the information above. Do not invent {role.item} features ({_FACTS[domain]}) or facts "
        f"about the {role.person} that are not stated.\n"
        f"- If the information is thin, base the prediction on what is given and say what is missing."
    )


def build_messages(method: str, example: pd.Series, ctx: PromptContext) -> list[Message]:
    """The chat prompt (system + user turns) for one example under one method."""
    spec = method_spec(method)
    if spec.task != "like":
        raise MethodError(
            f"method {method!r} answers {spec.task}s: its prompt is "
            f"rrlib.prompts.exp3rt.rating_messages (RatingContext.student_messages)."
        )
    role = ROLES[ctx.domain]
    history = _history(example)
    user_id, target = str(example["user_id"]), str(example["target_item_id"])
    with_description = spec.shows("descriptions")

    def show(item_id: str) -> str:
        return ctx.catalog.card(item_id, with_description)

    if not spec.reasons:  # TALLRec-style: item cards, liked/disliked, answer only
        liked = [show(i) for i, liked in history if liked]
        disliked = [show(i) for i, liked in history if not liked]
        user = (
            f"A {role.person}'s recent {role.items}, oldest first, split by whether they liked them.\n"
            f"Liked: {'; '.join(liked) if liked else 'none'}\n"
            f"Disliked: {'; '.join(disliked) if disliked else 'none'}\n\n"
            f"Target {role.item}: {show(target)}\n\n"
            f"Will the {role.person} like the target {role.item}? Answer with exactly "
            f'"{PREDICTION_PREFIX} Yes" or "{PREDICTION_PREFIX} No" and nothing else.'
        )
        return [{"role": "system", "content": _system(ctx.domain, False)}, {"role": "user", "content": user}]

    parts = []
    if spec.shows("profile"):
        parts.append(f"{role.person.capitalize()} profile:\n{ctx.profile(user_id)}")
    if history:
        lines = [f"{n}. {show(i)} -> {'liked' if liked else 'disliked'}" for n, (i, liked) in enumerate(history, 1)]
        parts.append(
            f"The {role.person}'s {len(history)} most recent {role.items}, oldest first, with their "
            f"reaction:\n" + "\n".join(lines)
        )
    else:
        parts.append(f"The {role.person}'s recent {role.items}: {NO_HISTORY_TEXT}")
    parts.append(f"Target {role.item}:\n{show(target)}")
    parts.append(_guardrails(ctx.domain))
    parts.append(
        f"Task: will the {role.person} like the target {role.item}? Start your answer with exactly "
        f'"{PREDICTION_PREFIX} Yes" or "{PREDICTION_PREFIX} No" on the first line. Then, step by step, '
        f"name the features the {role.person} liked or disliked in earlier {role.items} and explain how "
        f"they bear on the target {role.item}."
    )
    return [{"role": "system", "content": _system(ctx.domain, True)}, {"role": "user", "content": "\n\n".join(parts)}]


def completion(label: int, reasoning: str, method: str) -> str:
    """The training target: the prediction line FIRST, then (reasoning methods) the reasoning."""
    spec = method_spec(method)
    head = prediction_line(int(label))
    if not spec.reasons:
        return head
    if not isinstance(reasoning, str) or not reasoning.strip():
        raise ValueError(
            f"method {method!r} trains on reasoning, but the reasoning text is empty; "
            f"rerun 05_reasoning_generation for these examples."
        )
    return f"{head}\n{reasoning.strip()}"


def conversation(method: str, example: pd.Series, ctx: PromptContext, reasoning: str = "") -> dict:
    """One prompt/completion pair in trl's conversational form."""
    return {
        "prompt": build_messages(method, example, ctx),
        "completion": [{"role": "assistant", "content": completion(int(example["label"]), reasoning, method)}],
    }


def render_all(methods: Sequence[str], example: pd.Series, ctx: PromptContext) -> dict[str, str]:
    """The user turn of every method for one example (for side-by-side display)."""
    return {m: build_messages(m, example, ctx)[-1]["content"] for m in methods}
