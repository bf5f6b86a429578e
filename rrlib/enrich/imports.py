"""Import of existing descriptions and profiles (e.g. the ReasoningRec release's Mixtral texts),
so that only what is missing is generated."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from rrlib.config.paths import resolve_path
from rrlib.data import release_files
from rrlib.prompts.postprocess import Cleaned, count_words, degeneracy, repetition

ID_ALIASES = {
    "item": ("item_id", "movie_id", "asin", "parent_asin", "id"),
    "user": ("user_id", "reviewer_id", "reviewerID", "id"),
}


TEXT_ALIASES = {"item": ("description", "summary", "text"), "user": ("profile", "summary", "text", "description")}


#: ``release:<name>`` values of DESCRIPTIONS_IMPORT / PROFILES_IMPORT -> rrlib.data.release_files() key
RELEASE_IMPORTS = {"ml1m_summaries": "ml1m_summaries", "beauty_descriptions": "items", "beauty_profiles": "profiles"}


def resolve_import(value: str) -> Path:
    """The file named by DESCRIPTIONS_IMPORT / PROFILES_IMPORT: ``release:<name>`` for a file of
    the shipped ReasoningRec release (``release:ml1m_summaries``: 25-word ML-1M movie summaries,
    keyed by MovieLens id, so they also cover ml-latest-small; ``release:beauty_descriptions``,
    ``release:beauty_profiles``), else a path (relative ones from the project root)."""

    value = str(value)
    if not value.startswith("release:"):
        return resolve_path(value)
    name = value.split(":", 1)[1]
    files = release_files()
    if name not in RELEASE_IMPORTS or RELEASE_IMPORTS[name] not in files:
        raise FileNotFoundError(
            f"{value!r}: no such file in the shipped ReasoningRec release; known: "
            f"{['release:' + k for k, v in RELEASE_IMPORTS.items() if v in files]}."
        )
    return files[RELEASE_IMPORTS[name]]


def import_fallbacks(
    needed_ids: Iterable[str], imported: Mapping[str, str], titles: Mapping[str, str] | None = None, show: int = 20
) -> dict[str, Any]:
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
        raise FileNotFoundError(
            f"{param}={str(path)!r} is not a file. Give a JSON {{id: text}} or a CSV with "
            f"id and text columns, or '' to generate everything."
        )
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
                    raise ValueError(
                        f"{path}: entry {key!r} has fields {list(value)[:8]} but none of {list(TEXT_ALIASES[kind])}."
                    )
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
                raise ValueError(
                    f"{path}: record {n} needs an id field ({list(ID_ALIASES[kind])}) and a text "
                    f"field ({list(TEXT_ALIASES[kind])}); it has {list(rec)}."
                )
            out[str(rec[id_f])] = _text(rec[text_f], f"{path}: record {n}")
        return out
    raise ValueError(f"{path}: expected a JSON object {{id: text}} or a list of records, got {type(data).__name__}.")


def _from_csv(path: Path, kind: str) -> dict[str, str]:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if path.suffix == ".tsv" else ",")
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot be read as CSV: {e}") from e
    id_c = next((c for c in ID_ALIASES[kind] if c in df.columns), None)
    text_c = next((c for c in TEXT_ALIASES[kind] if c in df.columns), None)
    if id_c is None or text_c is None:
        raise ValueError(
            f"{path}: needs an id column (one of {list(ID_ALIASES[kind])}) and a text column (one "
            f"of {list(TEXT_ALIASES[kind])}); it has {list(df.columns)}."
        )
    dup = df[id_c].duplicated()
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise ValueError(f"{path}, line {i + 2}: {id_c} {df[id_c].iloc[i]!r} appears twice; keep one text per id.")
    return {str(k).strip(): _text(v, f"{path}, line {n + 2}") for n, (k, v) in enumerate(zip(df[id_c], df[text_c]))}


def import_coverage(needed_ids: Iterable[str], imported: Mapping[str, str]) -> dict[str, Any]:
    needed = set(needed_ids)
    covered = needed & set(imported)
    return {
        "needed": len(needed),
        "covered": len(covered),
        "missing": len(needed - covered),
        "coverage": round(len(covered) / len(needed), 4) if needed else 1.0,
        "unused_in_file": len(set(imported) - needed),
    }


def imported_status(text: str) -> Cleaned:
    """Quality flags of an imported text; the text itself is kept as given (not trimmed)."""
    n = count_words(text)
    if not n:
        return Cleaned("", "empty", 0, "imported text is blank")
    why = degeneracy(text, "", min_words=3) or repetition(text)
    status = "ok" if not why else ("repetitive" if "repeat" in why else "degenerate")
    return Cleaned(text, status, n, why)
