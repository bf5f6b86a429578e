"""The method registry: one entry per method, read by every step, table, report and the runner.

Adding a method means one :class:`MethodSpec` in :data:`REGISTRY` plus its code. The registry
holds declarations only (no heavy imports): a non-LLM method names its implementation as
``"module:function"``, loaded on first use by :func:`implementation`.

Fields:

* ``kind`` - how the method is built: ``finetuned_llm`` (LoRA student, notebook 06),
  ``zeroshot_llm`` (the base student), ``bias`` and ``sequential`` (classical like/dislike
  baselines), ``rating_baseline``, ``retriever`` and ``reranker`` (EXP3RT's tasks),
  ``hybrid`` (RecPIE: text fused into a recommender);
* ``task`` - what it answers, and so which metrics apply: ``like`` (AUC), ``rating``
  (RMSE/MAE), ``ranking`` (NDCG/Recall/HitRate@k);
* ``inputs`` - what its prompt or model sees (see :data:`INPUTS`);
* ``reasons`` - its output holds reasoning (BERTScore, faithfulness checks);
* ``teacher_view`` - for reasoning students: which inputs the teacher saw when it wrote the
  method's ground-truth reasoning (a faithful ablation's teacher sees only what its student sees);
* ``order`` - the row order of the tables is the order of :data:`REGISTRY`.

EXP3RT's LLM methods reuse the LLM kinds with ``task = rating`` (``exp3rt``, ``tallrec_rating``
finetuned, ``exp3rt_zeroshot`` on the base model): training, prediction and the tables switch on
the task. Rerankers (``kind = reranker``, ``task = ranking``) reorder a retriever's candidates by
another method's score; ``scorer`` names that method.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rrlib.errors import MethodError

KINDS = ("finetuned_llm", "zeroshot_llm", "bias", "sequential", "rating_baseline", "retriever", "reranker", "hybrid")
TASKS = ("like", "rating", "ranking")
#: what a method can be shown
INPUTS = {
    "titles": "item titles",
    "attributes": "item metadata: brand, price, genre, year",
    "descriptions": "teacher-written item descriptions (notebook 02)",
    "profile": "teacher-written user profile (notebook 03)",
    "history": "the user's recent items with liked/disliked",
    "ratings": "the user's and item's rating history (numbers)",
    "preferences": "EXP3RT: preferences extracted from reviews",
    "item_profile": "EXP3RT: item profile aggregated from reviews",
    "user_profile": "EXP3RT: user profile aggregated from extracted preferences",
    "candidates": "a retriever's candidate list",
    "explanation": "RecPIE: an LLM explanation encoded as text features",
}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    label: str
    family: str
    kind: str
    task: str
    inputs: frozenset[str]
    reasons: bool = False
    teacher_view: frozenset[str] | None = None
    implementation: str = ""
    note: str = ""
    scorer: str = ""  # rerankers: the method whose score reorders the candidates

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MethodError(f"method {self.name}: kind {self.kind!r} is not one of {KINDS}.")
        if self.task not in TASKS:
            raise MethodError(f"method {self.name}: task {self.task!r} is not one of {TASKS}.")
        unknown = set(self.inputs) - set(INPUTS)
        if unknown:
            raise MethodError(f"method {self.name}: unknown inputs {sorted(unknown)}; known: {sorted(INPUTS)}.")
        if (self.kind == "reranker") != bool(self.scorer):
            raise MethodError(f"method {self.name}: a reranker names its scorer, and only a reranker does.")

    @property
    def finetuned(self) -> bool:
        return self.kind == "finetuned_llm"

    @property
    def llm(self) -> bool:
        return self.kind in ("finetuned_llm", "zeroshot_llm")

    def shows(self, what: str) -> bool:
        return what in self.inputs


def _spec(name: str, label: str, family: str, kind: str, task: str, inputs: Iterable[str], **kw: Any) -> MethodSpec:
    view = kw.pop("teacher_view", None)
    return MethodSpec(
        name,
        label,
        family,
        kind,
        task,
        frozenset(inputs),
        teacher_view=frozenset(view) if view is not None else None,
        **kw,
    )


_ITEM = ("titles", "attributes")
_FULL = ("titles", "attributes", "descriptions", "profile", "history")
_EXP3RT = ("titles", "attributes", "descriptions", "user_profile", "item_profile")

REGISTRY: dict[str, MethodSpec] = {
    s.name: s
    for s in (
        # --- like/dislike: bias baselines (every table shows them) ---------------------------------
        _spec(
            "user_like_rate",
            "User like-rate",
            "bias",
            "bias",
            "like",
            ("history",),
            implementation="rrlib.methods.bias:predict",
        ),
        _spec(
            "item_like_rate",
            "Item like-rate (train)",
            "bias",
            "bias",
            "like",
            ("ratings",),
            implementation="rrlib.methods.bias:predict",
        ),
        _spec(
            "bias_logreg",
            "LogReg(user, item rate)",
            "bias",
            "bias",
            "like",
            ("history", "ratings"),
            implementation="rrlib.methods.bias:predict",
        ),
        # --- like/dislike: sequential recommenders ------------------------------------------------
        _spec(
            "sasrec",
            "SASRec",
            "sequential",
            "sequential",
            "like",
            ("history",),
            implementation="rrlib.methods.sequential:predict",
        ),
        _spec(
            "caser",
            "Caser",
            "sequential",
            "sequential",
            "like",
            ("history",),
            implementation="rrlib.methods.sequential:predict",
        ),
        # --- like/dislike: RecPIE, text fused into SASRec (user text: the explanation/profile) -----
        _spec(
            "recpie_no_text",
            "RecPIE w/o text",
            "recpie",
            "hybrid",
            "like",
            ("history",),
            implementation="rrlib.methods.recpie:predict",
            note="the RecPIE recommender with both texts off",
        ),
        _spec(
            "recpie_user_text",
            "RecPIE user text only",
            "recpie",
            "hybrid",
            "like",
            ("history", "explanation"),
            implementation="rrlib.methods.recpie:predict",
        ),
        _spec(
            "recpie_item_text",
            "RecPIE item text only",
            "recpie",
            "hybrid",
            "like",
            ("history", "descriptions"),
            implementation="rrlib.methods.recpie:predict",
        ),
        _spec(
            "recpie_hybrid",
            "RecPIE (user + item text)",
            "recpie",
            "hybrid",
            "like",
            ("history", "explanation", "descriptions"),
            implementation="rrlib.methods.recpie:predict",
        ),
        _spec(
            "recpie_rl",
            "RecPIE + reward-tuned explainer",
            "recpie",
            "hybrid",
            "like",
            ("history", "explanation", "descriptions"),
            implementation="rrlib.methods.recpie:predict",
            note="recpie_hybrid fed the explanations of the last RL round of notebook 06 (rrlib.finetune.rl)",
        ),
        # --- rating (EXP3RT's task): classical rating baselines, fitted on training interactions ---
        _spec(
            "global_mean",
            "Global mean rating",
            "rating",
            "rating_baseline",
            "rating",
            ("ratings",),
            implementation="rrlib.methods.rating:predict",
        ),
        _spec(
            "user_mean",
            "User mean rating",
            "rating",
            "rating_baseline",
            "rating",
            ("ratings",),
            implementation="rrlib.methods.rating:predict",
        ),
        _spec(
            "item_mean",
            "Item mean rating",
            "rating",
            "rating_baseline",
            "rating",
            ("ratings",),
            implementation="rrlib.methods.rating:predict",
        ),
        _spec(
            "user_item_bias",
            "Baseline μ + b_u + b_i",
            "rating",
            "rating_baseline",
            "rating",
            ("ratings",),
            implementation="rrlib.methods.rating:predict",
        ),
        _spec(
            "mf",
            "Biased MF (SVD)",
            "rating",
            "rating_baseline",
            "rating",
            ("ratings",),
            implementation="rrlib.methods.rating:predict",
        ),
        # --- top-k ranking: candidate generators (EXP3RT reranks their lists) ---------------------
        _spec(
            "popularity",
            "Popularity",
            "retrieval",
            "retriever",
            "ranking",
            ("ratings",),
            implementation="rrlib.methods.retrieval:predict",
        ),
        _spec(
            "bpr_mf",
            "BPR-MF",
            "retrieval",
            "retriever",
            "ranking",
            ("ratings",),
            implementation="rrlib.methods.retrieval:predict",
        ),
        # --- like/dislike: LLM students ---------------------------------------------------------
        _spec("zeroshot_vanilla", "Zero-shot Vanilla", "zeroshot", "zeroshot_llm", "like", _ITEM + ("history",)),
        _spec(
            "zeroshot_reasoningrec", "Zero-shot ReasoningRec", "zeroshot", "zeroshot_llm", "like", _FULL, reasons=True
        ),
        _spec("tallrec", "TALLRec", "tallrec", "finetuned_llm", "like", _ITEM + ("history",)),
        _spec(
            "reasoningrec_no_description",
            "ReasoningRec w/o Description",
            "reasoningrec",
            "finetuned_llm",
            "like",
            ("titles", "attributes", "profile", "history"),
            reasons=True,
            teacher_view=("titles", "attributes", "profile", "history"),
        ),
        _spec(
            "reasoningrec_no_profile",
            "ReasoningRec w/o Profile",
            "reasoningrec",
            "finetuned_llm",
            "like",
            ("titles", "attributes", "descriptions", "history"),
            reasons=True,
            teacher_view=("titles", "attributes", "descriptions", "history"),
        ),
        _spec(
            "reasoningrec",
            "ReasoningRec",
            "reasoningrec",
            "finetuned_llm",
            "like",
            _FULL,
            reasons=True,
            teacher_view=_FULL,
        ),
        # --- rating: LLM students of EXP3RT (the rating is read from the rating-token probabilities) --
        _spec(
            "exp3rt_zeroshot",
            "Zero-shot EXP3RT",
            "exp3rt",
            "zeroshot_llm",
            "rating",
            _EXP3RT,
            reasons=True,
            note="the base student with EXP3RT's prompt: reasoning, then 'Rating: r'",
        ),
        _spec(
            "tallrec_rating",
            "TALLRec (rating)",
            "exp3rt",
            "finetuned_llm",
            "rating",
            _EXP3RT,
            note="EXP3RT's inputs, completion 'Rating: r' only (no reasoning)",
        ),
        _spec("exp3rt", "EXP3RT", "exp3rt", "finetuned_llm", "rating", _EXP3RT, reasons=True),
        # --- top-k ranking: a retriever's candidates reordered by an LLM's score -------------------
        _spec(
            "exp3rt_rerank",
            "EXP3RT rerank",
            "exp3rt",
            "reranker",
            "ranking",
            _EXP3RT + ("candidates",),
            scorer="exp3rt",
            note="candidates by EXP3RT's expected rating, ties by the retriever's score",
        ),
        _spec(
            "reasoningrec_rerank",
            "ReasoningRec rerank",
            "reasoningrec",
            "reranker",
            "ranking",
            _FULL + ("candidates",),
            scorer="reasoningrec",
            note="candidates by ReasoningRec's P(Yes), ties by the retriever's score",
        ),
    )
}


#: the view of the full ReasoningRec teacher
FULL_VIEW = frozenset({"titles", "attributes", "descriptions", "profile", "history"})


def view_name(view: frozenset[str] | None) -> str:
    """A stable name of a teacher view: 'full', or what it leaves out ('no_description')."""
    missing = sorted(FULL_VIEW - set(view if view is not None else FULL_VIEW))
    return "full" if not missing else "no_" + "_".join(m.rstrip("s") for m in missing)


def get(name: str) -> MethodSpec:
    if name not in REGISTRY:
        raise MethodError(f"unknown method {name!r}; registered methods: {', '.join(REGISTRY)}.")
    return REGISTRY[name]


def names(
    *,
    kind: str | Iterable[str] | None = None,
    task: str | None = None,
    family: str | None = None,
    reasons: bool | None = None,
) -> list[str]:
    """Registered method names, in table order, filtered by kind(s), task, family, reasons."""
    kinds = {kind} if isinstance(kind, str) else set(kind) if kind is not None else None
    return [
        n
        for n, s in REGISTRY.items()
        if (kinds is None or s.kind in kinds)
        and (task is None or s.task == task)
        and (family is None or s.family == family)
        and (reasons is None or s.reasons == reasons)
    ]


def families() -> list[str]:
    """The registered families, in table order (the order of their first method)."""
    return list(dict.fromkeys(s.family for s in REGISTRY.values()))


def zero_shot_form(name: str) -> str | None:
    """The zero-shot method that reads the same prompt as finetuned ``name`` (same task, inputs and
    reasoning): the base model it starts from, its epoch 0."""
    spec = get(name)
    for other in REGISTRY.values():
        if other.kind == "zeroshot_llm" and (other.task, other.inputs, other.reasons) == (
            spec.task,
            spec.inputs,
            spec.reasons,
        ):
            return other.name
    return None


def order(name: str) -> int:
    """Row position of a method in every table (unregistered names go last)."""
    keys = list(REGISTRY)
    return keys.index(name) if name in REGISTRY else len(keys)


def label(name: str) -> str:
    return REGISTRY[name].label if name in REGISTRY else name


def implementation(name: str) -> Callable[..., Any]:
    """The function that fits and predicts a non-LLM method (see each family module)."""
    spec = get(name)
    if not spec.implementation:
        raise MethodError(
            f"method {name!r} ({spec.kind}) has no implementation entry point; LLM methods are "
            f"trained by rrlib.finetune and scored by rrlib.student."
        )
    module, _, func = spec.implementation.partition(":")
    return getattr(importlib.import_module(module), func)


__all__ = [
    "FULL_VIEW",
    "view_name",
    "zero_shot_form",
    "INPUTS",
    "KINDS",
    "REGISTRY",
    "TASKS",
    "families",
    "MethodSpec",
    "get",
    "implementation",
    "label",
    "names",
    "order",
]
