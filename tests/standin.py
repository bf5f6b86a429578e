"""CPU stand-ins of the paper and GPU presets (issue 22): the data slices the presets read, the
IMDb plot cache for ML-1M, and an OpenAI-compatible server on the embedded teacher for the presets
whose teacher is a server.

A stand-in run is ``-f params/<preset>.yaml -f tests/standin/<preset>.yaml`` plus DATA_DIR (and,
for a server teacher, SERVER_URL) from here. Only three kinds of keys are layered over the preset:
model names (the embedded teacher, the tiny random student, the embedded BERTScore encoder), the
data slice, and budgets (users, K sizes scaled to the slice, subsample sizes, word and token
budgets, epochs, RL steps). Everything else the preset sets is read and used: quantization flags,
dtypes, backends, templates, K lists (as many K values, nested), learning-rate schedule, early
stopping, scope, ablations, LoRA settings.

Data: ``../shared/data`` (see its README) where the dataset is there; otherwise a *format*
stand-in that the same loader reads, named as such:

* ``ml1m``: the first users of the partial ``ratings_PARTIAL_users1-2999.dat.gz`` with the real
  ``movies.dat`` and ``users.dat`` (the loader notes that it is not the full file);
* ``beauty``: the real All_Beauty 5-core file (the paper used the full file; the loader accepts
  the 5-core and notes it);
* ``fashion`` and Amazon ``Books``: no file of those categories is kept here, so the All_Beauty
  5-core reviews go in under the category's file name (same Amazon 2018 JSON-lines format; the
  prompt domain is the preset's: fashion, books);
* IMDB (``generic``): no IMDB reviews are kept here, so the Musical Instruments 2014 reviews
  are written as the bring-your-own ``interactions.csv`` / ``items.csv`` the preset describes
  (ratings 1-5, review texts; the prompt domain is the preset's: movies).
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import queue
import shutil
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STANDIN_DIR = ROOT / "tests" / "standin"
#: the preset -> the data slice it reads
PRESET_DATA = {
    "paper_ml1m": "ml1m",
    "recpie_gpu": "ml1m",
    "paper_beauty": "beauty",
    "paper_fashion": "fashion",
    "release_beauty": "",  # shipped inside the package: DATA_DIR stays ''
    "exp3rt_paper_amazon_book": "books",
    "exp3rt_paper_imdb": "imdb",
}
#: ML-1M users kept in the slice's ratings.dat (MAX_USERS then picks a seeded few of them)
ML1M_USERS = 60


def standin_files(preset: str) -> list[Path]:
    return [ROOT / "params" / f"{preset}.yaml", STANDIN_DIR / f"{preset}.yaml"]


# ---------------------------------------------------------------------------------------
# data slices
# ---------------------------------------------------------------------------------------
def build_slice(kind: str, shared: Path, dest: Path) -> Path:
    """The folder DATA_DIR points at for ``kind`` (a value of :data:`PRESET_DATA`)."""
    dest.mkdir(parents=True, exist_ok=True)
    beauty = shared / "amazon_beauty_2018_5core" / "All_Beauty_5.json.gz"
    if kind == "ml1m":
        src = shared / "ml-1m"
        with (
            gzip.open(src / "ratings_PARTIAL_users1-2999.dat.gz", "rt", encoding="latin-1") as f,
            open(dest / "ratings.dat", "w", encoding="latin-1") as out,
        ):
            for line in f:
                if int(line.split("::", 1)[0]) > ML1M_USERS:
                    break
                out.write(line)
        for name in ("movies.dat", "users.dat", "README"):
            shutil.copyfile(src / name, dest / name)
    elif kind == "beauty":
        shutil.copyfile(beauty, dest / "All_Beauty_5.json.gz")
    elif kind == "fashion":
        shutil.copyfile(beauty, dest / "AMAZON_FASHION_5.json.gz")
    elif kind == "books":
        shutil.copyfile(beauty, dest / "Books_5.json.gz")
    elif kind == "imdb":
        _generic_from_instruments(
            shared / "amazon_musical_instruments_2014_5core" / "Musical_instruments_reviews.csv.gz", dest
        )
    else:
        raise ValueError(f"no data slice {kind!r}")
    (dest / "STANDIN.txt").write_text(f"stand-in data slice {kind!r} built by tests/standin.py (see its docstring)\n")
    return dest


def _generic_from_instruments(src: Path, dest: Path) -> None:
    with gzip.open(src, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    titles: dict[str, str] = {}
    with open(dest / "interactions.csv", "w", encoding="utf-8", newline="") as out:
        w = csv.writer(out)
        w.writerow(["user", "item", "rating", "timestamp", "review", "summary"])
        for r in rows:
            w.writerow(
                [
                    r["reviewerID"],
                    r["asin"],
                    int(float(r["overall"])),
                    r["unixReviewTime"],
                    r["reviewText"],
                    r["summary"],
                ]
            )
            titles.setdefault(r["asin"], f"title {r['asin']}")
    with open(dest / "items.csv", "w", encoding="utf-8", newline="") as out:
        w = csv.writer(out)
        w.writerow(["item", "title"])
        for item, title in sorted(titles.items()):
            w.writerow([item, title])


def seed_plot_cache(cache_dir: Path, ml1m_slice: Path, shared: Path) -> int:
    """PLOT_SOURCE: cinemagoer reads ``CACHE_DIR/plots/cinemagoer.jsonl`` before it asks IMDb; the
    stand-in fills it with the ReasoningRec release's 25-word ML-1M summaries as the 'plots' (and
    not-found records for the rest), so the preset's plot path runs, offline, without IMDb.
    Returns the number of movies with a plot."""
    import pandas as pd

    from rrlib.data.loaders.movielens import load_movielens
    from rrlib.enrich.movie_plots import PlotCache, title_and_year

    summaries = pd.read_csv(shared / "reasoningrec_release" / "ml1m" / "movie_summary_25_words.csv", dtype=str)
    plots = dict(zip(summaries["movie_id"].astype(str), summaries["summary"].fillna("").astype(str)))
    items = load_movielens(ml1m_slice).items
    (cache_dir / "plots").mkdir(parents=True, exist_ok=True)
    path = cache_dir / "plots" / "cinemagoer.jsonl"
    seen: set[str] = set()
    n = 0
    with open(path, "a", encoding="utf-8") as f:
        for item_id, title, attributes in zip(items["item_id"], items["title"], items["attributes"]):
            q = PlotCache.query(*title_and_year(str(title), str(attributes)))
            if q in seen:
                continue
            seen.add(q)
            plot = plots.get(str(item_id), "").strip()
            n += bool(plot)
            f.write(json.dumps({"query": q, "imdb_id": "", "plot": plot, "found": bool(plot)}) + "\n")
    return n


# ---------------------------------------------------------------------------------------
# an OpenAI-compatible server on the embedded teacher
# ---------------------------------------------------------------------------------------
class EmbeddedChatServer:
    """``/v1/models`` and ``/v1/chat/completions`` on 127.0.0.1 (a free port) answered by the
    embedded teacher through rrlib's transformers backend: real generations, batched (requests
    that arrive together are generated together, up to ``batch_size``), with the request's
    temperature, top_p, seed, max_tokens, repetition_penalty and GBNF ``grammar``. It stands in
    for the vLLM / OpenAI server of the ``exp3rt_paper_*`` presets (the real vLLM server is
    tests/test_vllm_server.py). Use as a context manager; ``url`` ends in /v1."""

    def __init__(self, cache_dir: Path, model_name: str, *, batch_size: int = 16):
        from rrlib.llm.local import LocalBackend

        self.backend = LocalBackend("embedded", cache_dir=cache_dir, batch_size=batch_size)
        self.model_name, self.batch_size = model_name, batch_size
        self.requests_served = 0
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: Mapping[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": server.model_name, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                done: queue.Queue = queue.Queue()
                server._queue.put((body, done))
                code, reply = done.get()
                self._send(code, reply)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._threads = [
            threading.Thread(target=self.httpd.serve_forever, daemon=True),
            threading.Thread(target=self._work, daemon=True),
        ]

    def _work(self) -> None:
        from rrlib.llm.base import GenerationRequest, GenerationSettings

        while not self._stop.is_set():
            try:
                batch = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            try:  # whatever else has arrived joins this batch
                while len(batch) < self.batch_size:
                    batch.append(self._queue.get(timeout=0.05))
            except queue.Empty:
                pass
            reqs = []
            for body, _ in batch:
                settings = GenerationSettings(
                    temperature=float(body.get("temperature") or 0.0),
                    top_p=float(body.get("top_p") or 1.0),
                    max_new_tokens=int(body.get("max_tokens") or 256),
                    seed=int(body.get("seed") or 0),
                    repetition_penalty=float(body.get("repetition_penalty") or 1.0),
                )
                messages = tuple({"role": m["role"], "content": m["content"]} for m in body.get("messages", []))
                reqs.append(
                    GenerationRequest(messages, settings, "server", "1", grammar=str(body.get("grammar") or ""))
                )
            try:
                results = self.backend.generate(reqs)
            except Exception as e:  # noqa: BLE001 - reported to every caller of the batch
                for _, done in batch:
                    done.put((500, {"error": {"message": f"{type(e).__name__}: {e}"}}))
                continue
            for (_, done), res in zip(batch, results):
                self.requests_served += 1
                done.put(
                    (
                        200,
                        {
                            "object": "chat.completion",
                            "model": self.model_name,
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": res.text},
                                    "finish_reason": res.finish_reason or "stop",
                                }
                            ],
                            "usage": {
                                "prompt_tokens": int(res.prompt_tokens),
                                "completion_tokens": int(res.completion_tokens),
                                "total_tokens": int(res.prompt_tokens + res.completion_tokens),
                            },
                        },
                    )
                )

    def __enter__(self) -> "EmbeddedChatServer":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.backend.close()


def shared_data_dir() -> Path:
    import rrlib

    return Path(os.environ.get("RRLIB_SHARED_DATA") or Path(rrlib.__file__).resolve().parents[2] / "shared" / "data")
