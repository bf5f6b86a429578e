"""Movie plots for ML1M descriptions: disk cache, rate limit, offline fallback with counts,
local CSV, and the installed cinemagoer's real behaviour (no network needed)."""

from pathlib import Path

import pandas as pd
import pytest

import rrlib
from rrlib.enrich.movie_plots import PlotCache, PlotSourceUnavailable, fetch_plots, load_plots_csv, title_and_year

RELEASE_CSV = (
    Path(rrlib.__file__).resolve().parent / "resources" / "reasoningrec_release" / "ml1m" / "movie_summary_25_words.csv"
)  # shipped copy
MOVIES = pd.DataFrame(
    {
        "item_id": ["1", "2", "3", "99999"],
        "title": ["Toy Story", "Jumanji", "Grumpier Old Men", "Unknown Film"],
        "attributes": [
            "year: 1995; genres: Animation",
            "year: 1995; genres: Adventure",
            "year: 1995; genres: Comedy",
            "genres: Drama",
        ],
    }
)


class FakeIMDb:
    def __init__(self, offline_after=None):
        self.asked, self.offline_after = [], offline_after

    def find(self, title, year):
        if self.offline_after is not None and len(self.asked) >= self.offline_after:
            raise PlotSourceUnavailable("IMDb unreachable (URLError: no route)")
        self.asked.append((title, year))
        return ("", "") if title == "Unknown Film" else (f"tt{len(self.asked)}", f"Plot of {title}.")


def test_title_and_year_from_movielens_forms():
    assert title_and_year("American President, The (1995)") == ("The American President", 1995)
    assert title_and_year("City of Lost Children, The (Cité des enfants perdus, La) (1995)") == (
        "The City of Lost Children",
        1995,
    )
    assert title_and_year("The Shawshank Redemption", "year: 1994; genres: Drama") == ("The Shawshank Redemption", 1994)
    assert title_and_year("Heat", "") == ("Heat", None)


def test_fetch_caches_on_disk_and_rate_limits(tmp_path):
    imdb, sleeps = FakeIMDb(), []
    report = fetch_plots(
        MOVIES,
        source="cinemagoer",
        cache_dir=tmp_path,
        rate_limit_s=2.0,
        lookup=imdb,
        sleep=sleeps.append,
        progress=False,
    )
    assert report.plots == {"1": "Plot of Toy Story.", "2": "Plot of Jumanji.", "3": "Plot of Grumpier Old Men."}
    assert (report.n_fetched, report.n_not_found, report.n_missing, report.missing_ids) == (4, 1, 1, ["99999"])
    assert "1 not found on IMDb" in report.reason and "metadata only" in report.message()
    assert imdb.asked[0] == ("Toy Story", 1995)
    assert len(sleeps) == 3 and all(0 < s <= 2.0 for s in sleeps)  # no wait before the first look-up
    again = FakeIMDb()
    report2 = fetch_plots(MOVIES, source="cinemagoer", cache_dir=tmp_path, lookup=again, progress=False)
    assert again.asked == [] and report2.n_from_cache == 4 and report2.plots == report.plots


def test_offline_stops_at_once_and_counts_what_lacks_a_plot(tmp_path):
    imdb = FakeIMDb(offline_after=1)
    report = fetch_plots(MOVIES, source="cinemagoer", cache_dir=tmp_path, rate_limit_s=0, lookup=imdb, progress=False)
    assert report.plots == {"1": "Plot of Toy Story."} and report.n_missing == 3
    assert "3 not looked up: IMDb unreachable" in report.reason
    assert "3 are described from metadata only" in report.message()
    # failures are not cached: the next (online) run fetches the rest and reuses the first
    later = FakeIMDb()
    report2 = fetch_plots(MOVIES, source="cinemagoer", cache_dir=tmp_path, rate_limit_s=0, lookup=later, progress=False)
    assert [a[0] for a in later.asked] == ["Jumanji", "Grumpier Old Men", "Unknown Film"]
    assert report2.n_with_plot == 3 and report2.n_from_cache == 1


def test_torn_cache_line_is_skipped_and_reported(tmp_path):
    fetch_plots(
        MOVIES.iloc[:1], source="cinemagoer", cache_dir=tmp_path, rate_limit_s=0, lookup=FakeIMDb(), progress=False
    )
    with open(tmp_path / "plots" / "cinemagoer.jsonl", "a") as f:
        f.write('{"query": "Jum')
    cache = PlotCache(tmp_path / "plots")
    assert cache.torn_lines == 1 and len(cache.entries) == 1
    report = fetch_plots(
        MOVIES.iloc[:2], source="cinemagoer", cache_dir=tmp_path, rate_limit_s=0, lookup=FakeIMDb(), progress=False
    )
    assert report.n_with_plot == 2 and report.n_missing == 0 and "torn line" in report.reason


def test_installed_cinemagoer_falls_back_with_a_clear_reason(tmp_path):
    report = fetch_plots(MOVIES.iloc[:1], source="cinemagoer", cache_dir=tmp_path, rate_limit_s=0, progress=False)
    # offline here; and recent cinemagoer releases carry no web access at all: either way no plot
    assert report.n_missing == 1 and report.plots == {}
    assert "not looked up" in report.reason and ("PLOT_SOURCE=csv" in report.reason or "unreachable" in report.reason)


def test_csv_and_none_sources(tmp_path):
    report = fetch_plots(MOVIES, source="csv", cache_dir=tmp_path, csv_path=str(RELEASE_CSV))
    assert report.n_with_plot == 3 and report.missing_ids == ["99999"]
    assert report.plots["1"].startswith("Toy Story is a groundbreaking animated film")
    assert report.plots["2"].startswith("Jumanji (1995)")  # CSV quoting removed
    none = fetch_plots(MOVIES, source="none", cache_dir=tmp_path)
    assert none.n_missing == 4 and none.reason == "PLOT_SOURCE is none"
    with pytest.raises(ValueError, match="PLOT_SOURCE"):
        fetch_plots(MOVIES, source="web", cache_dir=tmp_path)


@pytest.mark.parametrize(
    "content,match",
    [
        (None, "PLOTS_CSV="),
        ("movie,text\n1,x\n", r"needs an id column"),
        ("item_id,plot\n1,a\n1,b\n", r"line 3: item_id '1' appears twice"),
    ],
)
def test_plots_csv_errors(tmp_path, content, match):
    path = tmp_path / "plots.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        load_plots_csv(path)
