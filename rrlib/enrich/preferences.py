"""EXP3RT steps 1 and 2 (notebook 04): preference extraction from the reviews the split allows,
then user and item profiles aggregated from the extracted preferences.

Which reviews may be used (no held-out review reaches any step):

* a user's profile reads the user's own reviews at interactions that are NOT targets of any split
  (train, valid, test): these are exactly the reviews before the user's earliest target, so the
  profile is training-time knowledge and a target's own review (which states its rating) never
  shapes the input of that target's example;
* an item's profile reads the item's Algorithm 1 review sample of notebook 01
  (``items.sampled_reviews``), whose pool already excludes every target's review.

Extraction outputs are parsed and validated (:func:`rrlib.prompts.exp3rt.parse_preferences`);
an unparseable answer is retried with a new seed and, when it stays unparseable, counted and left
out of the profiles (``status`` says why), never a crash. Every generation goes through the
durable cache, so a rerun generates nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from rrlib.config.params import Config
from rrlib.data.reviews import trim_words
from rrlib.data.schema import as_list, eval_subset
from rrlib.enrich.generation import StepOutput
from rrlib.llm.base import GenerationRequest, GenerationResult
from rrlib.methods import registry
from rrlib.methods.retrieval import RetrievalConfig, candidate_lists, ranking_examples
from rrlib.prompts import exp3rt as xp
from rrlib.prompts import grammars as gr
from rrlib.prompts.items import ItemCatalog
from rrlib.prompts.postprocess import USABLE_STATUSES, Cleaned, Generator, generate_checked, prompt_text_of

PREFERENCE_COLUMNS = [
    "review_id",
    "source",
    "user_id",
    "item_id",
    "position",
    "rating",
    "liked",
    "disliked",
    "preferences",
    "status",
    "detail",
    "attempts",
]
PROFILE_TABLE_COLUMNS = ["id", "kind", "profile", "status", "n_words", "detail", "attempts", "n_reviews", "source"]


# ---------------------------------------------------------------------------------------
# The reviews each profile may read
# ---------------------------------------------------------------------------------------
def user_reviews(interactions: pd.DataFrame, user_ids: Iterable[str], per_user: int, words: int) -> pd.DataFrame:
    """The allowed reviews of each user (never at a target of any split), most recent ``per_user``,
    oldest first, trimmed to ``words`` words; one row each with a stable ``review_id``."""
    need = ["user_id", "item_id", "rating", "position", "review_text", "target_of"]
    missing = [c for c in need if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions table lacks column(s) {missing}; rerun 01_data_prep.")
    wanted = set(map(str, user_ids))
    df = interactions[interactions["user_id"].astype(str).isin(wanted)]
    df = df[(df["target_of"].fillna("") == "") & (df["review_text"].fillna("").str.strip() != "")]
    df = df.sort_values(["user_id", "position"]).groupby("user_id", sort=False).tail(per_user)
    return pd.DataFrame(
        {
            "review_id": [f"u:{u}:{p}" for u, p in zip(df["user_id"], df["position"])],
            "source": "user",
            "user_id": df["user_id"].astype(str).to_numpy(),
            "item_id": df["item_id"].astype(str).to_numpy(),
            "position": df["position"].astype("int64").to_numpy(),
            "rating": df["rating"].astype(float).to_numpy(),
            "text": [trim_words(t, words) for t in df["review_text"]],
        }
    )


def item_reviews(items: pd.DataFrame, item_ids: Iterable[str], per_item: int, words: int) -> pd.DataFrame:
    """The Algorithm 1 review sample of each item (its pool excludes every target's review), at
    most ``per_item`` each, trimmed to ``words`` words."""
    wanted = set(map(str, item_ids))
    rows = []
    for item, reviews in zip(items["item_id"].astype(str), items["sampled_reviews"]):
        if item not in wanted:
            continue
        for n, r in enumerate(as_list(reviews)[:per_item]):
            if str(r["text"]).strip():
                rows.append(
                    {
                        "review_id": f"i:{item}:{n}",
                        "source": "item",
                        "user_id": "",
                        "item_id": item,
                        "position": n,
                        "rating": float(r["rating"]),
                        "text": trim_words(str(r["text"]), words),
                    }
                )
    return pd.DataFrame(rows, columns=["review_id", "source", "user_id", "item_id", "position", "rating", "text"])


# ---------------------------------------------------------------------------------------
# What notebook 04 has to do
# ---------------------------------------------------------------------------------------
EXP3RT_INPUTS = frozenset(
    {"preferences", "user_profile", "item_profile", "candidates"}
)  # candidates: 04 retrieves them


def methods_needing_preferences(cfg: Config) -> list[str]:
    """The requested methods (METHODS, EVAL_METHODS) whose inputs include EXP3RT's preferences or
    profiles, in registry order; notebook 04 does nothing when there are none."""

    wanted = set(cfg.student.methods) | set(cfg.evaluate.eval_methods)
    return [m for m in registry.names() if m in wanted and registry.get(m).inputs & EXP3RT_INPUTS]


def rank_examples(examples: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The test examples whose candidates the LLM rerankers rerank: the first RANK_USERS ranking
    users (a liked held-out item, :func:`rrlib.methods.retrieval.ranking_examples`) of the seeded
    test subsample (all of N_TEST's when 0)."""

    return ranking_examples(examples, cfg.exp3rt.rank_users, within=cfg.data.n_test)


def ranking_candidates(tables, cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """``(rank_users, candidates, info)``: the ranking users (:func:`rank_examples`), their
    candidate lists under every RANK_PROTOCOLS protocol from the RETRIEVER, and the counts of
    :func:`rrlib.methods.retrieval.candidate_lists`. ``tables``: the run's :class:`rrlib.data.Tables`."""
    rank_users = rank_examples(tables.examples, cfg)
    candidates, info = candidate_lists(
        cfg.exp3rt.retriever,
        tables.interactions,
        tables.examples,
        rank_users,
        RetrievalConfig.from_config(cfg),
        cfg.exp3rt.rank_protocols,
    )
    return rank_users, candidates, info


def profile_scope(scoped: pd.DataFrame, candidates: pd.DataFrame | None) -> tuple[list[str], list[str]]:
    """(users, items) that need EXP3RT profiles: the users of the scoped examples (K-shot sets,
    valid and test subsamples) and every item those examples target or a reranking list proposes."""
    users = sorted(set(map(str, scoped["user_id"])))
    items = set(map(str, scoped["target_item_id"]))
    if candidates is not None and len(candidates):
        items |= set(map(str, candidates["item_id"]))
    return users, sorted(items)


# ---------------------------------------------------------------------------------------
# Step 1: extraction
# ---------------------------------------------------------------------------------------
def _check_extraction(req: GenerationRequest, res: GenerationResult) -> Cleaned:
    return xp.check_preferences(res.text, prompt_text_of(req))


def extraction_requests(
    reviews: pd.DataFrame, catalog: ItemCatalog, *, domain: str, cfg: Config
) -> dict[str, GenerationRequest]:
    """review_id -> the teacher's extraction request (also the multi-task student's prompt)."""
    template = xp.TEMPLATES["preference_extraction"]
    settings = xp.settings(
        "preference_extraction",
        cfg.common.seed,
        mode=cfg.teacher.generation_mode,
        repetition_penalty=cfg.teacher.teacher_repetition_penalty,
        tokens_per_word=cfg.teacher.teacher_tokens_per_word,
    )
    requests = {
        str(r.review_id): template.request(
            domain, settings, tag=str(r.review_id), review=xp.Review(catalog.title(r.item_id), float(r.rating), r.text)
        )
        for r in reviews.itertuples()
    }
    if cfg.teacher.teacher_constrained:
        fmt = gr.preference_format(xp.MAX_ASPECTS, xp.MAX_ASPECT_WORDS)
        requests = {k: fmt.apply(req) for k, req in requests.items()}
    return requests


def extract_preferences(
    reviews: pd.DataFrame, catalog: ItemCatalog, *, domain: str, cfg: Config, generator: Generator
) -> StepOutput:
    """One extraction per review row (see :func:`user_reviews`, :func:`item_reviews`)."""
    requests = extraction_requests(reviews, catalog, domain=domain, cfg=cfg)
    outs = generate_checked(
        generator,
        list(requests.values()),
        _check_extraction,
        cfg.teacher.max_output_retries,
        desc="preference extraction",
    )
    rows = []
    for r, o in zip(reviews.itertuples(), outs):
        prefs = xp.parse_preferences(o.text) if o.status in USABLE_STATUSES else None
        rows.append(
            {
                "review_id": str(r.review_id),
                "source": r.source,
                "user_id": str(r.user_id),
                "item_id": str(r.item_id),
                "position": int(r.position),
                "rating": float(r.rating),
                "liked": list(prefs.liked) if prefs else [],
                "disliked": list(prefs.disliked) if prefs else [],
                "preferences": o.text if prefs else "",
                "status": o.status,
                "detail": o.detail,
                "attempts": int(o.attempts),
                "raw": o.raw,
            }
        )
    table = pd.DataFrame(rows, columns=PREFERENCE_COLUMNS + ["raw"])
    usable = table["status"].isin(USABLE_STATUSES)
    summary = {
        "n_reviews": len(table),
        "by_source": table["source"].value_counts().to_dict(),
        "n_parsed": int(usable.sum()),
        "n_unparseable": int((~usable).sum()),
        "n_retried": int((table["attempts"] > 1).sum()),
        "mean_liked": round(float(table.loc[usable, "liked"].map(len).mean()), 2) if usable.any() else 0.0,
        "mean_disliked": round(float(table.loc[usable, "disliked"].map(len).mean()), 2) if usable.any() else 0.0,
        "parse": gr.parse_rate(
            "preference_extraction",
            table["raw"],
            xp.preferences_parse,
            constrained=cfg.teacher.teacher_constrained,
            usable=usable,
        ),
    }
    return StepOutput(table, requests, summary)


# ---------------------------------------------------------------------------------------
# Step 2: profiles
# ---------------------------------------------------------------------------------------
def _entries(rows: pd.DataFrame, catalog: ItemCatalog) -> list[xp.RatedPreferences]:
    return [
        xp.RatedPreferences(
            catalog.title(r.item_id), float(r.rating), xp.Preferences(tuple(r.liked), tuple(r.disliked))
        )
        for r in rows.itertuples()
    ]


def _check_profile(sections: Sequence[str], words: int):
    def check(req: GenerationRequest, res: GenerationResult) -> Cleaned:
        return xp.check_profile(res.text, sections, words, prompt_text_of(req), res.finish_reason == "length")

    return check


def _profile_groups(preferences: pd.DataFrame, kind: str) -> dict[str, pd.DataFrame]:
    key = "user_id" if kind == "user" else "item_id"
    usable = preferences[(preferences["source"] == kind) & preferences["status"].isin(USABLE_STATUSES)]
    return {str(k): g.sort_values("position") for k, g in usable.groupby(key)}


def profile_requests(
    preferences: pd.DataFrame, kind: str, ids: Sequence[str], catalog: ItemCatalog, *, domain: str, cfg: Config
) -> dict[str, GenerationRequest]:
    """id -> the teacher's profile request for the ids with usable preferences (also the
    multi-task student's prompt)."""
    groups = _profile_groups(preferences, kind)
    template = xp.TEMPLATES[f"exp3rt_{kind}_profile"]
    words = cfg.exp3rt.exp3rt_profile_words
    settings = xp.settings(
        f"exp3rt_{kind}_profile",
        cfg.common.seed,
        words=words,
        mode=cfg.teacher.generation_mode,
        repetition_penalty=cfg.teacher.teacher_repetition_penalty,
        tokens_per_word=cfg.teacher.teacher_tokens_per_word,
    )
    requests = {}
    for i in ids:
        if str(i) not in groups:
            continue
        fields: dict[str, Any] = {"entries": _entries(groups[str(i)], catalog), "n_words": words}
        if kind == "item":
            fields["title"] = catalog.title(i)
        requests[str(i)] = template.request(domain, settings, tag=f"{kind}:{i}", **fields)
    if cfg.teacher.teacher_constrained:  # each criterion gets half the words, as post-processing trims
        sections = xp.USER_SECTIONS if kind == "user" else xp.ITEM_SECTIONS
        fmt = gr.sections_format(f"exp3rt_{kind}_profile", sections, max(5, words // 2))
        requests = {k: fmt.apply(req) for k, req in requests.items()}
    return requests


def build_profiles(
    preferences: pd.DataFrame,
    kind: str,
    ids: Sequence[str],
    catalog: ItemCatalog,
    *,
    domain: str,
    cfg: Config,
    generator: Generator,
) -> StepOutput:
    """User (``kind='user'``) or item (``kind='item'``) profiles from the parsed preferences. An id
    without any usable preference gets an empty profile with status ``no_reviews`` (shown as 'no
    profile' to the student), never an invented one."""
    if kind not in ("user", "item"):
        raise ValueError(f"kind must be 'user' or 'item', got {kind!r}")
    groups = _profile_groups(preferences, kind)
    words = cfg.exp3rt.exp3rt_profile_words
    sections = xp.USER_SECTIONS if kind == "user" else xp.ITEM_SECTIONS
    todo = [i for i in ids if str(i) in groups]
    requests = profile_requests(preferences, kind, todo, catalog, domain=domain, cfg=cfg)
    outs = generate_checked(
        generator,
        list(requests.values()),
        _check_profile(sections, words),
        cfg.teacher.max_output_retries,
        desc=f"EXP3RT {kind} profiles",
    )
    done = dict(zip(todo, outs))
    rows = []
    for i in ids:
        o = done.get(i)
        if o is None:
            rows.append(
                {
                    "id": str(i),
                    "kind": kind,
                    "profile": "",
                    "status": "no_reviews",
                    "n_words": 0,
                    "detail": "no usable review preferences",
                    "attempts": 0,
                    "n_reviews": 0,
                    "source": "none",
                    "raw": "",
                }
            )
        else:
            rows.append(
                {
                    "id": str(i),
                    "kind": kind,
                    "profile": o.text,
                    "status": o.status,
                    "n_words": int(o.n_words),
                    "detail": o.detail,
                    "attempts": int(o.attempts),
                    "n_reviews": len(groups[str(i)]),
                    "source": "generated",
                    "raw": o.raw,
                }
            )
    table = pd.DataFrame(rows, columns=PROFILE_TABLE_COLUMNS + ["raw"])
    summary = {
        "kind": kind,
        "n": len(table),
        "by_status": table["status"].value_counts().to_dict(),
        "n_usable": int(table["status"].isin(USABLE_STATUSES).sum()),
        "mean_reviews": round(float(table["n_reviews"].mean()), 2) if len(table) else 0.0,
        # coverage: the ids that got a usable profile, of all the ids asked for
        "coverage": round(float(table["status"].isin(USABLE_STATUSES).mean()), 4) if len(table) else None,
        "parse": gr.parse_rate(
            f"exp3rt_{kind}_profile",
            [o.raw for o in outs],
            gr.sections_parse(sections),
            constrained=cfg.teacher.teacher_constrained,
            usable=[o.status in USABLE_STATUSES for o in outs],
        ),
    }
    return StepOutput(table, requests, summary)


def profile_coverage(
    user_profiles: pd.DataFrame,
    item_profiles: pd.DataFrame,
    examples: pd.DataFrame,
    cfg: Config,
    candidates: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """How many of the evaluated users and items have a usable EXP3RT profile: the users and target
    items of the test subsample (the rating pairs) and the items the retriever proposes for
    reranking (``candidates``)."""

    test = eval_subset(examples, "test", cfg.data.n_test)
    has = {kind: set(usable_profiles(t)) for kind, t in (("user", user_profiles), ("item", item_profiles))}

    def share(kind: str, ids: Iterable[str]) -> dict[str, Any]:
        wanted = sorted(set(map(str, ids)))
        n = sum(i in has[kind] for i in wanted)
        return {"n": len(wanted), "with_profile": n, "rate": round(n / len(wanted), 4) if wanted else None}

    out = {"users": share("user", test["user_id"]), "items": share("item", test["target_item_id"])}
    if candidates is not None and len(candidates):
        out["candidate_items"] = share("item", candidates["item_id"])
        out["all_items"] = share("item", set(map(str, test["target_item_id"])) | set(map(str, candidates["item_id"])))
    return out


def usable_profiles(table: pd.DataFrame | None) -> dict[str, str]:
    """id -> profile text, usable rows only (what a prompt may show)."""
    if table is None or table.empty:
        return {}
    ok = table[table["status"].isin(USABLE_STATUSES) & (table["profile"].fillna("").str.strip() != "")]
    return dict(zip(ok["id"].astype(str), ok["profile"].astype(str)))


__all__ = [
    "EXP3RT_INPUTS",
    "profile_scope",
    "methods_needing_preferences",
    "rank_examples",
    "PREFERENCE_COLUMNS",
    "PROFILE_TABLE_COLUMNS",
    "build_profiles",
    "extract_preferences",
    "extraction_requests",
    "profile_coverage",
    "profile_requests",
    "item_reviews",
    "usable_profiles",
    "user_reviews",
]
