"""The training data of a finetune: K-shot prompt/completion pairs (like and rating students),
their validation prompts, and the checks that the answer sits where scoring reads it."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from rrlib.config.params import Config
from rrlib.config.paths import RunPaths
from rrlib.data import load_tables
from rrlib.data.schema import check_columns, eval_subset, kshot
from rrlib.enrich import preferences as pf
from rrlib.enrich.generation import read_table
from rrlib.errors import MethodError, PromptTooLongError
from rrlib.llm.base import GenerationRequest
from rrlib.prompts.answers import parse_prediction
from rrlib.prompts.exp3rt import RatingContext, integer_rating, rating_answer, split_rating_answer
from rrlib.prompts.postprocess import USABLE_STATUSES
from rrlib.reasoning import read_reasoning
from rrlib.student import (
    PROMPT_MARGIN,
    RATINGS,
    ScoringPrompt,
    chat_token_ids,
    fit_scoring_messages,
    rating_scoring_prompt,
    scoring_prompt,
    student_backend,
)
from rrlib.student.prompts import PromptContext, build_messages, completion, method_spec

log = logging.getLogger(__name__)

#: tokens kept free for the chat template's end-of-turn markers
_TEMPLATE_MARGIN = PROMPT_MARGIN


def _sft_pair(prompt: list, answer: str) -> dict:
    """One training pair in trl's conversational form: the prompt's messages, then ``answer`` as
    the assistant's turn (the completion the loss is computed on)."""
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]}


def load_reasoning(paths: RunPaths, examples: pd.DataFrame, method: str) -> tuple[dict[str, str], list[str]]:
    """Ground-truth reasoning for ``examples`` from notebook 05: (usable texts by example id,
    ids excluded because their reasoning is unusable). Missing or mislabelled rows are errors."""
    path = paths.require(paths.reasoning, "05_reasoning_generation")
    labels = dict(zip(examples["example_id"].astype(str), examples["label"].astype(int)))
    return _usable_reasoning(path, read_reasoning(path, method), examples, "label", labels, "reasoning")


def _usable_reasoning(
    path, table: pd.DataFrame, examples: pd.DataFrame, given: str, wanted: Mapping[str, int], what: str
) -> tuple[dict[str, str], list[str]]:
    """The rows of a reasoning table for ``examples``: each must exist and be written for the
    ``given`` value (label or rating) the example really has; unusable texts are left out."""
    table = table.drop_duplicates("example_id", keep="last").set_index("example_id")
    ids = examples["example_id"].astype(str).tolist()
    absent = [i for i in ids if i not in table.index]
    if absent:
        raise ValueError(
            f"{path}: no {what} for {len(absent)} of the {len(ids)} training examples (first: "
            f"{absent[:3]}); rerun 05_reasoning_generation with KSHOT_SIZES and METHODS covering them."
        )
    wrong = [i for i in ids if int(table.at[i, given]) != wanted[i]]
    if wrong:
        raise ValueError(
            f"{path}: {what} was generated for another {given} than the example's for {len(wrong)} "
            f"example(s) (first: {wrong[:3]}); the data changed since notebook 05 — rerun 05_reasoning_generation."
        )
    usable, excluded = {}, []
    for i in ids:
        text, status = table.at[i, "reasoning"], str(table.at[i, "status"])
        if status not in USABLE_STATUSES or not isinstance(text, str) or not text.strip():
            excluded.append(i)
        else:
            usable[i] = text.strip()
    if not usable:
        raise ValueError(
            f"{path}: none of the {len(ids)} training examples has usable {what} (statuses: "
            f"{sorted(set(table.loc[ids, 'status'].astype(str)))}); inspect notebook 05's outputs."
        )
    return usable, excluded


def fit_messages(backend, messages: list, budget: int, where: str) -> tuple[list, bool]:
    """Cut a prompt to ``budget`` tokens with the shared truncation policy."""
    try:
        return backend.fit_prompt(messages, budget)
    except PromptTooLongError as e:
        raise ValueError(f"{where}: {e} Raise MAX_SEQ_LENGTH or lower HISTORY_LEN / PROFILE_WORDS.") from e


def build_conversations(
    method: str, examples: pd.DataFrame, ctx: PromptContext, reasoning: Mapping[str, str], backend, max_seq_length: int
) -> tuple[list[dict], int]:
    """Prompt/completion pairs (trl conversational form) whose prompt fits with its completion
    in ``max_seq_length`` tokens; returns (pairs, number of prompts that had to be cut)."""
    tok = backend.tokenizer
    pairs, n_cut = [], 0
    for _, row in examples.iterrows():
        eid = str(row["example_id"])
        answer = completion(int(row["label"]), reasoning.get(eid, ""), method)
        answer_tokens = len(tok(answer, add_special_tokens=False)["input_ids"])
        budget = max_seq_length - answer_tokens - _TEMPLATE_MARGIN
        if budget < 32:
            raise ValueError(
                f"example {eid}: the completion alone takes {answer_tokens} tokens, leaving no room for "
                f"the prompt within MAX_SEQ_LENGTH={max_seq_length}; raise MAX_SEQ_LENGTH."
            )
        prompt, cut = fit_messages(backend, build_messages(method, row, ctx), budget, f"example {eid}")
        n_cut += cut
        pairs.append(_sft_pair(prompt, answer))
    return pairs, n_cut


@dataclass
class TrainingData:
    """What one training run learns from and is validated on."""

    pairs: list[dict]  # prompt/completion conversations of the K-shot examples
    example_ids: list[str]
    excluded: list[str]  # K-shot examples left out for unusable reasoning
    n_truncated: int  # training prompts cut to fit MAX_SEQ_LENGTH
    valid_prompts: list[ScoringPrompt]  # validation prompts as scored (training ids up to the answer)
    valid_labels: list[int]
    backend: Any  # the student's lazy backend (tokenizer, identity, truncation)
    task: str = "like"  # rating (EXP3RT): validated by the RMSE of the expected rating
    valid_messages: list = field(default_factory=list)  # rating: validation prompts (generation first)
    valid_ratings: list[float] = field(default_factory=list)
    reasons: bool = False  # the student writes reasoning (like: after its answer; rating: before it)
    n_multitask: int = 0  # rating: extra step 1-2 pairs (EXP3RT_MULTITASK)
    answer_offset: int | None = None  # like: the answer token's index within every completion

    @property
    def valid_texts(self) -> list[str]:
        """The validation prompts as the model reads them (decoded, for display)."""
        if self.task == "rating":
            return [m[-1]["content"] for m in self.valid_messages]
        return [self.backend.tokenizer.decode(list(p.ids)) for p in self.valid_prompts]

    @property
    def valid_key(self) -> Any:
        """What the validation reads (part of the configuration hash)."""
        if self.task == "rating":
            return {"messages": [list(m) for m in self.valid_messages], "ratings": list(self.valid_ratings)}
        return [[list(p.ids), p.yes_id, p.no_id] for p in self.valid_prompts]


def training_data(
    method: str, k: int, cfg: Config, paths: RunPaths, ctx: PromptContext, *, seed: int | None = None
) -> TrainingData:
    """The K-shot prompt/completion pairs and the validation texts of ``method`` (no model load).
    ``seed``: the K-shot sample's seed (default SEED, the one notebook 01 stored)."""
    spec = method_spec(method)
    if spec.task == "rating":
        return rating_training_data(method, k, cfg, paths, ctx, seed=seed)
    examples = check_columns(pd.read_parquet(paths.require(paths.examples, "01_data_prep")), "examples", paths.examples)
    train_rows = kshot(examples, k, seed=seed, base_seed=cfg.common.seed, sampling=cfg.data.kshot_sampling)
    excluded: list[str] = []
    reasoning: dict[str, str] = {}
    if spec.reasons:
        reasoning, excluded = load_reasoning(paths, train_rows, method)
        if excluded:
            log.warning(
                "%s K=%d: %d training example(s) left out because their reasoning is unusable: %s",
                method,
                k,
                len(excluded),
                excluded[:5],
            )
            train_rows = train_rows[~train_rows["example_id"].astype(str).isin(excluded)]
    backend = student_backend(cfg)  # tokenizer + truncation policy (no weights loaded here)
    max_len = cfg.student.max_seq_length
    pairs, n_cut = build_conversations(method, train_rows, ctx, reasoning, backend, max_len)
    valid_rows = eval_subset(examples, "valid", cfg.data.n_valid)
    if cfg.student.n_valid_eval:
        valid_rows = valid_rows.head(cfg.student.n_valid_eval)
    if valid_rows["label"].nunique() < 2:
        raise ValueError(
            f"the {len(valid_rows)} validation examples scored for early stopping hold only one label, "
            f"so AUC is undefined; raise N_VALID_EVAL (or N_VALID)."
        )
    valid_msgs = []
    for _, r in valid_rows.iterrows():
        try:
            valid_msgs.append(fit_scoring_messages(backend, build_messages(method, r, ctx), max_len)[0])
        except PromptTooLongError as e:
            raise ValueError(
                f"validation example {r['example_id']}: {e} Raise MAX_SEQ_LENGTH or lower HISTORY_LEN / PROFILE_WORDS."
            ) from e
    answer_offset = check_prediction_position(backend.tokenizer, pairs)
    return TrainingData(
        answer_offset=answer_offset,
        pairs=pairs,
        example_ids=train_rows["example_id"].astype(str).tolist(),
        excluded=excluded,
        n_truncated=n_cut,
        valid_prompts=[scoring_prompt(backend.tokenizer, m) for m in valid_msgs],
        valid_labels=valid_rows["label"].astype(int).tolist(),
        backend=backend,
        reasons=spec.reasons,
    )


def check_prediction_position(tokenizer, pairs: Sequence[Mapping[str, list]]) -> int | None:
    """Every training sequence must hold its answer token exactly where scoring reads it: the
    scored ids of its prompt, then the Yes (or No) id of :func:`rrlib.student.scoring_prompt`.
    Returns the answer token's index within the completion when it is the same for every pair
    (what ANSWER_LOSS_WEIGHT weighs), else None."""
    offsets = set()
    for n, pair in enumerate(pairs):
        label = parse_prediction(pair["completion"][0]["content"])
        if label is None:
            raise ValueError(f"training example {n}: its completion does not start with 'Prediction: Yes/No'.")
        full = chat_token_ids(tokenizer, list(pair["prompt"]) + list(pair["completion"]))
        sp = scoring_prompt(tokenizer, pair["prompt"])
        answer = sp.yes_id if label else sp.no_id
        at = len(sp.ids)
        if tuple(full[:at]) != sp.ids or len(full) <= at or full[at] != answer:
            raise ValueError(
                f"training example {n}: with this tokenizer and chat template the answer token of the "
                f"training sequence ({full[at : at + 1]}) is not where Yes/No scoring reads it "
                f"(after {at} tokens, id {answer}); the reasoning that follows the prediction changes "
                f"how the answer tokenizes."
            )
        offsets.add(at - len(chat_token_ids(tokenizer, list(pair["prompt"]), add_generation_prompt=True)))
    return offsets.pop() if len(offsets) == 1 else None


# ---------------------------------------------------------------------------------------
# EXP3RT's rating students: completion = reasoning + "Rating: r" (tallrec_rating: "Rating: r")
# ---------------------------------------------------------------------------------------
def load_rating_reasoning(paths: RunPaths, examples: pd.DataFrame) -> tuple[dict[str, str], list[str]]:
    """EXP3RT's rating reasoning of notebook 05 for ``examples``: (usable texts by example id,
    ids left out for unusable reasoning). A row written for another rating is an error."""

    path = paths.require(paths.rating_reasoning, "05_reasoning_generation")
    table = read_table(path, ["example_id", "rating", "reasoning", "status"], "05_reasoning_generation")
    wanted = dict(zip(examples["example_id"].astype(str), examples["target_rating"].map(integer_rating)))
    return _usable_reasoning(path, table, examples, "rating", wanted, "rating reasoning")


def build_rating_conversations(
    examples: pd.DataFrame, ctx, reasoning: Mapping[str, str] | None, backend, max_seq_length: int
) -> tuple[list[dict], int]:
    """Prompt/completion pairs of a rating student: EXP3RT's prompt, completion ``reasoning`` +
    ``Rating: r`` (``reasoning=None``: ``Rating: r`` alone, tallrec_rating), r the true rating on 1-5."""
    tok = backend.tokenizer
    pairs, n_cut = [], 0
    for _, row in examples.iterrows():
        eid = str(row["example_id"])
        answer = rating_answer(
            reasoning.get(eid, "") if reasoning is not None else "", integer_rating(row["target_rating"])
        )
        budget = max_seq_length - len(tok(answer, add_special_tokens=False)["input_ids"]) - _TEMPLATE_MARGIN
        if budget < 32:
            raise ValueError(
                f"example {eid}: the completion alone leaves no room for the prompt within "
                f"MAX_SEQ_LENGTH={max_seq_length}; raise MAX_SEQ_LENGTH."
            )
        messages = ctx.student_messages(
            str(row["user_id"]), str(row["target_item_id"]), with_reasoning=reasoning is not None
        )
        prompt, cut = fit_messages(backend, messages, budget, f"example {eid}")
        n_cut += cut
        pairs.append(_sft_pair(prompt, answer))
    return pairs, n_cut


def multitask_pairs(paths: RunPaths, cfg: Config, ctx) -> list[dict]:
    """EXP3RT_MULTITASK: steps 1 and 2 as extra SFT pairs, from notebook 04's tables: each usable
    extraction (the review's prompt -> the canonical preferences) and each usable user and item
    profile (the aggregation prompt -> the profile). Only reviews the split allows reach these
    tables (:mod:`rrlib.enrich.preferences`), so no held-out review is learned."""

    tables = load_tables(paths)
    extracted = pd.read_parquet(paths.require(paths.preferences, "04_review_preferences"))
    usable = extracted[extracted["status"].isin(USABLE_STATUSES)]
    ex = cfg.exp3rt
    reviews = pd.concat(
        [
            pf.user_reviews(
                tables.interactions,
                sorted(set(usable["user_id"].astype(str))),
                ex.exp3rt_reviews_per_user,
                ex.exp3rt_review_words,
            ),
            pf.item_reviews(
                tables.items,
                sorted(set(usable["item_id"].astype(str))),
                ex.exp3rt_reviews_per_item,
                ex.exp3rt_review_words,
            ),
        ],
        ignore_index=True,
    )
    requests = pf.extraction_requests(reviews, ctx.catalog, domain=ctx.domain, cfg=cfg)
    pairs = _teacher_pairs(requests, ((str(row.review_id), str(row.preferences)) for row in usable.itertuples()))
    for kind, path in (("user", paths.review_user_profiles), ("item", paths.review_item_profiles)):
        table = pd.read_parquet(paths.require(path, "04_review_preferences"))
        table = table[table["status"].isin(USABLE_STATUSES)]
        prof_requests = pf.profile_requests(
            extracted, kind, table["id"].astype(str).tolist(), ctx.catalog, domain=ctx.domain, cfg=cfg
        )
        pairs += _teacher_pairs(prof_requests, ((str(row.id), str(row.profile)) for row in table.itertuples()))
    return pairs


def _teacher_pairs(requests: Mapping[str, GenerationRequest], answers: Iterable[tuple[str, str]]) -> list[dict]:
    """Pairs of the teacher's own prompts (``requests`` by id) and the usable texts they produced
    (``answers``: id, text); a text whose id has no request is left out."""
    pairs = []
    for key, answer in answers:
        req = requests.get(key)
        if req is not None:
            pairs.append(_sft_pair([dict(m) for m in req.messages], answer))
    return pairs


def rating_training_data(
    method: str, k: int, cfg: Config, paths: RunPaths, ctx, *, seed: int | None = None
) -> TrainingData:
    """The K-shot pairs of a rating student (EXP3RT, tallrec_rating) and its validation prompts
    (the first N_VALID_EVAL valid examples; RMSE of the expected rating). ``ctx``: a
    :class:`rrlib.prompts.exp3rt.RatingContext`."""

    spec = method_spec(method)
    if not isinstance(ctx, RatingContext):
        raise MethodError(
            f"method {method!r} answers ratings: pass its RatingContext "
            f"(PromptContext.from_run(paths, domain, {method!r}) returns it)."
        )
    examples = check_columns(pd.read_parquet(paths.require(paths.examples, "01_data_prep")), "examples", paths.examples)
    train_rows = kshot(examples, k, seed=seed, base_seed=cfg.common.seed, sampling=cfg.data.kshot_sampling)
    excluded: list[str] = []
    reasoning: dict[str, str] | None = None
    if spec.reasons:
        reasoning, excluded = load_rating_reasoning(paths, train_rows)
        if excluded:
            log.warning(
                "%s K=%d: %d training example(s) left out because their rating reasoning is unusable",
                method,
                k,
                len(excluded),
            )
            train_rows = train_rows[~train_rows["example_id"].astype(str).isin(excluded)]
    backend = student_backend(cfg)
    max_len = cfg.student.max_seq_length
    pairs, n_cut = build_rating_conversations(train_rows, ctx, reasoning, backend, max_len)
    check_rating_position(backend.tokenizer, pairs)
    extra = multitask_pairs(paths, cfg, ctx) if cfg.exp3rt.exp3rt_multitask else []
    valid_rows = eval_subset(examples, "valid", cfg.data.n_valid)
    if cfg.student.n_valid_eval:
        valid_rows = valid_rows.head(cfg.student.n_valid_eval)
    if valid_rows.empty:
        raise ValueError("no validation examples to compute the validation RMSE on; raise N_VALID / N_VALID_EVAL.")
    valid_msgs = []
    for _, r in valid_rows.iterrows():
        msgs = ctx.student_messages(str(r["user_id"]), str(r["target_item_id"]), with_reasoning=spec.reasons)
        try:
            valid_msgs.append(fit_scoring_messages(backend, msgs, max_len)[0])
        except PromptTooLongError as e:
            raise ValueError(
                f"validation example {r['example_id']}: {e} Raise MAX_SEQ_LENGTH or lower EXP3RT_PROFILE_WORDS."
            ) from e
    return TrainingData(
        pairs=pairs + extra,
        example_ids=train_rows["example_id"].astype(str).tolist(),
        excluded=excluded,
        n_truncated=n_cut,
        valid_prompts=[],
        valid_labels=[],
        backend=backend,
        task="rating",
        valid_messages=valid_msgs,
        valid_ratings=valid_rows["target_rating"].astype(float).tolist(),
        reasons=spec.reasons,
        n_multitask=len(extra),
    )


def check_rating_position(tokenizer, pairs: Sequence[Mapping[str, list]]) -> None:
    """Every rating training sequence holds its rating token exactly where rating scoring reads it."""

    for n, pair in enumerate(pairs):
        answer = split_rating_answer(pair["completion"][0]["content"])
        if not answer.format_ok:
            raise ValueError(f"rating training example {n}: its completion does not end with 'Rating: r'.")
        full = chat_token_ids(tokenizer, list(pair["prompt"]) + list(pair["completion"]))
        rp = rating_scoring_prompt(tokenizer, pair["prompt"], answer.reasoning)
        at = len(rp.ids)
        assert answer.stated is not None  # format_ok above
        want = rp.rating_ids[RATINGS.index(int(answer.stated))]
        if tuple(full[:at]) != rp.ids or len(full) <= at or full[at] != want:
            raise ValueError(
                f"rating training example {n}: the rating token of the training sequence is not where "
                f"rating scoring reads it (after {at} tokens)."
            )


def token_split(pair: Mapping[str, list], tokenizer) -> dict[str, int]:
    """Tokens of the prompt (masked out of the loss) and of the completion (trained on)."""
    prompt = tokenizer.apply_chat_template(pair["prompt"], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(pair["prompt"] + pair["completion"], tokenize=False)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    n_full = len(tokenizer(full, add_special_tokens=False)["input_ids"])
    return {"prompt_tokens": n_prompt, "completion_tokens": n_full - n_prompt}


def to_dataset(pairs: Sequence[dict]):
    from datasets import Dataset

    return Dataset.from_list(list(pairs))
