"""Label-conditioned ground-truth reasoning (notebook 04, paper section 3.4).

For each training example of the largest K-shot set, the teacher sees the user's profile, the
k most recent items (liked/disliked, with descriptions), the target's description and the TRUE
label, and explains in two parts why the user liked or disliked the target. Only training
examples get reasoning: validation and test labels must never reach a prompt.
"""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from rrlib.data.schema import kshot
from rrlib.enrich import ItemTexts, StepOutput, as_list, step_summary
from rrlib.llm.base import GenerationRequest, GenerationResult
from rrlib.prompts.postprocess import USABLE_STATUSES, Cleaned, Generator, clean_sectioned, generate_checked, prompt_text_of
from rrlib.prompts.teacher import REASONING_SECTIONS, generation_settings, template_for

REASONING_COLUMNS = ["example_id", "label", "reasoning", "status", "n_words", "detail", "attempts",
                     "truncated_prompt", "user_id", "target_item_id", "has_profile", "source"]


def reasoning_examples(examples: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """The training examples that get reasoning: the K-shot set for max(KSHOT_SIZES), which
    contains every smaller K-shot set."""
    if not params["KSHOT_SIZES"]:
        raise ValueError("KSHOT_SIZES is empty: give at least one training-set size.")
    train = kshot(examples, max(params["KSHOT_SIZES"]))
    if (train["split"] != "train").any():
        raise AssertionError("reasoning is generated for training examples only")
    return train


def reasoning_request(example: Mapping[str, Any], profile: str, texts: ItemTexts, *, domain: str,
                      params: Mapping[str, Any]) -> GenerationRequest:
    history = [texts.rated(str(i), bool(l)) for i, l in zip(as_list(example["history_item_ids"]),
                                                            as_list(example["history_liked"]))]
    target = texts.rated(str(example["target_item_id"]), bool(int(example["label"]) == 1))
    template = template_for("reasoning")
    settings = generation_settings("reasoning", params["GENERATION_MODE"], params["SEED"])
    return template.request(domain, settings, tag=str(example["example_id"]), profile=profile,
                            history=history, target=target, n_words=params["REASONING_WORDS"])


def _check_reasoning(words: int):
    def check(req: GenerationRequest, res: GenerationResult) -> Cleaned:
        return clean_sectioned(res.text, sections=REASONING_SECTIONS, words_per_section=words,
                               prompt_text=prompt_text_of(req), hit_length_limit=res.finish_reason == "length")
    return check


def generate_reasoning(examples: pd.DataFrame, profiles: pd.DataFrame, texts: ItemTexts, *, domain: str,
                       params: Mapping[str, Any], generator: Generator) -> StepOutput:
    """Reasoning for each row of ``examples`` (training rows only). A user whose profile is
    missing or unusable is prompted with the no-profile note (counted in the summary)."""
    if (examples["split"] != "train").any():
        bad = examples.loc[examples["split"] != "train", "example_id"].tolist()[:3]
        raise ValueError(f"reasoning ground truth uses the true label, so only training examples may get it; "
                         f"got non-training examples such as {bad}.")
    usable = profiles[profiles["status"].isin(USABLE_STATUSES)]
    profile_of = dict(zip(usable["user_id"].astype(str), usable["profile"].astype(str)))
    requests, rows = {}, []
    for ex in examples.to_dict("records"):
        requests[str(ex["example_id"])] = reasoning_request(ex, profile_of.get(str(ex["user_id"]), ""), texts,
                                                            domain=domain, params=params)
    outs = generate_checked(generator, list(requests.values()), _check_reasoning(params["REASONING_WORDS"]),
                            params["MAX_OUTPUT_RETRIES"], desc="reasoning")
    for ex, o in zip(examples.to_dict("records"), outs):
        rows.append({"example_id": str(ex["example_id"]), "label": int(ex["label"]), "reasoning": o.text,
                     "status": o.status, "n_words": int(o.n_words), "detail": o.detail, "attempts": int(o.attempts),
                     "truncated_prompt": bool(o.truncated_prompt), "user_id": str(ex["user_id"]),
                     "target_item_id": str(ex["target_item_id"]),
                     "has_profile": str(ex["user_id"]) in profile_of, "raw": o.raw, "source": "generated"})
    table = pd.DataFrame(rows, columns=REASONING_COLUMNS + ["raw"])
    summary = step_summary(table, "reasoning", imported={}, needed=list(requests))
    summary["by_label"] = {str(k): int(v) for k, v in table["label"].value_counts().items()}
    summary["n_without_profile"] = int((~table["has_profile"]).sum())
    summary["n_history_items_without_description"] = len(texts.fallbacks)
    return StepOutput(table, requests, summary)
