"""Every recommender the workbook compares, as one registry (:mod:`.registry`) plus one module
per system family: :mod:`.bias`, :mod:`.sequential`, :mod:`.rating` (rating baselines),
:mod:`.retrieval` (candidate generators and reranking), :mod:`.recpie` (RecPIE's text-fused recommender;
its reward-tuned explainer is :mod:`rrlib.finetune.rl`) and the EXP3RT family.
The LLM students (ReasoningRec, TALLRec, zero-shot) have no module of their own here: their
prompts live in :mod:`rrlib.student.prompts`, their training in :mod:`rrlib.finetune` and their
scoring in :mod:`rrlib.student`; the registry says what each one shows and answers."""

from rrlib.methods.registry import INPUTS, KINDS, REGISTRY, TASKS, MethodSpec, get, implementation, label, names, order

__all__ = ["INPUTS", "KINDS", "REGISTRY", "TASKS", "MethodSpec", "get", "implementation", "label", "names", "order"]
