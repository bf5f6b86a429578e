"""Live progress of a batch of generations: it advances as each completion arrives, shows the
elapsed time and the rate, and keeps moving while nothing completes (a heartbeat redraws it every
second), so a bar never sits frozen at 0 while the model works.

* In a notebook kernel it is one output line updated in place through the Jupyter display
  protocol (``update_display_data``), which every front end renders without a widget extension;
  the saved notebook keeps its last state (``120/120 in 3:34, 0.56/s``), which reads well as
  static output.
* Elsewhere (a terminal, a script) it is a plain tqdm bar on stderr.
* When ``RRLIB_PROGRESS_FILE`` names a file (the runner sets it for its notebooks), the state is
  also written there as JSON at each change and heartbeat, and the runner prints it on its console.

:class:`Progress` takes the subset of tqdm's arguments the workbook uses (``total``, ``initial``,
``desc``, ``unit``, ``disable``), so it replaces ``tqdm(...)`` in place.
"""

from __future__ import annotations

import html
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

PROGRESS_FILE_ENV = "RRLIB_PROGRESS_FILE"


def in_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill, nbclient), not in a terminal IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """``with Progress(total=120, initial=40, desc="item descriptions") as bar: ... bar.update(1)``

    ``initial`` counts what was already done (cached results): the rate is the new work only."""

    def __init__(
        self,
        total: int = 0,
        *,
        initial: int = 0,
        desc: str = "",
        unit: str = "gen",
        disable: bool = False,
        interval: float = 1.0,
        min_redraw: float = 0.25,
    ):
        self.total = int(total)
        self.n = int(initial)
        self.initial = int(initial)
        self.desc = desc
        self.unit = unit
        self.disable = disable
        self.interval = float(interval)
        self.min_redraw = float(min_redraw)
        self.start = time.monotonic()
        self.closed = False
        self._lock = threading.RLock()
        self._last_draw = 0.0
        self._handle: Any = None
        self._tqdm: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        path = os.environ.get(PROGRESS_FILE_ENV, "").strip()
        self._file = Path(path) if path and not disable else None
        if disable:
            return
        if in_kernel():
            from IPython.display import display

            self._handle = display(self._bundle(), raw=True, display_id=True)
        else:
            from tqdm.auto import tqdm

            self._tqdm = tqdm(total=self.total, initial=self.n, desc=desc, unit=unit)
        self._write_file()
        self._thread = threading.Thread(target=self._beat, name="rrlib-progress", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ state
    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def rate(self) -> float | None:
        done = self.n - self.initial
        return done / self.elapsed if done > 0 and self.elapsed > 0 else None

    def state(self) -> dict[str, Any]:
        rate = self.rate
        left = (self.total - self.n) / rate if rate and self.total >= self.n else None
        return {
            "desc": self.desc,
            "n": self.n,
            "total": self.total,
            "initial": self.initial,
            "unit": self.unit,
            "elapsed_s": round(self.elapsed, 1),
            "rate_per_s": round(rate, 4) if rate else None,
            "left_s": round(left, 1) if left is not None else None,
            "done": self.closed,
            "pid": os.getpid(),
            "updated": time.time(),
        }

    def text(self) -> str:
        """``item descriptions: 45/120 (38%) | 1:20 elapsed | 0.56 gen/s | ~2:14 left``"""
        s = self.state()
        parts = [f"{s['desc'] or 'generate'}: {s['n']}/{s['total']}"]
        if s["total"]:
            parts[0] += f" ({s['n'] / s['total']:.0%})"
        if self.closed:
            parts.append(f"done in {format_seconds(s['elapsed_s'])}")
        else:
            parts.append(f"{format_seconds(s['elapsed_s'])} elapsed")
        if s["rate_per_s"]:
            parts.append(f"{s['rate_per_s']:.2f} {self.unit}/s")
        elif not self.closed:
            parts.append(f"waiting for the first {self.unit}")
        if s["left_s"] is not None and not self.closed:
            parts.append(f"~{format_seconds(s['left_s'])} left")
        if self.initial:
            parts.append(f"{self.initial} cached")
        return " | ".join(parts)

    def _bundle(self) -> dict[str, str]:
        value = f' value="{self.n}"' if self.total else ""
        return {
            "text/plain": self.text(),
            "text/html": f'<div><progress{value} max="{max(self.total, 1)}" style="width: 14em; '
            f'vertical-align: middle"></progress> <code>{html.escape(self.text())}</code></div>',
        }

    # ------------------------------------------------------------------ tqdm's API
    def update(self, k: int = 1) -> None:
        with self._lock:
            self.n += int(k)
            if self._tqdm is not None:
                self._tqdm.update(k)
            if time.monotonic() - self._last_draw >= self.min_redraw or (self.total and self.n >= self.total):
                self._draw()

    def refresh(self) -> None:
        with self._lock:
            if self._tqdm is not None:
                self._tqdm.total = self.total
                self._tqdm.refresh()
            self._draw()

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        with self._lock:
            if self._tqdm is not None:
                self._tqdm.close()
            self._draw()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ drawing
    def _draw(self) -> None:
        if self.disable:
            return
        self._last_draw = time.monotonic()
        if self._handle is not None:
            try:
                self._handle.update(self._bundle(), raw=True)
            except Exception:  # a closed kernel channel must never break the generation
                self._handle = None
        self._write_file()

    def _write_file(self) -> None:
        if self._file is None:
            return
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._file.with_name(f".{self._file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.state()))
            os.replace(tmp, self._file)
        except OSError:
            self._file = None

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                if self.closed:
                    return
                if self._tqdm is not None:
                    self._tqdm.refresh()  # tqdm redraws its elapsed time only when asked
                self._draw()


def read_progress(path: str | Path) -> dict[str, Any] | None:
    """The state a :class:`Progress` last wrote to ``path`` (None when absent or unreadable)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def progress_line(state: dict[str, Any]) -> str:
    """One console line for a state read from the progress file."""
    rate = state.get("rate_per_s")
    line = (
        f"{state.get('desc') or 'generate'}: {state.get('n')}/{state.get('total')}, "
        f"{format_seconds(state.get('elapsed_s') or 0)} elapsed"
    )
    line += f", {rate:.2f} {state.get('unit', 'gen')}/s" if rate else ", waiting for the first result"
    if state.get("left_s") is not None and not state.get("done"):
        line += f", ~{format_seconds(state['left_s'])} left"
    return line + (" (done)" if state.get("done") else "")


__all__ = ["PROGRESS_FILE_ENV", "Progress", "format_seconds", "in_kernel", "progress_line", "read_progress"]
