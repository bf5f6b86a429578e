"""Which trainer checkpoint a resumed finetune starts from (step 06).

A run killed while the trainer writes ``checkpoint-N`` leaves that folder half written: a
truncated ``adapter_model.safetensors``, no ``trainer_state.json``. Resuming from it fails deep
inside the trainer (``SafetensorError: ... incomplete metadata``) with no path and no advice, so
:func:`newest_complete_checkpoint` returns the newest checkpoint that is *complete*:

* ``trainer_state.json`` is present and parses as a JSON object;
* the adapter weights are present and readable: ``adapter_model.safetensors`` whose header
  parses and whose tensors lie within the file (the bytes the header promises are there), or,
  from older PEFT versions, an ``adapter_model.bin`` that opens as a complete torch zip;
* ``adapter_config.json`` parses, and the optimizer, scheduler, scaler and RNG states that are
  present (``optimizer.pt``, ...) open as complete torch zips (the trainer loads each one it
  finds).

Each newer, incomplete checkpoint is moved aside (renamed ``incomplete-checkpoint-N-<UTC time>``
in the same folder, so it is kept for inspection, is no longer taken for a checkpoint, and does
not collide with the ``checkpoint-N`` the resumed trainer writes again) and named in the log with
what is missing. Older incomplete checkpoints are left alone: they are never resumed from.

Only file headers are read (no tensor is loaded), so the check costs milliseconds.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import struct
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
#: trainer files loaded on resume when present (torch.save zips)
TORCH_STATES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth")
#: a safetensors header larger than this is taken as damage (real ones are a few kB to a few MB)
MAX_HEADER_BYTES = 100 * 1024 * 1024


def checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``checkpoint-N`` folder, newest (highest step) first."""
    if not Path(ckpt_dir).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(ckpt_dir).iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    return sorted(found, reverse=True)


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete safetensors file (None: its header parses and every tensor's
    bytes are in the file)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{path.name} is {len(head)} bytes long, shorter than a safetensors header"
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                return f"{path.name}: header length {n:,} is not plausible"
            raw = f.read(n)
            size = path.stat().st_size
    except OSError as e:
        return f"{path.name} cannot be read ({e.strerror or e})"
    if len(raw) < n:
        return f"{path.name} is truncated inside its header ({size:,} bytes, the header needs {8 + n:,})"
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return f"{path.name}: its header is not valid JSON"
    if not isinstance(header, dict):
        return f"{path.name}: its header is not a JSON object"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            return f"{path.name}: tensor {name!r} has no valid data_offsets"
        end = max(end, offsets[1])
    if 8 + n + end > size:
        return f"{path.name} is truncated ({size:,} bytes, its header describes {8 + n + end:,})"
    return None


def _zip_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as z:
            z.infolist()
    except (OSError, zipfile.BadZipFile) as e:
        return f"{path.name} is not a complete torch file ({e})"
    return None


def _json_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"no {path.name}"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return f"{path.name} does not parse (truncated?)"
    return None if isinstance(value, dict) else f"{path.name} is not a JSON object"


def checkpoint_problems(folder: Path) -> list[str]:
    """What makes ``folder`` unusable for resuming ([] when it is complete)."""
    folder = Path(folder)
    out = [p for p in (_json_problem(folder / TRAINER_STATE), _json_problem(folder / ADAPTER_CONFIG)) if p]
    weights = next((folder / w for w in ADAPTER_WEIGHTS if (folder / w).is_file()), None)
    if weights is None:
        out.append(f"no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
    else:
        problem = safetensors_problem(weights) if weights.suffix == ".safetensors" else _zip_problem(weights)
        if problem:
            out.append(problem)
    out += [p for name in TORCH_STATES if (folder / name).is_file() and (p := _zip_problem(folder / name))]
    return out


def move_aside(folder: Path, step: int) -> Path | None:
    """Rename ``folder`` to ``incomplete-checkpoint-<step>-<UTC time>``; None when another process
    (another rank of the same run) moved it first."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = folder.with_name(f"incomplete-checkpoint-{step}-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"incomplete-checkpoint-{step}-{stamp}-{n}")
    try:
        folder.rename(target)
    except FileNotFoundError:
        return None
    return target


def newest_complete_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` in ``ckpt_dir`` (module docstring), or None when
    there is none (or no folder). Newer incomplete ones are moved aside and logged by name."""
    for step, folder in checkpoints(Path(ckpt_dir)):
        problems = checkpoint_problems(folder)
        if not problems:
            return folder
        moved = move_aside(folder, step)
        log.warning(
            "checkpoint %s is incomplete (%s), probably written when the run was killed: moved aside to %s; "
            "resuming from an older complete checkpoint, or from the start when none is left.",
            folder,
            "; ".join(problems),
            moved.name if moved is not None else "(already moved by another process)",
        )
    return None


__all__ = ["checkpoint_problems", "checkpoints", "newest_complete_checkpoint", "safetensors_problem"]
