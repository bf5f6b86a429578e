"""What notebook 07 evaluates: the methods the parameters name, grouped by how they are built,
every name checked against the registry before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from rrlib.config.params import Config, run_seeds
from rrlib.errors import MethodError
from rrlib.methods import registry


@dataclass
class EvaluationPlan:
    #: (method, K, seed) of every finetuned LLM run (METHODS x TRAIN_KSHOTS x seeds)
    finetuned: list[tuple[str, int, int]] = field(default_factory=list)
    #: zero-shot LLM methods (K = 0)
    zeroshot: list[str] = field(default_factory=list)
    #: non-LLM methods by implementation entry point ("module:function" -> names)
    fitted: dict[str, list[str]] = field(default_factory=dict)
    #: ranking-task methods (retrievers, rerankers): run by rrlib.evaluate.exp3rt.run_rankings
    ranking: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return [m for m, _, _ in self.finetuned] + self.zeroshot + [m for ms in self.fitted.values() for m in ms]

    def blocks(self, seed: int) -> set[tuple[str, int, int]]:
        """The (method, K, seed) blocks this plan produces; non-finetuned methods run once, with ``seed``."""
        out = set(self.finetuned)
        out |= {(m, 0, seed) for m in self.zeroshot}
        out |= {(m, 0, seed) for ms in self.fitted.values() for m in ms}
        return out

    def select(self, predictions, examples, seed: int):
        """The rows of ``predictions`` that this plan produced for ``examples`` (the file may hold
        older blocks of the same run)."""
        wanted = self.blocks(seed)
        keep = [
            (m, int(k), int(s)) in wanted
            for m, k, s in zip(predictions["method"], predictions["k"], predictions["seed"])
        ]
        rows = predictions[keep]
        return rows[rows["example_id"].isin(set(examples["example_id"]))]

    def as_dict(self) -> dict:
        return {
            "finetuned": [list(t) for t in self.finetuned],
            "zeroshot": self.zeroshot,
            "fitted": self.fitted,
            "ranking": self.ranking,
        }


def evaluation_plan(cfg: Config) -> EvaluationPlan:
    """METHODS (finetuned LLM methods) x TRAIN_KSHOTS x seeds, and EVAL_METHODS (everything else)."""
    plan = EvaluationPlan()
    finetuned = registry.names(kind="finetuned_llm")
    for m in cfg.student.methods:
        if m not in finetuned:
            raise MethodError(
                f"METHODS has {m!r}, which is not a finetuned LLM method; choose from {finetuned} "
                f"(zero-shot methods and baselines go in EVAL_METHODS)."
            )
        plan.finetuned += [(m, int(k), s) for k in cfg.student.train_kshots for s in run_seeds(cfg)]
    for m in cfg.evaluate.eval_methods:
        spec = registry.get(m)  # MethodError for an unknown name
        if spec.kind == "finetuned_llm":
            raise MethodError(f"EVAL_METHODS has {m!r}, a finetuned method: put it in METHODS.")
        if spec.kind == "zeroshot_llm":
            plan.zeroshot.append(m)
        elif spec.task == "ranking":
            plan.ranking.append(m)
        else:
            plan.fitted.setdefault(spec.implementation, []).append(m)
    return plan


__all__ = ["EvaluationPlan", "evaluation_plan"]
