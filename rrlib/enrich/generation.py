"""What notebooks 02-05 share: a step's output (table, requests, summary), the rows of imported
and generated texts, the summary counts, and reading and writing the enrichment tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rrlib.config.params import Config
from rrlib.enrich.imports import import_coverage, imported_status
from rrlib.errors import MissingArtifactError
from rrlib.io import write_parquet_atomic
from rrlib.llm.base import GenerationRequest, GenerationResult
from rrlib.prompts.postprocess import (
    USABLE_STATUSES,
    CheckedOutput,
    Cleaned,
    Generator,
    clean_output,
    generate_checked,
    prompt_text_of,
)
from rrlib.prompts.teacher import generation_settings, template_for

#: what every text row of 02-04 records next to its key and text: where the text came from and how its check went
TEXT_STATUS_COLUMNS = ["source", "status", "n_words", "detail", "attempts", "truncated_prompt"]
DESCRIPTION_COLUMNS = ["item_id", "description", *TEXT_STATUS_COLUMNS]
PROFILE_COLUMNS = ["user_id", "profile", *TEXT_STATUS_COLUMNS, "n_profile_items"]


@dataclass
class StepOutput:
    """A generation step's table, the requests it sent (by id, for showing prompts) and a summary."""

    table: pd.DataFrame
    requests: dict[str, GenerationRequest] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def teacher_request(task: str, cfg: Config, *, words: int, domain: str, tag: str, **inputs: Any) -> GenerationRequest:
    """The teacher prompt of ``task`` (item_description, user_profile, reasoning) for ``inputs``,
    with this run's decoding settings (the paper's or greedy, its seed and penalties) and a
    token budget scaled to ``words``: one place, so the three steps cannot drift apart."""
    template = template_for(task)
    settings = generation_settings(
        task,
        cfg.teacher.generation_mode,
        cfg.common.seed,
        words=words,
        repetition_penalty=cfg.teacher.teacher_repetition_penalty,
        tokens_per_word=cfg.teacher.teacher_tokens_per_word,
    )
    return template.request(domain, settings, tag=tag, **inputs)


def _imported_row(id_col: str, key: str, text: str) -> dict:
    c = imported_status(text)
    return {
        id_col: key,
        "text": c.text,
        "source": "imported",
        "status": c.status,
        "n_words": c.n_words,
        "detail": c.detail,
        "attempts": 0,
        "truncated_prompt": False,
        "raw": text,
    }


def _generated_row(id_col: str, key: str, o: CheckedOutput) -> dict:
    return {
        id_col: key,
        "text": o.text,
        "source": "generated",
        "status": o.status,
        "n_words": o.n_words,
        "detail": o.detail,
        "attempts": o.attempts,
        "truncated_prompt": o.truncated_prompt,
        "raw": o.raw,
    }


_ROW_KEYS = ["text", "source", "status", "n_words", "detail", "attempts", "truncated_prompt", "raw"]


def generated_rows(
    generator: Generator, requests: Mapping[str, GenerationRequest], id_col: str, words: int, cfg: Config, desc: str
) -> list[dict]:
    """Table rows of the plain texts ``requests`` (by id) ask for: each checked against its word
    budget ``words``, a degenerate one generated again with a new seed (MAX_OUTPUT_RETRIES)."""
    outs = generate_checked(
        generator, list(requests.values()), _check_plain(words), cfg.teacher.max_output_retries, desc=desc
    )
    return [_generated_row(id_col, key, o) for key, o in zip(requests, outs)]


def _table(
    rows: list[dict],
    id_col: str,
    text_col: str,
    ids: Sequence[str],
    columns: Sequence[str],
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Rows in the order of ``ids`` with typed columns; ``extra`` adds columns by id."""
    table = pd.DataFrame(rows, columns=[id_col] + _ROW_KEYS).rename(columns={"text": text_col})
    for name, by_id in (extra or {}).items():
        table[name] = table[id_col].map(by_id)
    pos = {k: n for n, k in enumerate(ids)}
    table = table.sort_values(id_col, key=lambda s: s.map(pos)).reset_index(drop=True)
    for col in ("n_words", "attempts") + tuple(c for c in (extra or {}) if c.startswith("n_")):
        table[col] = table[col].astype("int64")
    table["truncated_prompt"] = table["truncated_prompt"].astype(bool)
    for col in (id_col, text_col, "source", "status", "detail", "raw"):
        table[col] = table[col].astype(str)
    return table[list(columns) + ["raw"]]


def step_summary(
    table: pd.DataFrame, text_col: str, *, imported: Mapping[str, str], needed: Sequence[str]
) -> dict[str, Any]:
    usable = table["status"].isin(USABLE_STATUSES)
    generated = table["source"] == "generated"
    words = table.loc[usable & (table["n_words"] > 0), "n_words"]
    return {
        "n": int(len(table)),
        "by_source": {str(k): int(v) for k, v in table["source"].value_counts().items()},
        "by_status": {str(k): int(v) for k, v in table["status"].value_counts().items()},
        "generated_by_status": {str(k): int(v) for k, v in table.loc[generated, "status"].value_counts().items()},
        "n_usable": int(usable.sum()),
        "n_unusable_generated": int((generated & ~usable & (table["status"] != "no_history")).sum()),
        "n_retried": int((table["attempts"] > 1).sum()),
        "n_truncated_prompts": int(table["truncated_prompt"].sum()),
        "words_mean": round(float(words.mean()), 2) if len(words) else 0.0,
        "words_max": int(words.max()) if len(words) else 0,
        "import_coverage": import_coverage(needed, imported) if imported else None,
    }


def _check_plain(budget: int):
    def check(req: GenerationRequest, res: GenerationResult) -> Cleaned:
        return clean_output(
            res.text,
            word_budget=budget,
            prompt_text=prompt_text_of(req),
            hit_length_limit=res.finish_reason == "length",
        )

    return check


def write_table(table: pd.DataFrame, path: Path) -> Path:
    """Write atomically (a crash never leaves a half-written table)."""
    return write_parquet_atomic(table, path)


def read_table(path: Path, columns: Sequence[str], made_by: str) -> pd.DataFrame:
    if not path.exists():
        raise MissingArtifactError(f"{path} is missing: run notebook {made_by} for this run folder first.")
    table = pd.read_parquet(path)
    lacking = [c for c in columns if c not in table.columns]
    if lacking:
        raise ValueError(
            f"{path}: lacks column(s) {lacking}; it was written by another version of {made_by} — rerun it."
        )
    return table


def read_descriptions(path: Path) -> pd.DataFrame:
    return read_table(path, DESCRIPTION_COLUMNS[:5], "02_item_descriptions")


def read_profiles(path: Path) -> pd.DataFrame:
    return read_table(path, PROFILE_COLUMNS[:5], "03_user_profiles")


def render_chat(request: GenerationRequest) -> str:
    """A request's messages as readable text (for notebooks)."""
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in request.messages)
