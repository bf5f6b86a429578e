"""Label-conditioned ground-truth reasoning (notebook 04, paper section 3.4).

For each example, the teacher sees the user's profile, the k most recent items (liked/disliked,
with descriptions), the target's description and the TRUE label, and explains in two parts why
the user liked or disliked the target. Two products, kept in separate files:

* training reasoning (``paths.reasoning``): the K-shot training set for max(KSHOT_SIZES); the
  student is finetuned on it (notebook 05);
* test references (``paths.reference_reasoning``, only with REFERENCE_REASONING): the test
  subsample (N_TEST); used ONLY as BERTScore references for the student's generated reasoning
  (notebook 06), as in the paper. The student never sees them, in training or in a prompt.

Validation labels never reach a prompt; each generator refuses examples of another split.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from rrlib.data.schema import eval_subset, kshot
from rrlib.enrich import ItemTexts, StepOutput, as_list, step_summary, write_table
from rrlib.llm.base import GenerationRequest, GenerationResult
from rrlib.prompts.postprocess import (USABLE_STATUSES, Cleaned, Generator, clean_sectioned, generate_checked,
                                       prompt_text_of)
from rrlib.prompts.teacher import REASONING_SECTIONS, generation_settings, template_for

REASONING_COLUMNS = ["example_id", "label", "reasoning", "status", "n_words", "detail", "attempts",
                     "truncated_prompt", "user_id", "target_item_id", "has_profile", "source"]

#: the two products: which split each may hold and what it is for
TRAINING = "training"
TEST_REFERENCES = "test_references"
PRODUCT_SPLIT = {TRAINING: "train", TEST_REFERENCES: "test"}
PRODUCT_USE = {TRAINING: "finetuning targets for the student (notebook 05)",
               TEST_REFERENCES: "BERTScore references only (notebook 06); never shown to the student"}


def reasoning_examples(examples: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """The training examples that get reasoning: the K-shot set for max(KSHOT_SIZES), which
    contains every smaller K-shot set."""
    if not params["KSHOT_SIZES"]:
        raise ValueError("KSHOT_SIZES is empty: give at least one training-set size.")
    train = kshot(examples, max(params["KSHOT_SIZES"]))
    if (train["split"] != "train").any():
        raise AssertionError("reasoning is generated for training examples only")
    return train


def reference_examples(examples: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """The test subsample (N_TEST, 0 = all) that notebook 06 scores: its label-conditioned
    reasoning is the BERTScore reference for the student's generated reasoning."""
    test = eval_subset(examples, "test", params["N_TEST"])
    if test.empty:
        raise ValueError("the examples table has no test examples, so there is nothing to write BERTScore "
                         "references for; rerun 01_data_prep or set REFERENCE_REASONING to False.")
    if (test["split"] != "test").any():
        raise AssertionError("reference reasoning is generated for test examples only")
    return test


def reasoning_request(example: Mapping[str, Any], profile: str, texts: ItemTexts, *, domain: str,
                      params: Mapping[str, Any]) -> GenerationRequest:
    history = [texts.rated(str(i), bool(l)) for i, l in zip(as_list(example["history_item_ids"]),
                                                            as_list(example["history_liked"]))]
    target = texts.rated(str(example["target_item_id"]), bool(int(example["label"]) == 1))
    template = template_for("reasoning")
    settings = generation_settings("reasoning", params["GENERATION_MODE"], params["SEED"],
                                   words=params["REASONING_WORDS"],
                                   repetition_penalty=params["TEACHER_REPETITION_PENALTY"])
    return template.request(domain, settings, tag=str(example["example_id"]), profile=profile,
                            history=history, target=target, n_words=params["REASONING_WORDS"])


def _check_reasoning(words: int):
    def check(req: GenerationRequest, res: GenerationResult) -> Cleaned:
        return clean_sectioned(res.text, sections=REASONING_SECTIONS, words_per_section=words,
                               prompt_text=prompt_text_of(req), hit_length_limit=res.finish_reason == "length")
    return check


def _require_split(examples: pd.DataFrame, product: str) -> None:
    split = PRODUCT_SPLIT[product]
    wrong = examples["split"] != split
    if wrong.any():
        bad = examples.loc[wrong, "example_id"].tolist()[:3]
        splits = sorted(set(examples.loc[wrong, "split"].astype(str)))
        hint = ("use generate_reference_reasoning for test examples (BERTScore references)" if product == TRAINING
                else "use generate_reasoning for training examples")
        raise ValueError(f"{product} reasoning uses the true label, so it takes {split} examples only; got "
                         f"{int(wrong.sum())} {'/'.join(splits)} example(s) such as {bad}. Keep the products "
                         f"apart: {hint}.")


def _generate(examples: pd.DataFrame, profiles: pd.DataFrame, texts: ItemTexts, *, domain: str,
              params: Mapping[str, Any], generator: Generator, product: str) -> StepOutput:
    _require_split(examples, product)
    usable = profiles[profiles["status"].isin(USABLE_STATUSES)]
    profile_of = dict(zip(usable["user_id"].astype(str), usable["profile"].astype(str)))
    requests, rows = {}, []
    for ex in examples.to_dict("records"):
        requests[str(ex["example_id"])] = reasoning_request(ex, profile_of.get(str(ex["user_id"]), ""), texts,
                                                            domain=domain, params=params)
    outs = generate_checked(generator, list(requests.values()), _check_reasoning(params["REASONING_WORDS"]),
                            params["MAX_OUTPUT_RETRIES"], desc=f"reasoning ({product.replace('_', ' ')})")
    for ex, o in zip(examples.to_dict("records"), outs):
        rows.append({"example_id": str(ex["example_id"]), "label": int(ex["label"]), "reasoning": o.text,
                     "status": o.status, "n_words": int(o.n_words), "detail": o.detail, "attempts": int(o.attempts),
                     "truncated_prompt": bool(o.truncated_prompt), "user_id": str(ex["user_id"]),
                     "target_item_id": str(ex["target_item_id"]),
                     "has_profile": str(ex["user_id"]) in profile_of, "raw": o.raw, "source": "generated"})
    table = pd.DataFrame(rows, columns=REASONING_COLUMNS + ["raw"])
    summary = {"product": product, "split": PRODUCT_SPLIT[product], "use": PRODUCT_USE[product],
               **step_summary(table, "reasoning", imported={}, needed=list(requests))}
    summary["by_label"] = {str(k): int(v) for k, v in table["label"].value_counts().items()}
    summary["n_without_profile"] = int((~table["has_profile"]).sum())
    summary["n_history_items_without_description"] = len(texts.fallbacks)
    return StepOutput(table, requests, summary)


def generate_reasoning(examples: pd.DataFrame, profiles: pd.DataFrame, texts: ItemTexts, *, domain: str,
                       params: Mapping[str, Any], generator: Generator) -> StepOutput:
    """Training reasoning for each row of ``examples`` (training rows only; anything else is
    refused). A user whose profile is missing or unusable is prompted with the no-profile note
    (counted in the summary)."""
    return _generate(examples, profiles, texts, domain=domain, params=params, generator=generator,
                     product=TRAINING)


def generate_reference_reasoning(examples: pd.DataFrame, profiles: pd.DataFrame, texts: ItemTexts, *,
                                 domain: str, params: Mapping[str, Any], generator: Generator) -> StepOutput:
    """BERTScore references: the same label-conditioned reasoning for each row of ``examples``
    (test rows only; anything else is refused). Same prompt, settings and post-processing as
    the training reasoning, so the student's output is scored against the kind of text it was
    taught to write."""
    return _generate(examples, profiles, texts, domain=domain, params=params, generator=generator,
                     product=TEST_REFERENCES)


def write_training_reasoning(all_examples: pd.DataFrame, profiles: pd.DataFrame, texts: ItemTexts, *,
                             domain: str, params: Mapping[str, Any], generator: Generator, paths) -> StepOutput:
    """Generate the training reasoning (:func:`reasoning_examples`) and write ``paths.reasoning``."""
    out = generate_reasoning(reasoning_examples(all_examples, params), profiles, texts, domain=domain,
                             params=params, generator=generator)
    out.summary = {"enabled": True, **out.summary, "table": str(write_table(out.table, paths.reasoning))}
    return out


def write_reference_reasoning(all_examples: pd.DataFrame, profiles: pd.DataFrame, texts: ItemTexts, *,
                              domain: str, params: Mapping[str, Any], generator: Generator, paths) -> StepOutput:
    """With REFERENCE_REASONING: generate the test references (:func:`reference_examples`) and
    write ``paths.reference_reasoning``. Without: generate and write nothing, and remove a
    references file left by an earlier run (it would pair with outdated settings; its
    generations stay in the cache); the summary says so (``enabled``, ``removed_stale_file``)."""
    path = Path(paths.reference_reasoning)
    if not params["REFERENCE_REASONING"]:
        stale = path.exists()
        if stale:
            path.unlink()
        return StepOutput(pd.DataFrame(columns=REASONING_COLUMNS + ["raw"]), {}, {
            "product": TEST_REFERENCES, "enabled": False, "n": 0, "removed_stale_file": stale,
            "note": "REFERENCE_REASONING is False: no test references, so notebook 06 cannot score generated "
                    "reasoning with BERTScore."})
    out = generate_reference_reasoning(reference_examples(all_examples, params), profiles, texts, domain=domain,
                                       params=params, generator=generator)
    out.summary = {"enabled": True, **out.summary, "table": str(write_table(out.table, path))}
    return out
