"""Live progress: it advances as completions arrive, its elapsed time moves while nothing completes,
it reports the rate of the new work (not of cached results), and the runner's console gets the
same state through RRLIB_PROGRESS_FILE."""

from __future__ import annotations

import json
import time

from rrlib.llm.base import GenerationRequest, GenerationResult, GenerationSettings
from rrlib.llm.cache import CachedGenerator
from rrlib.llm.progress import PROGRESS_FILE_ENV, Progress, format_seconds, progress_line, read_progress


def test_elapsed_moves_while_nothing_completes(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    monkeypatch.setenv(PROGRESS_FILE_ENV, str(path))
    bar = Progress(total=10, desc="descriptions", interval=0.1)
    try:
        time.sleep(0.35)
        first = read_progress(path)
        time.sleep(0.35)
        second = read_progress(path)
        assert first and second and first["n"] == second["n"] == 0
        assert second["elapsed_s"] > first["elapsed_s"], "the heartbeat did not move the elapsed time"
        assert "waiting for the first gen" in bar.text()
    finally:
        bar.close()


def test_rate_counts_new_work_only_and_the_text_says_it(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    monkeypatch.setenv(PROGRESS_FILE_ENV, str(path))
    with Progress(total=10, initial=4, desc="profiles", interval=0.05) as bar:
        time.sleep(0.2)
        bar.update(2)
        state = bar.state()
        assert state["n"] == 6 and state["rate_per_s"] and state["rate_per_s"] < 2 / 0.2 + 1
        text = bar.text()
        assert text.startswith("profiles: 6/10 (60%)") and "gen/s" in text and "4 cached" in text
        assert "left" in text
    done = read_progress(path)
    assert done["done"] and done["n"] == 6
    assert "(done)" in progress_line(done)


def test_total_can_grow_as_followups_are_asked(tmp_path):
    bar = Progress(total=2, desc="x", disable=True)
    bar.update(1)
    bar.total += 1
    bar.refresh()
    bar.update(2)
    bar.close()
    assert (bar.n, bar.total) == (3, 3)


def test_format_seconds():
    assert format_seconds(5) == "0:05" and format_seconds(125) == "2:05" and format_seconds(3725) == "1:02:05"


class _SlowBackend:
    identity = {"name": "slow-fake"}
    concurrency = 2

    def __init__(self, delay: float):
        self.delay = delay

    def iter_generate(self, requests):
        for i, _ in enumerate(requests):
            time.sleep(self.delay)
            yield i, GenerationResult(text=f"answer {i}", completion_tokens=3)

    def count_tokens(self, messages):
        return 10


def test_the_generator_reports_each_completion_to_the_progress_file(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    monkeypatch.setenv(PROGRESS_FILE_ENV, str(path))
    seen: list[int] = []
    gen = CachedGenerator(_SlowBackend(0.15), tmp_path / "cache")
    reqs = [
        GenerationRequest(({"role": "user", "content": f"q{i}"},), GenerationSettings(), "progress_test", "1")
        for i in range(5)
    ]

    import threading

    stop = threading.Event()

    def watch():
        while not stop.is_set():
            state = read_progress(path)
            if state and (not seen or state["n"] != seen[-1]):
                seen.append(state["n"])
            time.sleep(0.02)

    t = threading.Thread(target=watch)
    t.start()
    gen.generate(reqs, desc="progress test")
    stop.set()
    t.join()
    seen.append(read_progress(path)["n"])
    assert seen[0] == 0 and seen[-1] == 5 and len(set(seen)) >= 4, seen
    assert json.loads(path.read_text())["done"]


def test_the_runner_prints_the_notebook_progress(tmp_path):
    from rrlib.workbook.runner import ProgressWatch

    lines: list[str] = []
    path = tmp_path / ".step.progress.json"
    with ProgressWatch(path, lines.append, every=0.0, quiet=60):
        import os

        assert os.environ[PROGRESS_FILE_ENV] == str(path)
        with Progress(total=3, desc="item descriptions", interval=0.1) as bar:
            for _ in range(3):
                time.sleep(1.1)
                bar.update(1)
            time.sleep(1.2)
    assert any("item descriptions: 1/3" in line or "item descriptions: 2/3" in line for line in lines), lines
    assert any("gen/s" in line for line in lines), lines
    assert not path.exists() and PROGRESS_FILE_ENV not in os.environ
