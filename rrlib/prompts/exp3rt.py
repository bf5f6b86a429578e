"""Versioned prompt templates and answer parsers of EXP3RT (Kim et al., 2024), wording written for
this project from the method:

* ``preference_extraction`` (step 1): from one review, the reviewer's subjective preferences as
  two lines, ``Liked: a; b`` and ``Disliked: c`` (``none`` when there is nothing on a side);
* ``exp3rt_user_profile`` (step 2): a user's extracted preferences aggregated by fixed criteria,
  ``Values: ...`` and ``Avoids: ...``;
* ``exp3rt_item_profile`` (step 2): an item's extracted preferences over its reviewers,
  ``Strengths: ...`` and ``Weaknesses: ...``;
* ``exp3rt_rating_reasoning`` (step 3, teacher): step-by-step reasoning from the user profile, the
  item profile and the item description, conditioned on the TRUE rating, ending ``Rating: r``;
* the student's rating prompt (:func:`rating_messages`): the same inputs without the rating; its
  completion is the reasoning followed by ``Rating: r`` (the rating is read from the probabilities
  of the rating tokens at that position, :mod:`rrlib.student`).

The teacher templates carry review, title and profile text inside a ``<data>`` block announced as
data, never instructions, that the text cannot close (:mod:`rrlib.prompts.datablock`). The
student's prompt (:func:`rating_messages`) is unchanged.

Every template has a name and a version; the generation cache keys on both, so a wording change
must bump the version (tests/test_prompts_exp3rt.py pins the rendered text).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from rrlib.llm.base import GenerationSettings, Message
from rrlib.prompts.answers import _RATING, RATING_PREFIX, parse_rating
from rrlib.prompts.datablock import data_block
from rrlib.prompts.grammars import OutputFormat, sections_format
from rrlib.prompts.items import ItemCatalog
from rrlib.prompts.postprocess import USABLE_STATUSES, Cleaned, clean_sectioned, count_words, strip_boilerplate
from rrlib.prompts.teacher import ROLES, DomainRole, TeacherTemplate, scaled_settings

#: most aspects kept per side, and most words per aspect (longer ones are refused, not cut)
MAX_ASPECTS = 5
MAX_ASPECT_WORDS = 8
USER_SECTIONS = ("Values:", "Avoids:")
ITEM_SECTIONS = ("Strengths:", "Weaknesses:")
REASONING_SECTIONS = ("Analysis:",)
#: (temperature, top_p, max_new_tokens at the default word budget) per task; near-greedy as the
#: teacher is asked for facts, with token budgets sized to the word budgets
SETTINGS = {
    "preference_extraction": (0.01, 0.9, 64),
    "exp3rt_user_profile": (0.01, 0.9, 160),
    "exp3rt_item_profile": (0.01, 0.9, 160),
    "exp3rt_rating_reasoning": (0.01, 0.75, 200),
}
DEFAULT_WORDS = {
    "preference_extraction": 40,
    "exp3rt_user_profile": 80,
    "exp3rt_item_profile": 80,
    "exp3rt_rating_reasoning": 120,
}


def settings(
    task: str,
    seed: int,
    *,
    words: int | None = None,
    mode: str = "paper",
    repetition_penalty: float = 1.0,
    tokens_per_word: float = 0.0,
) -> GenerationSettings:
    """Decoding settings of an EXP3RT task; the token budget scales with the word budget."""
    return scaled_settings(
        SETTINGS[task],
        DEFAULT_WORDS[task],
        mode=mode,
        seed=seed,
        words=words,
        repetition_penalty=repetition_penalty,
        min_tokens=24,
        tokens_per_word=tokens_per_word,
    )


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Review:
    """One review the split allows, with what is known about its item."""

    item_title: str
    rating: float
    text: str


@dataclass(frozen=True)
class Preferences:
    """What one review says its writer liked and disliked."""

    liked: tuple[str, ...]
    disliked: tuple[str, ...]

    def render(self) -> str:
        return (
            f"Liked: {'; '.join(self.liked) if self.liked else 'none'}\n"
            f"Disliked: {'; '.join(self.disliked) if self.disliked else 'none'}"
        )


@dataclass(frozen=True)
class RatedPreferences:
    """Extracted preferences with the rating and item they came from (profile inputs)."""

    item_title: str
    rating: float
    preferences: Preferences


# ---------------------------------------------------------------------------------------
# User messages
# ---------------------------------------------------------------------------------------
def _extraction_user(role: DomainRole, *, review: Review) -> str:
    return "\n".join(
        [
            f"A {role.person} rated a {role.item} {review.rating:g} out of 5 and wrote this review of it:",
            *data_block([f"{role.item.capitalize()}: {review.item_title}", f"Review: {review.text}"], "the review"),
            "",
            f"List the {role.person}'s own subjective preferences that this review shows: the aspects of the "
            f"{role.item} they liked and the aspects they disliked, each in at most {MAX_ASPECT_WORDS} words, at most "
            f"{MAX_ASPECTS} per side. Use only what the review says.",
            "Reply with exactly two lines and nothing else:",
            "Liked: <aspect>; <aspect>",
            "Disliked: <aspect>; <aspect>",
            "Write 'none' on a line when the review names nothing for that side.",
        ]
    )


def _preference_lines(entries: Sequence[RatedPreferences]) -> str:
    lines = []
    for n, e in enumerate(entries, 1):
        lines.append(f'{n}. "{e.item_title}" (rated {e.rating:g}/5)')
        lines.append("   " + e.preferences.render().replace("\n", " | "))
    return "\n".join(lines)


def _user_profile_user(role: DomainRole, *, entries: Sequence[RatedPreferences], n_words: int) -> str:
    return "\n".join(
        [
            f"These are the preferences a {role.person} expressed in their reviews, oldest first:",
            "",
            *data_block(_preference_lines(entries), "the list of preferences"),
            "",
            f"Summarise this {role.person}'s taste by two fixed criteria, in at most {n_words} words in all:",
            f"Values: what they look for in {role.items} (the aspects they repeatedly like).",
            "Avoids: what puts them off (the aspects they repeatedly dislike).",
            "Use only the preferences above. Start with 'Values:'.",
        ]
    )


def _item_profile_user(role: DomainRole, *, title: str, entries: Sequence[RatedPreferences], n_words: int) -> str:
    return "\n".join(
        [
            f"These are the preferences reviewers of one {role.item} expressed:",
            "",
            *data_block([f"{role.item.capitalize()}: {title}", _preference_lines(entries)], "the list of preferences"),
            "",
            f"Summarise what reviewers say about this {role.item}, in at most {n_words} words in all:",
            "Strengths: the aspects reviewers like.",
            "Weaknesses: the aspects reviewers dislike.",
            "Use only the preferences above. Start with 'Strengths:'.",
        ]
    )


def _inputs_block(
    role: DomainRole, user_profile: str, item_title: str, item_attributes: str, item_profile: str, description: str
) -> list[str]:
    attrs = f" ({item_attributes})" if item_attributes else ""
    return [
        f"{role.person.capitalize()} profile:",
        user_profile or f"(no profile: the {role.person} has no earlier reviews)",
        "",
        f'{role.item.capitalize()}: "{item_title}"{attrs}',
        f"Description: {description}" if description else "Description: not available",
        f"What reviewers say: {item_profile}" if item_profile else "What reviewers say: no reviews yet",
    ]


def _rating_reasoning_user(
    role: DomainRole,
    *,
    user_profile: str,
    item_title: str,
    item_attributes: str,
    item_profile: str,
    description: str,
    rating: int,
    n_words: int,
) -> str:
    inputs = _inputs_block(role, user_profile, item_title, item_attributes, item_profile, description)
    return "\n".join(
        data_block(inputs, f"what is known about the {role.person} and the {role.item}")
        + [
            "",
            f"We know that this {role.person} rated this {role.item} {rating} out of 5. Explain step by step, in at most "
            f"{n_words} words, how the {role.item}'s features match or clash with the {role.person}'s preferences and "
            f"why that leads to a rating of {rating}.",
            f"Start with 'Analysis:' and end with the line '{RATING_PREFIX} {rating}'. Use only the information above.",
        ]
    )


# ---------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------
TEMPLATES: dict[str, TeacherTemplate] = {
    t.name: t
    for t in (
        # v2: dataset text inside a <data> block announced as data (issue 24)
        TeacherTemplate("preference_extraction", "2", "preference_extraction", _extraction_user),
        TeacherTemplate("exp3rt_user_profile", "2", "exp3rt_user_profile", _user_profile_user),
        TeacherTemplate("exp3rt_item_profile", "2", "exp3rt_item_profile", _item_profile_user),
        TeacherTemplate("exp3rt_rating_reasoning", "2", "exp3rt_rating_reasoning", _rating_reasoning_user),
    )
}


# ---------------------------------------------------------------------------------------
# Parsing and checks (each returns the post-processing's Cleaned: status ok / degenerate / ...)
# ---------------------------------------------------------------------------------------
_SIDE = re.compile(r"^\s*[-*]?\s*\**\s*(liked|likes|disliked|dislikes)\s*\**\s*:\s*(.*)$", re.I)
_NONE = re.compile(r"^\s*(none|nothing|n/?a|-|no\b.*)\s*\.?\s*$", re.I)


class UnparseableOutput(ValueError):
    """The teacher did not answer in the required format."""


def parse_preferences(text: str) -> Preferences:
    """``Liked: a; b`` / ``Disliked: c`` -> Preferences; raises :class:`UnparseableOutput` naming
    what is wrong (a missing line, too many or too long aspects)."""
    found: dict[str, list[str]] = {}
    for line in (text or "").splitlines():
        m = _SIDE.match(line)
        if not m:
            continue
        side = "liked" if m.group(1).lower().startswith("like") else "disliked"
        if side in found:
            continue
        body = m.group(2).strip().strip("*").strip().rstrip(".")
        aspects = [] if _NONE.match(body) else [a.strip(" .,\"'") for a in re.split(r"[;,]", body)]
        found[side] = [a for a in aspects if a and not _NONE.match(a)]
    missing = [s for s in ("liked", "disliked") if s not in found]
    if missing:
        raise UnparseableOutput(f"no '{missing[0].capitalize()}:' line")
    for side, aspects in found.items():
        if len(aspects) > MAX_ASPECTS:
            raise UnparseableOutput(f"{len(aspects)} {side} aspects (at most {MAX_ASPECTS})")
        long = [a for a in aspects if count_words(a) > MAX_ASPECT_WORDS]
        if long:
            raise UnparseableOutput(f"{side} aspect longer than {MAX_ASPECT_WORDS} words: {long[0][:60]!r}")
    if not found["liked"] and not found["disliked"]:
        raise UnparseableOutput("both sides are empty")
    return Preferences(tuple(found["liked"]), tuple(found["disliked"]))


def check_preferences(raw: str, prompt_text: str = "") -> Cleaned:
    """Post-processing of an extraction: the canonical two-line text when it parses, else
    ``degenerate`` with the reason (so it is retried and counted, never a crash)."""
    text, _ = strip_boilerplate(raw, "", keep_labels=("Liked:", "Disliked:"))
    try:
        prefs = parse_preferences(text)
    except UnparseableOutput as e:
        return Cleaned(text, "degenerate", count_words(text), f"unparseable extraction: {e}")
    canonical = prefs.render()
    return Cleaned(canonical, "ok", count_words(canonical), "")


def check_profile(
    raw: str, sections: Sequence[str], n_words: int, prompt_text: str = "", hit_length_limit: bool = False
) -> Cleaned:
    """Post-processing of a two-criteria profile: each section trimmed to half the word budget."""
    return clean_sectioned(
        raw,
        sections=sections,
        words_per_section=max(5, n_words // 2),
        prompt_text=prompt_text,
        hit_length_limit=hit_length_limit,
    )


def check_rating_reasoning(
    raw: str, rating: int, n_words: int, prompt_text: str = "", hit_length_limit: bool = False
) -> Cleaned:
    """Post-processing of the teacher's rating reasoning: the reasoning part is cleaned and
    trimmed, and the answer line is set to the TRUE rating (the teacher was told it; a teacher
    that states another rating, or whose answer was cut before it, is flagged ``degenerate`` so it
    is retried)."""
    stated = parse_rating(raw)
    body = _RATING.sub("", raw or "")
    cleaned = clean_sectioned(
        body,
        sections=REASONING_SECTIONS,
        words_per_section=n_words,
        prompt_text=prompt_text,
        hit_length_limit=hit_length_limit,
    )
    if stated is not None and round(stated) != int(rating):
        return Cleaned(
            cleaned.text, "degenerate", cleaned.n_words, f"states rating {stated:g}, but the true rating is {rating}"
        )
    if stated is None and hit_length_limit:  # retried (with a larger budget under a grammar)
        return Cleaned(cleaned.text, "degenerate", cleaned.n_words, "cut at max_new_tokens before its Rating line")
    return Cleaned(cleaned.text, cleaned.status, cleaned.n_words, cleaned.detail)


def rating_line(rating: int) -> str:
    return f"{RATING_PREFIX} {int(rating)}"


def rating_answer(reasoning: str, rating: int) -> str:
    """The assistant turn of a rating answer: reasoning then ``Rating: r``, or the line alone."""
    return rating_completion(reasoning, rating) if (reasoning or "").strip() else rating_line(rating)


@dataclass(frozen=True)
class RatingAnswer:
    reasoning: str  # the text before the first 'Rating:' line (all of it when there is none)
    stated: float | None  # the rating the text states
    format_ok: bool  # a 'Rating: r' line follows the reasoning


def split_rating_answer(text: str) -> RatingAnswer:
    """Split a generated rating answer at its first ``Rating:`` line; never raises."""
    text = text if isinstance(text, str) else ""
    m = _RATING.search(text)
    if m is None:
        return RatingAnswer(text.strip(), None, False)
    return RatingAnswer(text[: m.start()].strip(), float(m.group(1)), True)


def rating_completion(reasoning: str, rating: int) -> str:
    """The student's training target: the reasoning first, then ``Rating: r``."""
    if not isinstance(reasoning, str) or not reasoning.strip():
        raise ValueError(
            "the rating student trains on reasoning, but the reasoning text is empty; rerun the "
            "reasoning notebook for these examples."
        )
    return f"{reasoning.strip()}\n{rating_line(rating)}"


# ---------------------------------------------------------------------------------------
# The student's rating prompt
# ---------------------------------------------------------------------------------------
STUDENT_TEMPLATE_VERSION = "exp3rt-student-v1"
#: the rating scale of the prompts (ratings are rounded and clipped to it)
SCALE = (1, 5)


def integer_rating(rating: float) -> int:
    """A dataset rating on the prompts' 1-5 scale: rounded half up, clipped (MovieLens half stars
    3.5 -> 4, 0.5 -> 1)."""
    return int(min(SCALE[1], max(SCALE[0], int(float(rating) + 0.5))))


@dataclass(frozen=True)
class RatingContext:
    """What EXP3RT's prompts show for a (user, item) pair: the item catalogue (titles, attributes,
    descriptions), the EXP3RT user profiles and item profiles of notebook 04."""

    catalog: "ItemCatalog"
    user_profiles: Mapping[str, str]
    item_profiles: Mapping[str, str]
    domain: str

    def fields(self, user_id: str, item_id: str) -> dict[str, str]:
        item_id = str(item_id)
        return {
            "user_profile": self.user_profiles.get(str(user_id), ""),
            "item_title": self.catalog.title(item_id),
            "item_attributes": self.catalog.attributes_of(item_id),
            "item_profile": self.item_profiles.get(item_id, ""),
            "description": self.catalog.descriptions.get(item_id, ""),
        }

    @classmethod
    def from_run(cls, paths, domain: str) -> "RatingContext":
        """Items (01), descriptions (02, where written) and the usable EXP3RT profiles (04) of a run."""
        items = pd.read_parquet(paths.require(paths.items, "01_data_prep"))
        descriptions = pd.read_parquet(paths.item_descriptions) if paths.item_descriptions.exists() else None
        profiles = {}
        for kind, path in (("user", paths.review_user_profiles), ("item", paths.review_item_profiles)):
            table = pd.read_parquet(paths.require(path, "04_review_preferences"))
            ok = table[table["status"].isin(USABLE_STATUSES) & (table["profile"].fillna("").str.strip() != "")]
            profiles[kind] = dict(zip(ok["id"].astype(str), ok["profile"].astype(str)))
        return cls(ItemCatalog.from_tables(items, descriptions), profiles["user"], profiles["item"], domain)

    def student_messages(self, user_id: str, item_id: str, with_reasoning: bool = True) -> list[Message]:
        return rating_messages(self.domain, with_reasoning=with_reasoning, **self.fields(user_id, item_id))

    def teacher_request(
        self,
        user_id: str,
        item_id: str,
        rating: int,
        *,
        words: int,
        settings_: GenerationSettings,
        tag: str,
        constrained: bool = False,
    ):
        """The teacher's rating-reasoning request; ``constrained``: decoded under its grammar
        (``Analysis: ...`` then the line ``Rating: <rating>``, :mod:`rrlib.prompts.grammars`)."""
        request = TEMPLATES["exp3rt_rating_reasoning"].request(
            self.domain, settings_, tag=tag, rating=int(rating), n_words=words, **self.fields(user_id, item_id)
        )
        if constrained:
            request = rating_reasoning_format(int(rating), words).apply(request)
        return request


def rating_messages(
    domain: str,
    *,
    user_profile: str,
    item_title: str,
    item_attributes: str,
    item_profile: str,
    description: str,
    with_reasoning: bool = True,
) -> list[Message]:
    """The student's prompt for one (user, item) pair. ``with_reasoning=False`` is the
    TALLRec-style rating baseline: the same inputs, the answer is the rating line alone."""
    role = ROLES[domain]
    task = (
        f"Predict how this {role.person} will rate this {role.item} from 1 to 5. First explain step by step how "
        f"its features match the {role.person}'s preferences, starting with 'Analysis:'; then end with the line "
        f"'{RATING_PREFIX} r'."
        if with_reasoning
        else f"Predict how this {role.person} will rate this {role.item} from 1 to 5. Answer with exactly "
        f"'{RATING_PREFIX} r' and nothing else."
    )
    user = "\n".join(
        _inputs_block(role, user_profile, item_title, item_attributes, item_profile, description)
        + ["", task, "Use only the information above."]
    )
    return [{"role": "system", "content": role.system}, {"role": "user", "content": user}]


def rating_reasoning_format(rating: int, words: int) -> OutputFormat:
    """EXP3RT's teacher reasoning: ``Analysis: ...`` then the line ``Rating: <the true rating>``."""
    return sections_format(
        "exp3rt_rating_reasoning", REASONING_SECTIONS, words, tail=f"\n{RATING_PREFIX} {int(rating)}"
    )


def preferences_parse(text: str) -> bool:
    """Whether a text parses as an extraction (``Liked: ...`` / ``Disliked: ...``)."""
    try:
        parse_preferences(text)
    except UnparseableOutput:
        return False
    return True


__all__ = [
    "preferences_parse",
    "rating_reasoning_format",
    "RatingContext",
    "SCALE",
    "integer_rating",
    "ITEM_SECTIONS",
    "MAX_ASPECTS",
    "MAX_ASPECT_WORDS",
    "Preferences",
    "RATING_PREFIX",
    "RatedPreferences",
    "Review",
    "STUDENT_TEMPLATE_VERSION",
    "TEMPLATES",
    "USER_SECTIONS",
    "UnparseableOutput",
    "check_preferences",
    "check_profile",
    "check_rating_reasoning",
    "parse_preferences",
    "parse_rating",
    "rating_answer",
    "rating_completion",
    "rating_line",
    "RatingAnswer",
    "split_rating_answer",
    "rating_messages",
    "settings",
]
