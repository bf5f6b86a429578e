"""Item descriptions (notebook 02) and user profiles (notebook 03): scope, import of existing
texts, prompt building, generation through the durable cache, post-processing, tables.

Data flow: 01's tables -> :func:`enrichment_scope` (what is needed) -> :func:`load_import`
(texts a user already has, e.g. the ReasoningRec release) -> generate only the rest ->
``paths.item_descriptions`` / ``paths.user_profiles``. Profiles read the descriptions table;
reasoning (rrlib.reasoning) reads both.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from rrlib.llm.base import GenerationRequest, GenerationResult
from rrlib.prompts.postprocess import (USABLE_STATUSES, CheckedOutput, Cleaned, Generator, clean_output,
                                       count_words, degeneracy, generate_checked, prompt_text_of, repetition)
from rrlib.prompts.teacher import ItemFacts, RatedItem, generation_settings, template_for
from rrlib.data.schema import as_list as schema_as_list, eval_subset, kshot

DESCRIPTION_COLUMNS = ["item_id", "description", "source", "status", "n_words", "detail", "attempts",
                       "truncated_prompt"]
PROFILE_COLUMNS = ["user_id", "profile", "source", "status", "n_words", "detail", "attempts",
                   "truncated_prompt", "n_profile_items"]
NO_DESCRIPTION = "(no description available)"


# ---------------------------------------------------------------------------------------
# Scope
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """The items and users that need text, and the examples that make them needed."""
    item_ids: list[str]
    user_ids: list[str]
    examples: pd.DataFrame
    mode: str

    def summary(self) -> dict[str, Any]:
        counts = self.examples["split"].value_counts().to_dict() if len(self.examples) else {}
        return {"mode": self.mode, "n_items": len(self.item_ids), "n_users": len(self.user_ids),
                "examples_by_split": {str(k): int(v) for k, v in counts.items()}}


def scoped_examples(examples: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """The K-shot training examples for max(KSHOT_SIZES) and the valid/test subsamples."""
    sizes = params["KSHOT_SIZES"]
    if not sizes:
        raise ValueError("KSHOT_SIZES is empty: give at least one training-set size.")
    parts = [kshot(examples, max(sizes)), eval_subset(examples, "valid", params["N_VALID"]),
             eval_subset(examples, "test", params["N_TEST"])]
    return pd.concat(parts, ignore_index=True)


def enrichment_scope(items: pd.DataFrame, users: pd.DataFrame, examples: pd.DataFrame,
                     params: Mapping[str, Any]) -> Scope:
    """ENRICH_SCOPE 'needed': the users of the scoped examples and every item they touch (targets,
    histories, profile items); 'all': every item and user of the tables."""
    mode = params["ENRICH_SCOPE"]
    if mode == "all":
        return Scope(sorted(map(str, items["item_id"])), sorted(map(str, users["user_id"])), examples, mode)
    if mode != "needed":
        raise ValueError(f"ENRICH_SCOPE={mode!r} is not 'needed' or 'all'.")
    ex = scoped_examples(examples, params)
    user_ids = sorted(set(map(str, ex["user_id"])))
    needed: set[str] = set(map(str, ex["target_item_id"]))
    for hist in ex["history_item_ids"]:
        needed.update(map(str, as_list(hist)))
    profiled = users[users["user_id"].astype(str).isin(user_ids)]
    for ids in profiled["profile_item_ids"]:
        needed.update(map(str, as_list(ids)))
    unknown = needed - set(map(str, items["item_id"]))
    if unknown:
        raise ValueError(f"examples/users tables name {len(unknown)} item(s) absent from the items table "
                         f"(e.g. {sorted(unknown)[:3]}); the run folder's data tables are inconsistent — "
                         f"rerun 01_data_prep.")
    return Scope(sorted(needed), user_ids, ex, mode)


as_list = schema_as_list  # re-exported: reasoning.py and notebooks import it from here


# ---------------------------------------------------------------------------------------
# Import of existing descriptions / profiles
# ---------------------------------------------------------------------------------------
ID_ALIASES = {"item": ("item_id", "movie_id", "asin", "parent_asin", "id"),
              "user": ("user_id", "reviewer_id", "reviewerID", "id")}
TEXT_ALIASES = {"item": ("description", "summary", "text"),
                "user": ("profile", "summary", "text", "description")}


#: ``release:<name>`` values of DESCRIPTIONS_IMPORT / PROFILES_IMPORT -> rrlib.data.release_files() key
RELEASE_IMPORTS = {"ml1m_summaries": "ml1m_summaries", "beauty_descriptions": "items",
                   "beauty_profiles": "profiles"}


def resolve_import(value: str) -> Path:
    """The file named by DESCRIPTIONS_IMPORT / PROFILES_IMPORT: ``release:<name>`` for a file of
    the shipped ReasoningRec release (``release:ml1m_summaries``: 25-word ML-1M movie summaries,
    keyed by MovieLens id, so they also cover ml-latest-small; ``release:beauty_descriptions``,
    ``release:beauty_profiles``), else a path (relative ones from the project root)."""
    from rrlib.artifacts import resolve_path
    from rrlib.data import release_files

    value = str(value)
    if not value.startswith("release:"):
        return resolve_path(value)
    name = value.split(":", 1)[1]
    files = release_files()
    if name not in RELEASE_IMPORTS or RELEASE_IMPORTS[name] not in files:
        raise FileNotFoundError(f"{value!r}: no such file in the shipped ReasoningRec release; known: "
                                f"{['release:' + k for k, v in RELEASE_IMPORTS.items() if v in files]}.")
    return files[RELEASE_IMPORTS[name]]


def import_fallbacks(needed_ids: Iterable[str], imported: Mapping[str, str], titles: Mapping[str, str] | None = None,
                     show: int = 20) -> dict[str, Any]:
    """The needed ids the import file lacks (the teacher writes those): how many, and the first
    ``show`` of them (sorted) with their titles."""
    missing = sorted(set(needed_ids) - set(imported), key=lambda s: (len(s), s))
    titles = titles or {}
    return {"n": len(missing), "first": [{"id": i, "title": titles.get(i, "")} for i in missing[:show]]}


def load_import(path: str | Path, kind: str) -> dict[str, str]:
    """Existing texts keyed by id. ``kind`` is 'item' (descriptions) or 'user' (profiles).

    Accepted files:
    * JSON object ``{id: text}``, or ``{id: {..., "description": text}}`` (the ReasoningRec
      release's processed_item_information.json; user_profile_summary.json is ``{id: text}``);
    * JSON list of records with an id and a text field;
    * CSV with an id column (item_id/movie_id/asin/id or user_id/id) and a text column
      (description/summary/text or profile/summary/text).
    Texts are whitespace-normalised; blank ones are left out (and so generated)."""
    if kind not in ID_ALIASES:
        raise ValueError(f"kind must be 'item' or 'user', got {kind!r}")
    param = "DESCRIPTIONS_IMPORT" if kind == "item" else "PROFILES_IMPORT"
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{param}={str(path)!r} is not a file. Give a JSON {{id: text}} or a CSV with "
                                f"id and text columns, or '' to generate everything.")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {e.lineno}, column {e.colno}: not valid JSON ({e.msg}).") from e
        out = _from_json(data, path, kind)
    elif path.suffix.lower() in (".csv", ".tsv"):
        out = _from_csv(path, kind)
    else:
        raise ValueError(f"{param}={str(path)!r}: unsupported file type {path.suffix!r}; use .json or .csv.")
    return {k: v for k, v in out.items() if v}


def _text(value: Any, where: str) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a text, got {type(value).__name__} {str(value)[:60]!r}.")
    text = re.sub(r"\s+", " ", value).strip()
    if len(text) > 1 and text[0] == text[-1] == '"' and '"' not in text[1:-1]:
        text = text[1:-1].strip()  # the whole text in quotes (e.g. release summaries)
    return text


def _from_json(data: Any, path: Path, kind: str) -> dict[str, str]:
    out = {}
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, dict):
                field_ = next((f for f in TEXT_ALIASES[kind] if f in value), None)
                if field_ is None:
                    raise ValueError(f"{path}: entry {key!r} has fields {list(value)[:8]} but none of "
                                     f"{list(TEXT_ALIASES[kind])}.")
                value = value[field_]
            out[str(key)] = _text(value, f"{path}: entry {key!r}")
        return out
    if isinstance(data, list):
        for n, rec in enumerate(data):
            if not isinstance(rec, dict):
                raise ValueError(f"{path}: record {n} is {type(rec).__name__}, expected an object.")
            id_f = next((f for f in ID_ALIASES[kind] if f in rec), None)
            text_f = next((f for f in TEXT_ALIASES[kind] if f in rec), None)
            if id_f is None or text_f is None:
                raise ValueError(f"{path}: record {n} needs an id field ({list(ID_ALIASES[kind])}) and a text "
                                 f"field ({list(TEXT_ALIASES[kind])}); it has {list(rec)}.")
            out[str(rec[id_f])] = _text(rec[text_f], f"{path}: record {n}")
        return out
    raise ValueError(f"{path}: expected a JSON object {{id: text}} or a list of records, got "
                     f"{type(data).__name__}.")


def _from_csv(path: Path, kind: str) -> dict[str, str]:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if path.suffix == ".tsv" else ",")
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot be read as CSV: {e}") from e
    id_c = next((c for c in ID_ALIASES[kind] if c in df.columns), None)
    text_c = next((c for c in TEXT_ALIASES[kind] if c in df.columns), None)
    if id_c is None or text_c is None:
        raise ValueError(f"{path}: needs an id column (one of {list(ID_ALIASES[kind])}) and a text column (one "
                         f"of {list(TEXT_ALIASES[kind])}); it has {list(df.columns)}.")
    dup = df[id_c].duplicated()
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise ValueError(f"{path}, line {i + 2}: {id_c} {df[id_c].iloc[i]!r} appears twice; keep one text per id.")
    return {str(k).strip(): _text(v, f"{path}, line {n + 2}")
            for n, (k, v) in enumerate(zip(df[id_c], df[text_c]))}


def import_coverage(needed_ids: Iterable[str], imported: Mapping[str, str]) -> dict[str, Any]:
    needed = set(needed_ids)
    covered = needed & set(imported)
    return {"needed": len(needed), "covered": len(covered), "missing": len(needed - covered),
            "coverage": round(len(covered) / len(needed), 4) if needed else 1.0,
            "unused_in_file": len(set(imported) - needed)}


def imported_status(text: str) -> Cleaned:
    """Quality flags of an imported text; the text itself is kept as given (not trimmed)."""
    n = count_words(text)
    if not n:
        return Cleaned("", "empty", 0, "imported text is blank")
    why = degeneracy(text, "", min_words=3) or repetition(text)
    status = "ok" if not why else ("repetitive" if "repeat" in why else "degenerate")
    return Cleaned(text, status, n, why)


# ---------------------------------------------------------------------------------------
# Item descriptions
# ---------------------------------------------------------------------------------------
def item_facts(row: Mapping[str, Any], plot: str = "") -> ItemFacts:
    reviews = tuple((float(r["rating"]), str(r["text"])) for r in as_list(row.get("sampled_reviews")))
    return ItemFacts(item_id=str(row["item_id"]), title=str(row["title"]), attributes=str(row["attributes"] or ""),
                     metadata_description=str(row["metadata_description"] or ""), reviews=reviews, plot=plot)


def description_request(row: Mapping[str, Any], *, domain: str, params: Mapping[str, Any], plot: str = ""
                        ) -> GenerationRequest:
    template = template_for("item_description")
    settings = generation_settings("item_description", params["GENERATION_MODE"], params["SEED"],
                                   words=params["DESCRIPTION_WORDS"],
                                   repetition_penalty=params["TEACHER_REPETITION_PENALTY"])
    return template.request(domain, settings, tag=str(row["item_id"]), item=item_facts(row, plot),
                            n_words=params["DESCRIPTION_WORDS"])


def _check_plain(budget: int):
    def check(req: GenerationRequest, res: GenerationResult) -> Cleaned:
        return clean_output(res.text, word_budget=budget, prompt_text=prompt_text_of(req),
                            hit_length_limit=res.finish_reason == "length")
    return check


@dataclass
class StepOutput:
    """A generation step's table, the requests it sent (by id, for showing prompts) and a summary."""
    table: pd.DataFrame
    requests: dict[str, GenerationRequest] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def generate_descriptions(items: pd.DataFrame, item_ids: Sequence[str], *, domain: str,
                          params: Mapping[str, Any], generator: Generator,
                          imported: Mapping[str, str] | None = None,
                          plots: Mapping[str, str] | None = None) -> StepOutput:
    """Descriptions of ``item_ids``: imported where ``imported`` has one, generated otherwise."""
    imported = imported or {}
    plots = plots or {}
    by_id = items.assign(item_id=items["item_id"].astype(str)).set_index("item_id", drop=False)
    missing = [i for i in item_ids if i not in by_id.index]
    if missing:
        raise ValueError(f"{len(missing)} item id(s) are not in the items table, e.g. {missing[:3]}.")
    rows = [_imported_row("item_id", i, imported[i]) for i in item_ids if i in imported]
    todo = [i for i in item_ids if i not in imported]
    requests = {i: description_request(by_id.loc[i].to_dict(), domain=domain, params=params,
                                       plot=plots.get(i, "")) for i in todo}
    outs = generate_checked(generator, list(requests.values()), _check_plain(params["DESCRIPTION_WORDS"]),
                            params["MAX_OUTPUT_RETRIES"], desc="item descriptions")
    rows += [_generated_row("item_id", i, o) for i, o in zip(todo, outs)]
    table = _table(rows, "item_id", "description", item_ids, DESCRIPTION_COLUMNS)
    summary = step_summary(table, "description", imported=imported, needed=item_ids)
    summary["n_with_plot"] = sum(1 for i in item_ids if plots.get(i))
    return StepOutput(table, requests, summary)


def _imported_row(id_col: str, key: str, text: str) -> dict:
    c = imported_status(text)
    return {id_col: key, "text": c.text, "source": "imported", "status": c.status, "n_words": c.n_words,
            "detail": c.detail, "attempts": 0, "truncated_prompt": False, "raw": text}


def _generated_row(id_col: str, key: str, o: CheckedOutput) -> dict:
    return {id_col: key, "text": o.text, "source": "generated", "status": o.status, "n_words": o.n_words,
            "detail": o.detail, "attempts": o.attempts, "truncated_prompt": o.truncated_prompt, "raw": o.raw}


_ROW_KEYS = ["text", "source", "status", "n_words", "detail", "attempts", "truncated_prompt", "raw"]


def _table(rows: list[dict], id_col: str, text_col: str, ids: Sequence[str], columns: Sequence[str],
           extra: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
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


def step_summary(table: pd.DataFrame, text_col: str, *, imported: Mapping[str, str], needed: Sequence[str]
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


# ---------------------------------------------------------------------------------------
# Item texts shared by profiles and reasoning
# ---------------------------------------------------------------------------------------
class ItemTexts:
    """Title and description of every item, for the profile and reasoning prompts. An item
    without a usable description falls back to its metadata (attributes), else a marker."""

    def __init__(self, items: pd.DataFrame, descriptions: pd.DataFrame | None):
        ids = items["item_id"].astype(str)
        self.titles = dict(zip(ids, items["title"].astype(str)))
        self.attributes = dict(zip(ids, items["attributes"].astype(str)))
        self.descriptions: dict[str, str] = {}
        if descriptions is not None and len(descriptions):
            ok = descriptions[descriptions["status"].isin(USABLE_STATUSES)]
            self.descriptions = dict(zip(ok["item_id"].astype(str), ok["description"].astype(str)))
        self.fallbacks: set[str] = set()

    def title(self, item_id: str) -> str:
        return self.titles.get(item_id, f"item {item_id}")

    def description(self, item_id: str) -> str:
        text = self.descriptions.get(item_id)
        if text:
            return text
        self.fallbacks.add(item_id)
        attrs = self.attributes.get(item_id, "")
        return attrs if attrs.strip() else NO_DESCRIPTION

    def rated(self, item_id: str, liked: bool) -> RatedItem:
        return RatedItem(title=self.title(item_id), description=self.description(item_id), liked=bool(liked))


# ---------------------------------------------------------------------------------------
# User profiles
# ---------------------------------------------------------------------------------------
def profile_request(user_row: Mapping[str, Any], texts: ItemTexts, *, domain: str, params: Mapping[str, Any]
                    ) -> GenerationRequest:
    items = [texts.rated(str(i), bool(l)) for i, l in zip(as_list(user_row["profile_item_ids"]),
                                                           as_list(user_row["profile_liked"]))]
    template = template_for("user_profile")
    settings = generation_settings("user_profile", params["GENERATION_MODE"], params["SEED"],
                                   words=params["PROFILE_WORDS"],
                                   repetition_penalty=params["TEACHER_REPETITION_PENALTY"])
    return template.request(domain, settings, tag=str(user_row["user_id"]), items=items,
                            q_words=params["PROFILE_WORDS"])


def generate_profiles(users: pd.DataFrame, user_ids: Sequence[str], texts: ItemTexts, *, domain: str,
                      params: Mapping[str, Any], generator: Generator,
                      imported: Mapping[str, str] | None = None) -> StepOutput:
    """Profiles of ``user_ids``: imported where available; '' with status 'no_history' for a
    user without profile items; generated otherwise."""
    imported = imported or {}
    by_id = users.assign(user_id=users["user_id"].astype(str)).set_index("user_id", drop=False)
    missing = [u for u in user_ids if u not in by_id.index]
    if missing:
        raise ValueError(f"{len(missing)} user id(s) are not in the users table, e.g. {missing[:3]}.")
    n_items = {u: len(as_list(by_id.loc[u, "profile_item_ids"])) for u in user_ids}
    rows = [_imported_row("user_id", u, imported[u]) for u in user_ids if u in imported]
    empty = [u for u in user_ids if u not in imported and n_items[u] == 0]
    rows += [{"user_id": u, "text": "", "source": "no_history", "status": "no_history", "n_words": 0,
              "detail": "no interactions before the history window", "attempts": 0, "truncated_prompt": False,
              "raw": ""} for u in empty]
    todo = [u for u in user_ids if u not in imported and n_items[u] > 0]
    requests = {u: profile_request(by_id.loc[u].to_dict(), texts, domain=domain, params=params) for u in todo}
    outs = generate_checked(generator, list(requests.values()), _check_plain(params["PROFILE_WORDS"]),
                            params["MAX_OUTPUT_RETRIES"], desc="user profiles")
    rows += [_generated_row("user_id", u, o) for u, o in zip(todo, outs)]
    table = _table(rows, "user_id", "profile", user_ids, PROFILE_COLUMNS, extra={"n_profile_items": n_items})
    summary = step_summary(table, "profile", imported=imported, needed=user_ids)
    summary["n_no_history"] = len(empty)
    return StepOutput(table, requests, summary)


# ---------------------------------------------------------------------------------------
# Tables on disk
# ---------------------------------------------------------------------------------------
def write_table(table: pd.DataFrame, path: Path) -> Path:
    """Write atomically (a crash never leaves a half-written table)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def read_table(path: Path, columns: Sequence[str], made_by: str) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run notebook {made_by} for this run folder first.")
    table = pd.read_parquet(path)
    lacking = [c for c in columns if c not in table.columns]
    if lacking:
        raise ValueError(f"{path}: lacks column(s) {lacking}; it was written by another version of {made_by} — "
                         f"rerun it.")
    return table


def read_descriptions(path: Path) -> pd.DataFrame:
    return read_table(path, DESCRIPTION_COLUMNS[:5], "02_item_descriptions")


def read_profiles(path: Path) -> pd.DataFrame:
    return read_table(path, PROFILE_COLUMNS[:5], "03_user_profiles")


def render_chat(request: GenerationRequest) -> str:
    """A request's messages as readable text (for notebooks)."""
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in request.messages)
