"""File helpers every module shares: hashing, atomic writes and crash-safe JSONL logs.

* Atomic writes go to a temporary sibling and are renamed into place with ``os.replace``, so a
  crash never leaves a half-written file where a complete one is expected.
* :class:`JsonlLog` is an append-only JSON-lines file. Each record is ONE ``write`` of a whole
  line on a file opened with ``O_APPEND``, followed by ``fsync``, so a kill loses at most the
  record being written. A torn last line (a crash mid-write) is reported and skipped on load,
  and the next append starts on a fresh line, never glued onto the torn one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rrlib.errors import CorruptFileError

_BLOCK = 1 << 20


def sha256_file(path: str | Path, memo_dir: str | Path | None = None) -> str:
    """SHA-256 of a file. With ``memo_dir`` the digest is remembered in ``memo_dir/hashes.json``
    keyed by path, size and mtime, so a large model file is hashed once, not at every start."""
    path = Path(path).resolve()
    memo_file = Path(memo_dir) / "hashes.json" if memo_dir is not None else None
    memo: dict[str, str] = {}
    memo_key = ""
    if memo_file is not None:
        st = path.stat()
        memo_key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
        if memo_file.is_file():
            try:
                memo = json.loads(memo_file.read_text())
            except (OSError, json.JSONDecodeError):
                memo = {}  # a damaged memo only costs a rehash
            if memo_key in memo:
                return memo[memo_key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    sha = digest.hexdigest()
    if memo_file is not None:
        memo[memo_key] = sha
        write_json_atomic(memo_file, memo, indent=1, sort_keys=True)
    return sha


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stable_hash(obj: Any, length: int | None = None) -> str:
    """SHA-256 of a JSON-serialisable object with sorted keys (the same on every machine)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    digest = sha256_text(blob)
    return digest[:length] if length else digest


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically, on an
    exception it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | Path, payload: Any, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """JSON (``default=str`` for paths and timestamps) written atomically."""
    text = json.dumps(payload, indent=indent, default=str, ensure_ascii=False, sort_keys=sort_keys)
    return write_text_atomic(path, text)


def write_parquet_atomic(df, path: str | Path) -> Path:
    """A pandas DataFrame as Parquet (no index), written atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def read_json(path: str | Path, what: str = "") -> Any:
    """JSON from ``path``; a damaged file is an error that names it (``what`` says what it is)."""

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CorruptFileError(
            f"{path}{f' ({what})' if what else ''} is not valid JSON ({e}); move it aside "
            f"and rerun the step that writes it."
        ) from e


def read_json_or_none(path: str | Path) -> Any:
    """JSON from ``path``, or None when it is missing or unreadable (for optional state files)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


class JsonlWarning(UserWarning):
    """Damaged lines were found (and skipped) in a JSON-lines log."""


@dataclass
class JsonlLoad:
    """What :meth:`JsonlLog.load` found."""

    records: list[dict] = field(default_factory=list)
    lines: int = 0
    corrupt: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    #: bytes read up to and including the last newline (where a reader of later appends starts)
    complete_bytes: int = 0


class JsonlLog:
    """An append-only, crash-safe JSON-lines file (see the module docstring).

    ``required`` names the fields every record must have; a line without them counts as
    damaged. Loading never raises on damage: it warns (:class:`JsonlWarning`) and skips."""

    def __init__(self, path: str | Path, required: Sequence[str] = ()):
        self.path = Path(path)
        self.required = tuple(required)
        self._needs_newline = False

    def load(self, warn: bool = True) -> JsonlLoad:
        out = JsonlLoad()
        self._needs_newline = False
        if not self.path.is_file():
            return out
        data = self.path.read_bytes()
        self._needs_newline = bool(data) and not data.endswith(b"\n")
        out.complete_bytes = data.rfind(b"\n") + 1
        raw_lines = data.split(b"\n")
        if raw_lines and raw_lines[-1] == b"":
            raw_lines.pop()
        for n, raw in enumerate(raw_lines, start=1):
            if not raw.strip():
                continue
            out.lines += 1
            try:
                rec = json.loads(raw.decode("utf-8"))
                if not isinstance(rec, dict):
                    raise TypeError("not an object")
                for name in self.required:
                    rec[name]  # noqa: B018 - must exist
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
                last = n == len(raw_lines)
                out.corrupt.append(
                    (n, ("truncated last record" if last else "unreadable record") + f" ({type(e).__name__})")
                )
                continue
            out.records.append(rec)
        if out.corrupt and warn:
            where = ", ".join(f"line {n}: {why}" for n, why in out.corrupt[:5])
            warnings.warn(
                f"{self.path}: skipped {len(out.corrupt)} damaged record(s) ({where}); they will be "
                f"recomputed. Usually a run was killed while writing.",
                JsonlWarning,
                stacklevel=3,
            )
        return out

    def append(self, records: Sequence[dict]) -> None:
        """Write records durably: one ``write`` per record, then one ``fsync``."""
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._needs_newline and self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as f:  # another process may have torn the last line
                f.seek(-1, os.SEEK_END)
                self._needs_newline = f.read(1) != b"\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if self._needs_newline:
                os.write(fd, b"\n")  # never glue a record onto a torn line
                self._needs_newline = False
            for rec in records:
                line = json.dumps(rec, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
                os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


__all__ = [
    "JsonlLoad",
    "JsonlLog",
    "JsonlWarning",
    "atomic_path",
    "read_json",
    "read_json_or_none",
    "sha256_file",
    "sha256_text",
    "stable_hash",
    "write_json_atomic",
    "write_parquet_atomic",
    "write_text_atomic",
]
