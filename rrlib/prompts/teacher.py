"""Versioned prompt templates for the teacher LLM (notebooks 02-05).

Three tasks, following ReasoningRec sections 3.2-3.4 (wording written for this project):

* ``item_description``: an n-word description from title, attributes, metadata text, the
  Algorithm-1 sampled reviews with their ratings and (movies) the plot, naming strong and
  weak features;
* ``user_profile``: a q-word profile from the user's earliest items, each marked liked or
  disliked with its description, reasoned step by step, using nothing absent from the input;
* ``reasoning``: label-conditioned ground-truth reasoning from the profile, the k most recent
  items and the target's description, in two parts (profile analysis, then why the user
  liked or disliked the target), each at most REASONING_WORDS words.

Dataset text (titles, attributes, descriptions, reviews, profiles) sits inside one ``<data>``
block that the prompt announces as data, never instructions, and that the text cannot close
(:mod:`rrlib.prompts.datablock`); the task's instructions follow the block.

Each template has a name and a version. The generation cache keys on both, so **any change to
a template's wording must bump its version** (tests/test_prompts.py pins a hash of every
rendered template and fails until the version is bumped and the pin updated).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rrlib.llm.base import GenerationRequest, GenerationSettings, Message
from rrlib.prompts.datablock import data_block

DOMAINS = ("movies", "beauty", "fashion", "instruments", "books")
TASKS = ("item_description", "user_profile", "reasoning")


@dataclass(frozen=True)
class DomainRole:
    """How the prompts talk about one dataset domain."""

    system: str
    item: str  # singular noun for an item
    items: str  # plural
    person: str  # who interacts with the items


ROLES: dict[str, DomainRole] = {
    "movies": DomainRole(
        system=(
            "You are a film analyst for a movie recommender. You write short, factual notes about "
            "movies and about what individual viewers enjoy, based only on the information you are given."
        ),
        item="movie",
        items="movies",
        person="viewer",
    ),
    "beauty": DomainRole(
        system=(
            "You are a beauty and personal-care product analyst for an online shop's recommender. You "
            "write short, factual notes about cosmetics, skin, hair and fragrance products and about what "
            "individual customers want, based only on the information you are given."
        ),
        item="product",
        items="products",
        person="customer",
    ),
    "fashion": DomainRole(
        system=(
            "You are a fashion product analyst for an online shop's recommender. You write short, "
            "factual notes about clothing, shoes, jewelry and accessories and about what individual "
            "customers want, based only on the information you are given."
        ),
        item="product",
        items="products",
        person="customer",
    ),
    "instruments": DomainRole(
        system=(
            "You are a musical instruments and music gear analyst for an online shop's recommender. You "
            "write short, factual notes about instruments, strings, pedals, cables, microphones, stands and "
            "other music and recording gear and about what individual customers want, based only on the "
            "information you are given."
        ),
        item="product",
        items="products",
        person="customer",
    ),
    "books": DomainRole(  # EXP3RT's Amazon-Book
        system=(
            "You are a book analyst for an online bookshop's recommender. You write short, factual notes "
            "about books (genre, themes, style, audience) and about what individual readers enjoy, based "
            "only on the information you are given."
        ),
        item="book",
        items="books",
        person="reader",
    ),
}

# Paper Table 6: (temperature, top_p, max_new_tokens) per generation task.
PAPER_SETTINGS: dict[str, tuple[float, float, int]] = {
    "user_profile": (0.01, 0.9, 256),
    "item_description": (0.01, 0.9, 64),
    "reasoning": (0.01, 0.75, 256),
}


#: the word budgets the paper's max_new_tokens were sized for (25-word descriptions, 100-word
#: profiles, two 100-word reasoning parts)
PAPER_WORDS = {"user_profile": 100, "item_description": 25, "reasoning": 100}


def scaled_settings(
    base: tuple[float, float, int],
    paper_words: int,
    *,
    mode: str = "paper",
    seed: int = 0,
    words: int | None = None,
    repetition_penalty: float = 1.0,
    min_tokens: int = 16,
    tokens_per_word: float = 0.0,
    parts: int = 1,
) -> GenerationSettings:
    """Decoding settings from a task's (temperature, top_p, max_new_tokens): the token budget is
    scaled by ``words`` / the word budget it was sized for, and GENERATION_MODE 'greedy' turns
    sampling off. ``tokens_per_word`` > 0 (TEACHER_TOKENS_PER_WORD) caps the budget at that many
    tokens per word asked for (``parts`` sections of ``words`` each). Shared by every teacher task
    (ReasoningRec's and EXP3RT's)."""
    temperature, top_p, max_new = base
    if words is not None and words != paper_words:
        max_new = max(min_tokens, round(max_new * words / paper_words))
    if tokens_per_word > 0:
        asked = (paper_words if words is None else words) * parts
        max_new = min(max_new, max(min_tokens, math.ceil(tokens_per_word * asked)))
    if mode == "greedy":
        temperature, top_p = 0.0, 1.0
    elif mode != "paper":
        raise ValueError(f"GENERATION_MODE={mode!r} is not 'paper' or 'greedy'.")
    return GenerationSettings(
        temperature=temperature, top_p=top_p, max_new_tokens=max_new, seed=seed, repetition_penalty=repetition_penalty
    )


def generation_settings(
    task: str,
    mode: str = "paper",
    seed: int = 0,
    *,
    words: int | None = None,
    repetition_penalty: float = 1.0,
    tokens_per_word: float = 0.0,
) -> GenerationSettings:
    """Decoding settings of ``task``: the paper's Table 6, or greedy (temperature 0) when
    GENERATION_MODE is 'greedy'. max_new_tokens is the paper's, scaled by ``words`` / the paper's
    word budget when a different budget is asked for (the paper sized it "in accordance with the
    instructions"), so a 15-word smoke description does not get 64 tokens to ramble in."""
    if task not in PAPER_SETTINGS:
        raise ValueError(f"unknown teacher task {task!r}; known: {list(PAPER_SETTINGS)}")
    return scaled_settings(
        PAPER_SETTINGS[task],
        PAPER_WORDS[task],
        mode=mode,
        seed=seed,
        words=words,
        repetition_penalty=repetition_penalty,
        tokens_per_word=tokens_per_word,
        parts=len(REASONING_SECTIONS) if task == "reasoning" else 1,
    )


# ---------------------------------------------------------------------------------------
# Inputs the templates render
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemFacts:
    """What is known about an item before the teacher describes it."""

    item_id: str
    title: str
    attributes: str = ""
    metadata_description: str = ""
    reviews: tuple[tuple[float, str], ...] = ()  # (rating, trimmed text), Algorithm 1
    plot: str = ""  # movies: IMDb plot when fetched


@dataclass(frozen=True)
class RatedItem:
    """An item in a user's history: its title, its description ('' when the prompt's view leaves
    descriptions out), whether the user liked it, and its known attributes."""

    title: str
    description: str
    liked: bool
    attributes: str = ""


def _liked_word(liked: bool) -> str:
    return "LIKED" if liked else "DISLIKED"


def _rated_list(items: Sequence[RatedItem]) -> str:
    lines = []
    for i, it in enumerate(items, 1):
        attrs = f" [{it.attributes}]" if it.attributes else ""
        lines.append(f"{i}. {it.title}{attrs} ({_liked_word(it.liked)})")
        if it.description:
            lines.append(f"   {it.description}")
    return "\n".join(lines)


def _check_domain(domain: str) -> DomainRole:
    if domain not in ROLES:
        raise ValueError(f"unknown prompt domain {domain!r}; known: {list(ROLES)} (parameter DOMAIN).")
    return ROLES[domain]


# ---------------------------------------------------------------------------------------
# The three user messages
# ---------------------------------------------------------------------------------------
def _item_description_user(role: DomainRole, *, item: ItemFacts, n_words: int) -> str:
    # the facts first and the instruction last: small models otherwise continue the fact list
    facts = [f"Title: {item.title}"]
    if item.attributes:
        facts.append(f"Details: {item.attributes}")
    if item.plot:
        facts.append(f"Plot: {item.plot}")
    if item.metadata_description:
        facts.append(f"Seller description: {item.metadata_description}")
    if item.reviews:
        facts.append("Reviews (rating from 1 to 5):")
        facts += [f"- [{rating:g}] {text}" for rating, text in item.reviews]
    else:
        facts.append("Reviews: none available.")
    parts = data_block(facts, f"what is known about one {role.item}: its title, details and reviews") + [
        "",
        f"Describe this {role.item} in at most {n_words} words. Say in a few words what the {role.item} "
        f"is, then name its strong points (what people praise) and its weak points (what people "
        f"complain about).",
        "Use only the facts above and your own words. Reply with the description only, in plain "
        "sentences: no title, no list, no introduction.",
    ]
    return "\n".join(parts)


def _user_profile_user(role: DomainRole, *, items: Sequence[RatedItem], q_words: int) -> str:
    return "\n".join(
        [
            f"These are the first {role.items} a {role.person} rated, oldest first, each marked LIKED or "
            f"DISLIKED and followed by its description:",
            "",
            *data_block(_rated_list(items), f"the list of rated {role.items}"),
            "",
            f"Think it through step by step: what do the liked {role.items} have in common, and what do the "
            f"disliked ones have in common? Then write a profile of this {role.person}'s taste in at most "
            f"{q_words} words, saying what they like and what they dislike.",
            # v3: naming the first words stops the 135M teacher opening with "The list below is not
            # supported by ..." (unusable first attempts of 80 users: 30 with v2, 10-11 with this)
            f'Use only what the list shows. Begin your answer with the words "This {role.person} likes".',
        ]
    )


def _reasoning_user(
    role: DomainRole, *, profile: str | None, history: Sequence[RatedItem], target: RatedItem, n_words: int
) -> str:
    """``profile=None``: the view of a student that sees no profile (the block is left out)."""
    verb = "liked" if target.liked else "disliked"
    head = (
        []
        if profile is None
        else [
            f"Profile of a {role.person}:",
            profile or f"(no profile: the {role.person} has too few earlier ratings)",
            "",
        ]
    )
    attrs = f" [{target.attributes}]" if target.attributes else ""
    shown = "the profile and the recent" if profile is not None else "the recent"
    facts = head + [
        f"The {role.person}'s {len(history)} most recent {role.items}, oldest first:",
        _rated_list(history) if history else "(none)",
        "",
        f"New {role.item}: {target.title}{attrs}",
        *([target.description] if target.description else []),
    ]
    what = f"what is known about the {role.person} and the new {role.item}"
    return "\n".join(
        data_block(facts, what)
        + [
            "",
            f"We know that the {role.person} {verb} the new {role.item}. Explain why, step by step, in two parts:",
            f"Profile analysis: what {shown} {role.items} show about the {role.person}'s "
            f"preferences (at most {n_words} words).",
            f"Target analysis: which features of the new {role.item} fit or clash with those preferences, "
            f"and why the {role.person} {verb} it (at most {n_words} words).",
            "Use only the information above. Start with 'Profile analysis:'.",
        ]
    )


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TeacherTemplate:
    """A named, versioned prompt: system message from the domain role, user message from the
    task's renderer. Bump ``version`` whenever the rendered text changes."""

    name: str
    version: str
    task: str
    render_user: Callable[..., str] = field(repr=False)

    def messages(self, domain: str, **fields) -> tuple[Message, ...]:
        role = _check_domain(domain)
        return (
            {"role": "system", "content": role.system},
            {"role": "user", "content": self.render_user(role, **fields)},
        )

    def request(self, domain: str, settings: GenerationSettings, tag: str = "", **fields) -> GenerationRequest:
        return GenerationRequest(
            messages=self.messages(domain, **fields),
            settings=settings,
            template=self.name,
            template_version=self.version,
            tag=tag,
        )


TEMPLATES: dict[str, TeacherTemplate] = {
    t.name: t
    for t in (
        # v3 / v4 / v3: dataset text inside a <data> block announced as data (issue 24)
        TeacherTemplate("item_description", "3", "item_description", _item_description_user),
        TeacherTemplate("user_profile", "4", "user_profile", _user_profile_user),
        TeacherTemplate("reasoning", "3", "reasoning", _reasoning_user),
    )
}


def template_for(task: str) -> TeacherTemplate:
    if task not in TEMPLATES:
        raise ValueError(f"no teacher template for task {task!r}; known: {list(TEMPLATES)}")
    return TEMPLATES[task]


# Section markers of the reasoning output (post-processing splits on them).
REASONING_SECTIONS = ("Profile analysis:", "Target analysis:")
