"""Movie plots for the ML1M item descriptions (paper A.4.1: MovieLens metadata is only title,
genres and year, so the teacher also reads each movie's IMDb plot).

Sources (parameter PLOT_SOURCE):

* ``cinemagoer``: IMDb look-ups through the ``cinemagoer`` library, one every
  PLOT_RATE_LIMIT_S seconds, cached on disk (``CACHE_DIR/plots/cinemagoer.jsonl``, appended and
  fsynced per movie, so an interrupted fetch resumes). Found and not-found answers are cached;
  network failures are not (they are retried next run). When IMDb is unreachable, or the
  installed cinemagoer cannot read plots, fetching stops at once and the remaining movies are
  described from metadata only; :class:`PlotReport` counts them and says why.
* ``csv``: a local file PLOTS_CSV with an id column (item_id or movie_id) and a text column
  (plot or summary), e.g. the ReasoningRec release's ``ml1m/movie_summary_25_words.csv``.
* ``none``: metadata only.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd
from tqdm.auto import tqdm

ID_COLUMNS = ("item_id", "movie_id", "id")
PLOT_COLUMNS = ("plot", "summary", "description")


class PlotSourceUnavailable(RuntimeError):
    """The plot source cannot answer at all (offline, or a library without plot access)."""


class PlotLookup(Protocol):
    def find(self, title: str, year: int | None) -> tuple[str, str]:
        """(imdb_id, plot) of the best match; ('', '') when IMDb has no such movie or no plot.
        Raises PlotSourceUnavailable when the source cannot be reached."""
        ...


@dataclass
class PlotReport:
    source: str
    plots: dict[str, str]  # item_id -> plot, only items that have one
    n_items: int
    missing_ids: list[str] = field(default_factory=list)
    n_from_cache: int = 0
    n_fetched: int = 0
    n_not_found: int = 0
    reason: str = ""  # why some items have no plot ('' when none lack one)

    @property
    def n_with_plot(self) -> int:
        return len(self.plots)

    @property
    def n_missing(self) -> int:
        return len(self.missing_ids)

    def message(self) -> str:
        text = f"plots ({self.source}): {self.n_with_plot} of {self.n_items} movies have one"
        if self.source == "cinemagoer":
            text += (
                f" ({self.n_from_cache} from the cache, {self.n_fetched} fetched now, "
                f"{self.n_not_found} not found on IMDb)"
            )
        if self.n_missing:
            text += f"; {self.n_missing} are described from metadata only"
            if self.reason:
                text += f": {self.reason}"
        return text

    def summary(self) -> dict:
        return {
            "source": self.source,
            "n_items": self.n_items,
            "n_with_plot": self.n_with_plot,
            "n_missing": self.n_missing,
            "n_from_cache": self.n_from_cache,
            "n_fetched": self.n_fetched,
            "n_not_found": self.n_not_found,
            "reason": self.reason,
        }


# ---------------------------------------------------------------------------------------
# Titles
# ---------------------------------------------------------------------------------------
_YEAR = re.compile(r"\((\d{4})\)\s*$")
_ARTICLE = re.compile(r"^(.*), (The|A|An|Les|Le|La|L'|Il|Der|Die|Das|El|Los|Las)$")


def title_and_year(title: str, attributes: str = "") -> tuple[str, int | None]:
    """IMDb search terms of a MovieLens title: 'American President, The (1995)' ->
    ('The American President', 1995). An alternative title in parentheses is dropped."""
    title = title.strip()
    year = None
    m = _YEAR.search(title)
    if m:
        year = int(m.group(1))
        title = title[: m.start()].strip()
    else:
        m = re.search(r"\byear\s*:\s*(\d{4})", attributes)
        year = int(m.group(1)) if m else None
    title = re.sub(r"\s*\([^)]*\)\s*$", "", title).strip() or title  # 'Cite des enfants..., La' alt title
    m = _ARTICLE.match(title)
    if m:
        title = f"{m.group(2)} {m.group(1)}".replace("' ", "'")
    return title, year


# ---------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------
def load_plots_csv(path: str | Path) -> dict[str, str]:
    """item_id -> plot from a CSV with an id column (item_id/movie_id/id) and a text column
    (plot/summary/description). Blank plots are skipped."""
    path = Path(path)
    if not str(path) or not path.is_file():
        raise FileNotFoundError(
            f"PLOTS_CSV={str(path)!r} is not a file. Set PLOTS_CSV to a CSV with columns "
            f"item_id and plot, or use PLOT_SOURCE=cinemagoer or none."
        )
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot be read as CSV: {e}") from e
    id_col = next((c for c in ID_COLUMNS if c in df.columns), None)
    text_col = next((c for c in PLOT_COLUMNS if c in df.columns), None)
    if id_col is None or text_col is None:
        raise ValueError(
            f"{path}: needs an id column (one of {list(ID_COLUMNS)}) and a plot column (one of "
            f"{list(PLOT_COLUMNS)}); it has {list(df.columns)}."
        )
    dup = df[id_col].duplicated(keep="first")
    if dup.any():
        row = int(dup.idxmax()) + 2  # header is line 1
        raise ValueError(
            f"{path}, line {row}: {id_col} {df[id_col][dup.idxmax()]!r} appears twice; keep one plot per movie."
        )
    return {
        str(i).strip(): str(t).strip().strip('"').strip() for i, t in zip(df[id_col], df[text_col]) if str(t).strip()
    }


# ---------------------------------------------------------------------------------------
# cinemagoer
# ---------------------------------------------------------------------------------------
class CinemagoerLookup:
    """IMDb look-ups through cinemagoer's web access system."""

    def __init__(self):
        import imdb  # cinemagoer

        systems = imdb.available_access_systems()
        if "http" not in systems:
            raise PlotSourceUnavailable(
                f"the installed cinemagoer {imdb.VERSION} offers only the {systems} access system(s), which "
                f"read a local copy of IMDb's bulk datasets and carry no plots; plot look-ups need a cinemagoer "
                f"release with the 'http' access system. Alternatively set PLOT_SOURCE=csv with PLOTS_CSV (e.g. "
                f"the ReasoningRec release's ml1m/movie_summary_25_words.csv)"
            )
        self._ia = imdb.Cinemagoer("http")
        self._errors = (imdb.IMDbError, OSError)

    def find(self, title: str, year: int | None) -> tuple[str, str]:
        try:
            hits = self._ia.search_movie(f"{title} ({year})" if year else title)
            hits = [h for h in hits if h.get("kind", "movie") in ("movie", "tv movie", "video movie")]
            if year is not None:
                hits = sorted(hits, key=lambda h: abs(int(h.get("year") or 0) - year))
            if not hits:
                return "", ""
            movie = self._ia.get_movie(hits[0].movieID, info=["main", "plot"])
        except self._errors as e:
            raise PlotSourceUnavailable(f"IMDb unreachable ({type(e).__name__}: {e})") from e
        plot = movie.get("plot outline") or next(iter(movie.get("plot") or []), "")
        return f"tt{hits[0].movieID}", plot.split("::")[0].strip()


class PlotCache:
    """Append-only JSONL of look-ups keyed by 'title|year'; a torn last line is skipped."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "cinemagoer.jsonl"
        self.entries: dict[str, dict] = {}
        self.torn_lines = 0
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    self.entries[rec["query"]] = rec
                except (json.JSONDecodeError, KeyError, TypeError):
                    self.torn_lines += 1

    @staticmethod
    def query(title: str, year: int | None) -> str:
        return f"{title}|{year or ''}"

    def add(self, query: str, imdb_id: str, plot: str) -> None:
        rec = {"query": query, "imdb_id": imdb_id, "plot": plot, "found": bool(plot)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.entries[query] = rec


def fetch_plots(
    items: pd.DataFrame,
    *,
    source: str,
    cache_dir: str | Path,
    csv_path: str = "",
    rate_limit_s: float = 1.0,
    lookup: PlotLookup | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress: bool = True,
) -> PlotReport:
    """Plots of ``items`` (columns item_id, title, attributes) from ``source``; see the module doc."""
    ids = [str(i) for i in items["item_id"]]
    if source == "none":
        return PlotReport("none", {}, len(ids), ids, reason="PLOT_SOURCE is none")
    if source == "csv":
        table = load_plots_csv(csv_path)
        plots = {i: table[i] for i in ids if i in table}
        missing = [i for i in ids if i not in plots]
        return PlotReport("csv", plots, len(ids), missing, reason=f"not in {csv_path}" if missing else "")
    if source != "cinemagoer":
        raise ValueError(f"PLOT_SOURCE={source!r} is not one of cinemagoer, csv, none.")

    cache = PlotCache(Path(cache_dir) / "plots")
    report = PlotReport("cinemagoer", {}, len(ids))
    queries = {}
    for item_id, title, attributes in zip(ids, items["title"], items["attributes"]):
        queries[item_id] = PlotCache.query(*title_and_year(str(title), str(attributes)))
    todo = []
    for item_id, q in queries.items():
        if q in cache.entries:
            report.n_from_cache += 1
            if cache.entries[q]["plot"]:
                report.plots[item_id] = cache.entries[q]["plot"]
            else:
                report.n_not_found += 1
        else:
            todo.append(item_id)
    if todo:
        try:
            lookup = lookup or CinemagoerLookup()
            last = 0.0
            for item_id in tqdm(todo, desc="IMDb plots", disable=not progress):
                q = queries[item_id]
                if q in cache.entries:  # two items with the same title and year
                    rec = cache.entries[q]
                else:
                    wait = rate_limit_s - (time.monotonic() - last)
                    if wait > 0:
                        sleep(wait)
                    last = time.monotonic()
                    title, _, year = q.rpartition("|")
                    imdb_id, plot = lookup.find(title, int(year) if year else None)
                    cache.add(q, imdb_id, plot)
                    report.n_fetched += 1
                    rec = cache.entries[q]
                if rec["plot"]:
                    report.plots[item_id] = rec["plot"]
                else:
                    report.n_not_found += 1
        except PlotSourceUnavailable as e:
            unavailable = str(e)
        else:
            unavailable = ""
    else:
        unavailable = ""
    report.missing_ids = [i for i in ids if i not in report.plots]
    n_unasked = report.n_missing - report.n_not_found
    reasons = [f"{report.n_not_found} not found on IMDb"] if report.n_not_found else []
    if unavailable:
        reasons.append(f"{n_unasked} not looked up: {unavailable}")
    if cache.torn_lines:
        reasons.append(f"{cache.torn_lines} torn line(s) in {cache.path} skipped")
    report.reason = "; ".join(reasons)
    return report
