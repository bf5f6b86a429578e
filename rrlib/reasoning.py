"""Label-conditioned ground-truth reasoning (notebook 05, paper section 3.4).

For each example, the teacher sees the user's profile, the k most recent items (liked/disliked,
with descriptions), the target and the TRUE label, and explains in two parts why the user liked
or disliked the target. Two products, kept in separate files:

* training reasoning (``paths.reasoning``): the K-shot training set for max(KSHOT_SIZES); the
  student is finetuned on it (notebook 06);
* test references (``paths.reference_reasoning``, only with REFERENCE_REASONING): the test
  subsample (N_TEST); used ONLY as BERTScore references for the student's generated reasoning
  (notebook 07), as in the paper. The student never sees them, in training or in a prompt.

Teacher views (faithful ablations). Each reasoning method's ground truth is written by a teacher
that sees only what that method's student sees (its registry ``teacher_view``): the "w/o
profile" teacher gets no profile, the "w/o description" teacher gets titles and attributes but
no descriptions, as the authors did. Every row records the ``view`` it was written under and the
``method`` it serves. With ``ABLATION_REASONING: full`` every method reuses the full view's
reasoning instead (named as such in the tables).

Validation labels never reach a prompt; each generator refuses examples of another split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rrlib.config.params import Config, run_seeds
from rrlib.data.schema import as_list, eval_subset, kshot
from rrlib.enrich.generation import StepOutput, read_table, step_summary, teacher_request, write_table
from rrlib.llm.base import GenerationRequest, GenerationResult
from rrlib.methods.registry import FULL_VIEW, view_name
from rrlib.methods.registry import get as get_method
from rrlib.prompts import exp3rt as xp
from rrlib.prompts.grammars import parse_rate, rating_parse, sections_format, sections_parse
from rrlib.prompts.items import ItemCatalog
from rrlib.prompts.postprocess import (
    USABLE_STATUSES,
    Cleaned,
    Generator,
    clean_sectioned,
    generate_checked,
    prompt_text_of,
)
from rrlib.prompts.teacher import REASONING_SECTIONS, RatedItem

REASONING_COLUMNS = [
    "example_id",
    "method",
    "view",
    "label",
    "reasoning",
    "status",
    "n_words",
    "detail",
    "attempts",
    "truncated_prompt",
    "user_id",
    "target_item_id",
    "has_profile",
    "source",
]

#: the two products: which split each may hold and what it is for
TRAINING = "training"
TEST_REFERENCES = "test_references"
PRODUCT_SPLIT = {TRAINING: "train", TEST_REFERENCES: "test"}
PRODUCT_USE = {
    TRAINING: "finetuning targets for the student (notebook 06)",
    TEST_REFERENCES: "BERTScore references only (notebook 07); never shown to the student",
}


def teacher_views(methods: Sequence[str], ablation_reasoning: str = "faithful") -> dict[str, frozenset[str]]:
    """method -> the teacher view its ground truth is written under, for the reasoning methods
    among ``methods`` (``ablation_reasoning='full'``: every method reuses the full view)."""
    if ablation_reasoning not in ("faithful", "full"):
        raise ValueError(f"ABLATION_REASONING={ablation_reasoning!r} is not 'faithful' or 'full'.")
    out = {}
    for m in methods:
        spec = get_method(m)
        if spec.reasons and spec.finetuned and spec.task == "like":  # EXP3RT's teacher: generate_rating_reasoning
            view = spec.teacher_view if spec.teacher_view is not None else FULL_VIEW
            out[m] = FULL_VIEW if ablation_reasoning == "full" else frozenset(view)
    return out


def reasoning_examples(examples: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The training examples that get reasoning: the K-shot set for max(KSHOT_SIZES), which
    contains every smaller K-shot set, for each seed of SEEDS (their union)."""
    if not cfg.data.kshot_sizes:
        raise ValueError("KSHOT_SIZES is empty: give at least one training-set size.")
    parts = [
        kshot(examples, max(cfg.data.kshot_sizes), seed=s, base_seed=cfg.common.seed, sampling=cfg.data.kshot_sampling)
        for s in run_seeds(cfg)
    ]
    train = pd.concat(parts).drop_duplicates("example_id").sort_values(["sample_rank", "example_id"])
    if (train["split"] != "train").any():
        raise AssertionError("reasoning is generated for training examples only")
    return train


def reasoning_test_examples(examples: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The test examples whose reasoning is evaluated (BERTScore, faithfulness): the first
    N_REASONING_TEST of the seeded, label-stratified test subsample (all N_TEST when 0). The AUC
    always uses the whole subsample; reasoning is the costly part, so it can use fewer."""
    test = eval_subset(examples, "test", cfg.data.n_test)
    n = cfg.enrich.n_reasoning_test
    return test.head(n) if n else test


def reference_examples(examples: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The test subsample (N_TEST, 0 = all) that notebook 07 scores: its label-conditioned
    reasoning is the BERTScore reference for the student's generated reasoning."""
    test = reasoning_test_examples(examples, cfg)
    if test.empty:
        raise ValueError(
            "the examples table has no test examples, so there is nothing to write BERTScore "
            "references for; rerun 01_data_prep or set REFERENCE_REASONING to False."
        )
    if (test["split"] != "test").any():
        raise AssertionError("reference reasoning is generated for test examples only")
    return test


def _rated(catalog: ItemCatalog, item_id: str, liked: bool, view: frozenset[str]) -> RatedItem:
    return RatedItem(
        title=catalog.title(item_id),
        description=catalog.description(item_id) if "descriptions" in view else "",
        liked=bool(liked),
        attributes=catalog.attributes_of(item_id) if "attributes" in view else "",
    )


def reasoning_request(
    example: Mapping[str, Any],
    profile: str,
    catalog: ItemCatalog,
    *,
    domain: str,
    cfg: Config,
    view: frozenset[str] = FULL_VIEW,
) -> GenerationRequest:
    history = [
        _rated(catalog, str(i), bool(lk), view)
        for i, lk in zip(as_list(example["history_item_ids"]), as_list(example["history_liked"]))
    ]
    target = _rated(catalog, str(example["target_item_id"]), bool(int(example["label"]) == 1), view)
    request = teacher_request(
        "reasoning",
        cfg,
        words=cfg.enrich.reasoning_words,
        domain=domain,
        tag=str(example["example_id"]),
        profile=profile if "profile" in view else None,
        history=history,
        target=target,
        n_words=cfg.enrich.reasoning_words,
    )
    if cfg.teacher.teacher_constrained:  # 'Profile analysis: ...' / 'Target analysis: ...', one line each
        request = sections_format("reasoning", REASONING_SECTIONS, cfg.enrich.reasoning_words).apply(request)
    return request


def _check_reasoning(words: int):
    def check(req: GenerationRequest, res: GenerationResult) -> Cleaned:
        return clean_sectioned(
            res.text,
            sections=REASONING_SECTIONS,
            words_per_section=words,
            prompt_text=prompt_text_of(req),
            hit_length_limit=res.finish_reason == "length",
        )

    return check


def _require_split(examples: pd.DataFrame, product: str) -> None:
    split = PRODUCT_SPLIT[product]
    wrong = examples["split"] != split
    if wrong.any():
        bad = examples.loc[wrong, "example_id"].tolist()[:3]
        splits = sorted(set(examples.loc[wrong, "split"].astype(str)))
        hint = (
            "use generate_reference_reasoning for test examples (BERTScore references)"
            if product == TRAINING
            else "use generate_reasoning for training examples"
        )
        raise ValueError(
            f"{product} reasoning uses the true label, so it takes {split} examples only; got "
            f"{int(wrong.sum())} {'/'.join(splits)} example(s) such as {bad}. Keep the products "
            f"apart: {hint}."
        )


def _generate(
    examples: pd.DataFrame,
    profiles: pd.DataFrame,
    catalog: ItemCatalog,
    *,
    domain: str,
    cfg: Config,
    generator: Generator,
    product: str,
    views: Mapping[str, frozenset[str]],
) -> StepOutput:
    _require_split(examples, product)
    usable = profiles[profiles["status"].isin(USABLE_STATUSES)]
    profile_of = dict(zip(usable["user_id"].astype(str), usable["profile"].astype(str)))
    jobs, requests = [], {}
    for method, view in views.items():
        for ex in examples.to_dict("records"):
            req = reasoning_request(
                ex, profile_of.get(str(ex["user_id"]), ""), catalog, domain=domain, cfg=cfg, view=view
            )
            jobs.append((method, view, ex))
            requests[f"{method}:{ex['example_id']}"] = req
    outs = generate_checked(
        generator,
        list(requests.values()),
        _check_reasoning(cfg.enrich.reasoning_words),
        cfg.teacher.max_output_retries,
        desc=f"reasoning ({product.replace('_', ' ')})",
    )
    rows = []
    for (method, view, ex), o in zip(jobs, outs):
        rows.append(
            {
                "example_id": str(ex["example_id"]),
                "method": method,
                "view": view_name(view),
                "label": int(ex["label"]),
                "reasoning": o.text,
                "status": o.status,
                "n_words": int(o.n_words),
                "detail": o.detail,
                "attempts": int(o.attempts),
                "truncated_prompt": bool(o.truncated_prompt),
                "user_id": str(ex["user_id"]),
                "target_item_id": str(ex["target_item_id"]),
                "has_profile": "profile" in view and str(ex["user_id"]) in profile_of,
                "raw": o.raw,
                "source": "generated",
            }
        )
    table = pd.DataFrame(rows, columns=REASONING_COLUMNS + ["raw"])
    summary = {
        "product": product,
        "split": PRODUCT_SPLIT[product],
        "use": PRODUCT_USE[product],
        "views": {m: view_name(v) for m, v in views.items()},
        **step_summary(table, "reasoning", imported={}, needed=list(requests)),
    }
    summary["by_label"] = {
        str(k): int(v) for k, v in table.drop_duplicates("example_id")["label"].value_counts().items()
    }
    summary["parse"] = parse_rate(
        "reasoning",
        table["raw"],
        sections_parse(REASONING_SECTIONS),
        constrained=cfg.teacher.teacher_constrained,
        usable=table["status"].isin(USABLE_STATUSES),
    )
    summary["n_without_profile"] = int((~table["has_profile"]).sum())
    summary["n_items_without_description"] = len(catalog.fallbacks)
    return StepOutput(table, requests, summary)


def generate_reasoning(
    examples: pd.DataFrame,
    profiles: pd.DataFrame,
    catalog: ItemCatalog,
    *,
    domain: str,
    cfg: Config,
    generator: Generator,
    views: Mapping[str, frozenset[str]] | None = None,
) -> StepOutput:
    """Training reasoning for each row of ``examples`` under each method's teacher view (training
    rows only; anything else is refused). ``views`` defaults (None) to the full view for
    'reasoningrec'; an empty mapping (no reasoning method in METHODS) generates nothing.
    A user whose profile is missing or unusable is prompted with the no-profile note (counted)."""
    return _generate(
        examples,
        profiles,
        catalog,
        domain=domain,
        cfg=cfg,
        generator=generator,
        product=TRAINING,
        views={"reasoningrec": FULL_VIEW} if views is None else views,
    )


def generate_reference_reasoning(
    examples: pd.DataFrame,
    profiles: pd.DataFrame,
    catalog: ItemCatalog,
    *,
    domain: str,
    cfg: Config,
    generator: Generator,
    views: Mapping[str, frozenset[str]] | None = None,
) -> StepOutput:
    """BERTScore references: the same label-conditioned reasoning for each row of ``examples``
    (test rows only; anything else is refused), under the same views, prompt, settings and
    post-processing as the training reasoning, so each student's output is scored against the
    kind of text it was taught to write."""
    return _generate(
        examples,
        profiles,
        catalog,
        domain=domain,
        cfg=cfg,
        generator=generator,
        product=TEST_REFERENCES,
        views={"reasoningrec": FULL_VIEW} if views is None else views,
    )


def write_training_reasoning(
    all_examples: pd.DataFrame,
    profiles: pd.DataFrame,
    catalog: ItemCatalog,
    *,
    domain: str,
    cfg: Config,
    generator: Generator,
    paths,
    views: Mapping[str, frozenset[str]],
) -> StepOutput:
    """Generate the training reasoning (:func:`reasoning_examples`) and write ``paths.reasoning``."""
    out = generate_reasoning(
        reasoning_examples(all_examples, cfg),
        profiles,
        catalog,
        domain=domain,
        cfg=cfg,
        generator=generator,
        views=views,
    )
    out.summary = {"enabled": True, **out.summary, "table": str(write_table(out.table, paths.reasoning))}
    return out


def write_reference_reasoning(
    all_examples: pd.DataFrame,
    profiles: pd.DataFrame,
    catalog: ItemCatalog,
    *,
    domain: str,
    cfg: Config,
    generator: Generator,
    paths,
    views: Mapping[str, frozenset[str]],
) -> StepOutput:
    """With REFERENCE_REASONING: generate the test references (:func:`reference_examples`) and
    write ``paths.reference_reasoning``. Without: generate and write nothing, and remove a
    references file left by an earlier run (it would pair with outdated settings; its
    generations stay in the cache); the summary says so (``enabled``, ``removed_stale_file``)."""
    path = Path(paths.reference_reasoning)
    if not cfg.enrich.reference_reasoning:
        stale = path.exists()
        if stale:
            path.unlink()
        return StepOutput(
            pd.DataFrame(columns=REASONING_COLUMNS + ["raw"]),
            {},
            {
                "product": TEST_REFERENCES,
                "enabled": False,
                "n": 0,
                "removed_stale_file": stale,
                "note": "REFERENCE_REASONING is False: no test references, so notebook 07 cannot score generated "
                "reasoning with BERTScore.",
            },
        )
    out = generate_reference_reasoning(
        reference_examples(all_examples, cfg),
        profiles,
        catalog,
        domain=domain,
        cfg=cfg,
        generator=generator,
        views=views,
    )
    out.summary = {"enabled": True, **out.summary, "table": str(write_table(out.table, path))}
    return out


# ---------------------------------------------------------------------------------------
# EXP3RT: rating reasoning conditioned on the true rating (step 3's training targets)
# ---------------------------------------------------------------------------------------
EXP3RT_VIEW = "exp3rt"
RATING_REASONING_COLUMNS = [
    "example_id",
    "method",
    "view",
    "label",
    "target_rating",
    "rating",
    "reasoning",
    "status",
    "n_words",
    "detail",
    "attempts",
    "truncated_prompt",
    "user_id",
    "target_item_id",
    "source",
]


def _check_rating(rating: int, words: int):

    def check(req: GenerationRequest, res: GenerationResult) -> Cleaned:
        return xp.check_rating_reasoning(res.text, rating, words, prompt_text_of(req), res.finish_reason == "length")

    return check


def generate_rating_reasoning(
    examples: pd.DataFrame, ctx, *, cfg: Config, generator: Generator, product: str = TRAINING
) -> StepOutput:
    """EXP3RT step 3 ground truth: for each example the teacher explains, from the user profile, the
    item profile and the item description, why the user gave the TRUE rating (rounded to 1-5), and
    the answer ends with ``Rating: r``. ``product``: training (train rows only) or test references
    (test rows only, BERTScore)."""

    _require_split(examples, product)
    words = cfg.exp3rt.exp3rt_reasoning_words
    st = xp.settings(
        "exp3rt_rating_reasoning",
        cfg.common.seed,
        words=words,
        mode=cfg.teacher.generation_mode,
        repetition_penalty=cfg.teacher.teacher_repetition_penalty,
        tokens_per_word=cfg.teacher.teacher_tokens_per_word,
    )
    rows_in = examples.to_dict("records")
    ratings = [xp.integer_rating(r["target_rating"]) for r in rows_in]
    requests = {
        str(r["example_id"]): ctx.teacher_request(
            str(r["user_id"]),
            str(r["target_item_id"]),
            rating,
            words=words,
            settings_=st,
            tag=str(r["example_id"]),
            constrained=cfg.teacher.teacher_constrained,
        )
        for r, rating in zip(rows_in, ratings)
    }
    outs: list[tuple[int, Any]] = []
    # one check per rating value: the post-processing needs the true rating of each answer
    for rating in sorted(set(ratings)):
        idx = [i for i, x in enumerate(ratings) if x == rating]
        batch = [requests[str(rows_in[i]["example_id"])] for i in idx]
        got = generate_checked(
            generator,
            batch,
            _check_rating(rating, words),
            cfg.teacher.max_output_retries,
            desc=f"rating reasoning ({product.replace('_', ' ')}, rating {rating})",
        )
        outs.extend(zip(idx, got))
    outs.sort(key=lambda t: t[0])
    rows = []
    for (_, o), r, rating in zip(outs, rows_in, ratings):
        rows.append(
            {
                "example_id": str(r["example_id"]),
                "method": "exp3rt",
                "view": EXP3RT_VIEW,
                "label": int(r["label"]),
                "target_rating": float(r["target_rating"]),
                "rating": rating,
                "reasoning": o.text,
                "status": o.status,
                "n_words": int(o.n_words),
                "detail": o.detail,
                "attempts": int(o.attempts),
                "truncated_prompt": bool(o.truncated_prompt),
                "user_id": str(r["user_id"]),
                "target_item_id": str(r["target_item_id"]),
                "source": "generated",
                "raw": o.raw,
            }
        )
    table = pd.DataFrame(rows, columns=RATING_REASONING_COLUMNS + ["raw"])
    summary = {
        "product": product,
        "split": PRODUCT_SPLIT[product],
        "use": PRODUCT_USE[product],
        **step_summary(table, "reasoning", imported={}, needed=list(requests)),
        "by_rating": {str(k): int(v) for k, v in table["rating"].value_counts().sort_index().items()},
        # the teacher's answer ends with 'Rating: r' (the kept attempt's raw text)
        "parse": parse_rate(
            "exp3rt_rating_reasoning",
            table["raw"],
            rating_parse,
            constrained=cfg.teacher.teacher_constrained,
            usable=table["status"].isin(USABLE_STATUSES),
        ),
    }
    return StepOutput(table, requests, summary)


def write_rating_reasoning(
    all_examples: pd.DataFrame, ctx, *, cfg: Config, generator: Generator, paths
) -> tuple[StepOutput, StepOutput | None]:
    """Training rating reasoning (the K-shot sets of every seed) to ``paths.rating_reasoning`` and,
    with REFERENCE_REASONING, test references for the reasoning-test subsample to
    ``paths.rating_reference_reasoning`` (BERTScore only)."""
    train = generate_rating_reasoning(reasoning_examples(all_examples, cfg), ctx, cfg=cfg, generator=generator)
    train.summary["table"] = str(write_table(train.table, paths.rating_reasoning))
    refs = None
    if cfg.enrich.reference_reasoning:
        refs = generate_rating_reasoning(
            reference_examples(all_examples, cfg), ctx, cfg=cfg, generator=generator, product=TEST_REFERENCES
        )
        refs.summary["table"] = str(write_table(refs.table, paths.rating_reference_reasoning))
    return train, refs


def read_reasoning(path: Path, method: str, made_by: str = "05_reasoning_generation") -> pd.DataFrame:
    """The rows of a reasoning file written for ``method``'s teacher view."""

    table = read_table(path, ["example_id", "method", "label", "reasoning", "status"], made_by)
    rows = table[table["method"] == method]
    if rows.empty:
        have = sorted(table["method"].unique())
        raise ValueError(
            f"{path} holds no reasoning written for {method!r} (it has {have}); rerun {made_by} with "
            f"{method!r} in METHODS."
        )
    return rows


__all__ = [
    "EXP3RT_VIEW",
    "RATING_REASONING_COLUMNS",
    "generate_rating_reasoning",
    "write_rating_reasoning",
    "FULL_VIEW",
    "REASONING_COLUMNS",
    "reasoning_test_examples",
    "TEST_REFERENCES",
    "TRAINING",
    "generate_reasoning",
    "generate_reference_reasoning",
    "read_reasoning",
    "reasoning_examples",
    "reasoning_request",
    "reference_examples",
    "teacher_views",
    "view_name",
    "write_reference_reasoning",
    "write_training_reasoning",
]
