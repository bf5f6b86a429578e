"""Versioned prompt templates for the student model (finetuning in 05, prediction in 06).

One prompt layout per method (wording written for this project from ReasoningRec's Table 1
and section 4.2):

* ``reasoningrec``: role, user profile, the k most recent items with liked/disliked and their
  descriptions, the target's description, guardrails against invented facts, and the
  instruction to answer ``Prediction: Yes`` or ``Prediction: No`` first, then reason;
* ``reasoningrec_no_description``: as above with titles instead of descriptions (ablation);
* ``reasoningrec_no_profile``: as above without the user profile (ablation);
* ``tallrec``: titles and liked/disliked history only; the answer is the prediction alone;
* ``zeroshot_vanilla``: the TALLRec prompt given to the base model;
* ``zeroshot_reasoningrec``: the ReasoningRec prompt given to the base model.

The completion always starts with the prediction (``Prediction: Yes``): the Yes/No
probability that gives the AUC is read at that position, so it must come before the
reasoning. The generation and score caches key on ``TEMPLATE_VERSION``, so **any change to
the wording must bump it** (tests/test_student_prompts.py pins a hash of the rendered text).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pandas as pd

from rrlib.data.schema import as_list
from rrlib.llm.base import Message
from rrlib.prompts.postprocess import USABLE_STATUSES
from rrlib.prompts.teacher import DOMAINS, ROLES

TEMPLATE_NAME = "student"
TEMPLATE_VERSION = "student-v1"

#: the assistant turn starts with this; the Yes/No token is read right after it
PREDICTION_PREFIX = "Prediction:"
ANSWERS = {1: "Yes", 0: "No"}
NO_PROFILE_TEXT = "No profile available for this user."
NO_DESCRIPTION_TEXT = "no description available"
NO_HISTORY_TEXT = "(no earlier interactions recorded)"



@dataclass(frozen=True)
class MethodSpec:
    """What a method's prompt shows and what its answer holds."""
    name: str
    uses_profile: bool
    uses_descriptions: bool
    with_reasoning: bool  # the answer continues with reasoning after the prediction line
    finetuned: bool       # trained with LoRA in notebook 05 (else the base model answers)


METHOD_SPECS: dict[str, MethodSpec] = {
    "reasoningrec": MethodSpec("reasoningrec", True, True, True, True),
    "reasoningrec_no_description": MethodSpec("reasoningrec_no_description", True, False, True, True),
    "reasoningrec_no_profile": MethodSpec("reasoningrec_no_profile", False, True, True, True),
    "tallrec": MethodSpec("tallrec", False, False, False, True),
    "zeroshot_vanilla": MethodSpec("zeroshot_vanilla", False, False, False, False),
    "zeroshot_reasoningrec": MethodSpec("zeroshot_reasoningrec", True, True, True, False),
}
FINETUNED_METHODS = tuple(m for m, s in METHOD_SPECS.items() if s.finetuned)


def method_spec(method: str) -> MethodSpec:
    if method not in METHOD_SPECS:
        raise ValueError(f"unknown student method {method!r}; known methods: {list(METHOD_SPECS)} "
                         f"(check METHODS / EVAL_METHODS).")
    return METHOD_SPECS[method]


def _usable(text: object, status: object = "ok") -> bool:
    return isinstance(text, str) and bool(text.strip()) and str(status) in USABLE_STATUSES


@dataclass(frozen=True)
class PromptContext:
    """Everything a prompt needs besides the example row: item titles, item descriptions
    and user profiles by id (missing ones are allowed and rendered as 'not available')."""
    titles: Mapping[str, str]
    descriptions: Mapping[str, str] = field(default_factory=dict)
    profiles: Mapping[str, str] = field(default_factory=dict)
    domain: str = "beauty"

    def __post_init__(self):
        if self.domain not in DOMAINS:
            raise ValueError(f"PromptContext.domain={self.domain!r} is not one of {list(DOMAINS)} "
                             f"(set DOMAIN or DATASET).")

    @classmethod
    def from_tables(cls, items: pd.DataFrame, descriptions: pd.DataFrame | None = None,
                    profiles: pd.DataFrame | None = None, domain: str = "beauty") -> "PromptContext":
        """Build from the items table and (optionally) the enrichment tables of notebooks
        02/03; only descriptions/profiles with a usable status (ok, too_long_trimmed) are shown."""
        for col in ("item_id", "title"):
            if col not in items.columns:
                raise ValueError(f"items table lacks column {col!r}; rerun 01_data_prep.")
        titles = dict(zip(items["item_id"].astype(str), items["title"].astype(str)))
        desc: dict[str, str] = {}
        if descriptions is not None:
            for col in ("item_id", "description"):
                if col not in descriptions.columns:
                    raise ValueError(f"item descriptions table lacks column {col!r}; rerun 02_item_descriptions.")
            status = descriptions["status"] if "status" in descriptions.columns else ["ok"] * len(descriptions)
            desc = {str(i): str(d).strip() for i, d, s in zip(descriptions["item_id"], descriptions["description"],
                                                              status) if _usable(d, s)}
        prof: dict[str, str] = {}
        if profiles is not None:
            for col in ("user_id", "profile"):
                if col not in profiles.columns:
                    raise ValueError(f"user profiles table lacks column {col!r}; rerun 03_user_profiles.")
            status = profiles["status"] if "status" in profiles.columns else ["ok"] * len(profiles)
            source = profiles["source"] if "source" in profiles.columns else ["generated"] * len(profiles)
            prof = {str(u): str(p).strip() for u, p, s, src in zip(profiles["user_id"], profiles["profile"],
                                                                  status, source)
                    if _usable(p, s) and src != "no_history"}
        return cls(titles=titles, descriptions=desc, profiles=prof, domain=domain)

    @classmethod
    def from_run(cls, paths, params: Mapping, method: str) -> "PromptContext":
        """Load what ``method`` shows from a run folder: titles always, descriptions (02) and
        profiles (03) only when the method uses them."""
        from rrlib.data import domain_of  # late: rrlib.data imports heavy readers

        spec = method_spec(method)
        items = pd.read_parquet(paths.require(paths.items, "01_data_prep"))
        descriptions = (pd.read_parquet(paths.require(paths.item_descriptions, "02_item_descriptions"))
                        if spec.uses_descriptions else None)
        profiles = (pd.read_parquet(paths.require(paths.user_profiles, "03_user_profiles"))
                    if spec.uses_profile else None)
        return cls.from_tables(items, descriptions, profiles, domain=domain_of(dict(params)))

    def title(self, item_id: str) -> str:
        return self.titles.get(str(item_id)) or f"item {item_id}"

    def description(self, item_id: str) -> str:
        """The description, or the title marked as lacking one."""
        d = self.descriptions.get(str(item_id))
        return d if d else f"{self.title(item_id)} ({NO_DESCRIPTION_TEXT})"

    def profile(self, user_id: str) -> str:
        return self.profiles.get(str(user_id)) or NO_PROFILE_TEXT


_as_list = as_list


def _history(example: pd.Series) -> list[tuple[str, bool]]:
    for col in ("history_item_ids", "history_liked", "user_id", "target_item_id"):
        if col not in example.index:
            raise ValueError(f"example {example.get('example_id', '?')} lacks column {col!r}; the examples "
                             f"table was not written by this version of 01_data_prep.")
    ids = [str(i) for i in _as_list(example["history_item_ids"])]
    liked = [bool(x) for x in _as_list(example["history_liked"])]
    if len(ids) != len(liked):
        raise ValueError(f"example {example.get('example_id', '?')}: history_item_ids has {len(ids)} entries "
                         f"but history_liked has {len(liked)}; rerun 01_data_prep.")
    return list(zip(ids, liked))


#: how each domain's catalogue and its checkable facts are named in the prompts
_CATALOGUE = {"movies": "movies", "beauty": "beauty and personal-care products", "fashion": "fashion products",
              "instruments": "musical instruments and music gear"}
_FACTS = {"movies": "plot points, cast, genres", "beauty": "ingredients, brands, prices",
          "fashion": "materials, sizes, brands, prices", "instruments": "sound, build quality, compatibility, "
          "brands, prices"}


def _system(domain: str, with_reasoning: bool) -> str:
    role = ROLES[domain]
    verb = "watched" if domain == "movies" else "bought"
    text = (f"You are a recommender system for {_CATALOGUE[domain]}. From what a {role.person} has {verb} "
            f"before and how they rated it, you predict whether they will like a new {role.item}")
    return text + (", and you explain the prediction using only the information you are given." if with_reasoning
                   else ".")


def _guardrails(domain: str) -> str:
    role = ROLES[domain]
    return ("Rules:\n"
            f"- Use only the information above. Do not invent {role.item} features ({_FACTS[domain]}) or facts "
            f"about the {role.person} that are not stated.\n"
            f"- If the information is thin, base the prediction on what is given and say what is missing.")


def build_messages(method: str, example: pd.Series, ctx: PromptContext) -> list[Message]:
    """The chat prompt (system + user turns) for one example under one method."""
    spec = method_spec(method)
    role = ROLES[ctx.domain]
    history = _history(example)
    user_id, target = str(example["user_id"]), str(example["target_item_id"])
    show = ctx.description if spec.uses_descriptions else ctx.title

    if not spec.with_reasoning:  # TALLRec-style: titles, liked/disliked, answer only
        liked = [f'"{ctx.title(i)}"' for i, l in history if l]
        disliked = [f'"{ctx.title(i)}"' for i, l in history if not l]
        user = (f"A {role.person}'s recent {role.items}, oldest first, split by whether they liked them.\n"
                f"Liked: {', '.join(liked) if liked else 'none'}\n"
                f"Disliked: {', '.join(disliked) if disliked else 'none'}\n\n"
                f'Target {role.item}: "{ctx.title(target)}"\n\n'
                f"Will the {role.person} like the target {role.item}? Answer with exactly "
                f'"{PREDICTION_PREFIX} Yes" or "{PREDICTION_PREFIX} No" and nothing else.')
        return [{"role": "system", "content": _system(ctx.domain, False)}, {"role": "user", "content": user}]

    parts = []
    if spec.uses_profile:
        parts.append(f"{role.person.capitalize()} profile:\n{ctx.profile(user_id)}")
    if history:
        lines = [f"{n}. {show(i)} -> {'liked' if l else 'disliked'}" for n, (i, l) in enumerate(history, 1)]
        parts.append(f"The {role.person}'s {len(history)} most recent {role.items}, oldest first, with their "
                     f"reaction:\n" + "\n".join(lines))
    else:
        parts.append(f"The {role.person}'s recent {role.items}: {NO_HISTORY_TEXT}")
    parts.append(f"Target {role.item}:\n{show(target)}")
    parts.append(_guardrails(ctx.domain))
    parts.append(f"Task: will the {role.person} like the target {role.item}? Start your answer with exactly "
                 f'"{PREDICTION_PREFIX} Yes" or "{PREDICTION_PREFIX} No" on the first line. Then, step by step, '
                 f"name the features the {role.person} liked or disliked in earlier {role.items} and explain how "
                 f"they bear on the target {role.item}.")
    return [{"role": "system", "content": _system(ctx.domain, True)},
            {"role": "user", "content": "\n\n".join(parts)}]


def prediction_line(label: int) -> str:
    if label not in ANSWERS:
        raise ValueError(f"label must be 0 or 1, got {label!r}.")
    return f"{PREDICTION_PREFIX} {ANSWERS[int(label)]}"


def completion(label: int, reasoning: str, method: str) -> str:
    """The training target: the prediction line FIRST, then (reasoning methods) the reasoning."""
    spec = method_spec(method)
    head = prediction_line(int(label))
    if not spec.with_reasoning:
        return head
    if not isinstance(reasoning, str) or not reasoning.strip():
        raise ValueError(f"method {method!r} trains on reasoning, but the reasoning text is empty; "
                         f"rerun 04_reasoning_generation for these examples.")
    return f"{head}\n{reasoning.strip()}"


_PRED_RE = re.compile(r"^\s*\**\s*prediction\s*\**\s*:\s*\**\s*(yes|no)\b\W*", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedOutput:
    label: int | None   # the stated prediction, None when the format was not followed
    reasoning: str      # text after the prediction line (whole text when the format was not followed)
    format_ok: bool     # the text starts with "Prediction: Yes/No"


def parse_output(text: str) -> ParsedOutput:
    """Split a generated answer into prediction and reasoning; never raises."""
    if not isinstance(text, str):
        return ParsedOutput(None, "", False)
    m = _PRED_RE.match(text)
    if not m:
        return ParsedOutput(None, text.strip(), False)
    return ParsedOutput(1 if m.group(1).lower() == "yes" else 0, text[m.end():].strip(), True)


def conversation(method: str, example: pd.Series, ctx: PromptContext, reasoning: str = "") -> dict:
    """One prompt/completion pair in trl's conversational form."""
    return {"prompt": build_messages(method, example, ctx),
            "completion": [{"role": "assistant", "content": completion(int(example["label"]), reasoning, method)}]}


def render_all(methods: Sequence[str], example: pd.Series, ctx: PromptContext) -> dict[str, str]:
    """The user turn of every method for one example (for side-by-side display)."""
    return {m: build_messages(m, example, ctx)[-1]["content"] for m in methods}
