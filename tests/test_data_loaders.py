"""Loaders on the real files in ../shared/data and on small synthetic files with known content."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import zipfile

import pandas as pd
import pytest

from rrlib.data import DataError, load_dataset, release_files
from rrlib.data import download as dl
from rrlib.data import loaders as L


# --------------------------------------------------------------------------- MovieLens-1M
@pytest.fixture(scope="module")
def ml1m(shared_data):
    return L.load_movielens(shared_data / "ml-1m")


def test_ml1m_prefix_rows_and_known_values(ml1m):
    r = ml1m.interactions
    assert len(r) == 487_650
    assert r["user_id"].nunique() == 2999
    first = r.iloc[0]
    assert (first["user_id"], first["item_id"], first["rating"], first["timestamp"]) == ("1", "1193", 5.0, 978300760)
    last = r.iloc[-1]
    assert (last["user_id"], last["item_id"], last["rating"]) == ("2999", "2046", 4.0)
    assert list(r.columns) == L.RAW_INTERACTION_COLUMNS
    assert r["source_order"].tolist()[:3] == [0, 1, 2]


def test_ml1m_partial_file_is_flagged_not_verified(ml1m):
    rec = ml1m.source["files"][0]
    assert rec["checksum_status"].startswith("NOT the official")
    assert rec["git_blob_sha1"] != dl.ML1M_RATINGS_GIT_BLOB
    assert any("not the official full ratings.dat" in n for n in ml1m.notes)


def test_ml1m_movies_titles_years_genres(ml1m):
    items = ml1m.items.set_index("item_id")
    assert len(ml1m.items) == 3883
    assert items.loc["1", "title"] == "Toy Story"
    assert items.loc["1", "attributes"] == "year: 1995; genres: Animation, Children's, Comedy"
    assert items.loc["318", "title"] == "The Shawshank Redemption"
    assert (items["title_source"] == "metadata").all()
    assert ml1m.source["files"][1]["encoding"] in ("utf-8", "latin-1")


def test_ml1m_users_attributes(ml1m):
    u = ml1m.user_attributes.set_index("user_id")
    assert len(u) == 6040
    assert u.loc["1", "attributes"] == "gender: F; age: under 18; occupation: K-12 student"


def test_movielens_title_parsing():
    assert L.movielens_title("Shawshank Redemption, The (1994)") == ("The Shawshank Redemption", "1994")
    assert L.movielens_title("City of Lost Children, The (1995)") == ("The City of Lost Children", "1995")
    assert L.movielens_title("Misérables, Les (1995)") == ("Les Misérables", "1995")
    assert L.movielens_title("Untitled") == ("Untitled", "")


def test_ml1m_plain_full_style_file_and_latin1(tmp_path, shared_data):
    """A plain ratings.dat is read like the gz prefix; latin-1 movies decode correctly; a file
    whose git blob id matches the published one is reported as verified."""
    lines = gzip.decompress((shared_data / "ml-1m" / "ratings_PARTIAL_users1-2999.dat.gz").read_bytes())
    lines = b"\n".join(lines.split(b"\n")[:1000]) + b"\n"
    (tmp_path / "ratings.dat").write_bytes(lines)
    (tmp_path / "movies.dat").write_bytes(
        "1193::Vol au-dessus d'un nid de coucou, Le (1975)::Drama\n".encode("latin-1")
        + b"".join(f"{i}::Movie {i} (2000)::Drama\n".encode() for i in set(range(1, 4000)) - {1193})
    )
    (tmp_path / "movies.dat").write_bytes((tmp_path / "movies.dat").read_bytes().replace(b"dessus", b"d\xe9ssus"))
    raw = L.load_movielens(tmp_path)
    assert len(raw.interactions) == 1000
    assert raw.items.set_index("item_id").loc["1193", "title"] == "Le Vol au-déssus d'un nid de coucou"
    assert raw.source["files"][1]["encoding"] == "latin-1"
    # the published blob id check is exact: fake it by patching the constant to this file's id
    blob = dl.git_blob_sha1(tmp_path / "ratings.dat")
    if shutil.which("git"):
        assert (
            blob
            == subprocess.run(
                ["git", "hash-object", str(tmp_path / "ratings.dat")], capture_output=True, text=True
            ).stdout.strip()
        )
    old = dl.ML1M_RATINGS_GIT_BLOB
    try:
        dl.ML1M_RATINGS_GIT_BLOB = blob
        assert L.load_movielens(tmp_path).source["files"][0]["checksum_status"].startswith("verified")
    finally:
        dl.ML1M_RATINGS_GIT_BLOB = old


def test_ml1m_gz_and_plain_give_identical_frames(tmp_path, shared_data):
    src = shared_data / "ml-1m"
    data = gzip.decompress((src / "ratings_PARTIAL_users1-2999.dat.gz").read_bytes())
    head = b"\n".join(data.split(b"\n")[:5000]) + b"\n"
    for name, content in (("plain", head), ("gz", gzip.compress(head))):
        d = tmp_path / name
        d.mkdir()
        (d / ("ratings.dat" if name == "plain" else "ratings.dat.gz")).write_bytes(content)
        shutil.copy(src / "movies.dat", d / "movies.dat")
    a = L.load_movielens(tmp_path / "plain").interactions
    b = L.load_movielens(tmp_path / "gz").interactions
    pd.testing.assert_frame_equal(a, b)


# --------------------------------------------------------------------------- Amazon 2018
@pytest.fixture(scope="module")
def beauty5(shared_data):
    return L.load_amazon(shared_data / "amazon_beauty_2018_5core" / "All_Beauty_5.json.gz")


def test_amazon_5core_counts(beauty5):
    r = beauty5.interactions
    assert (len(r), r["user_id"].nunique(), r["item_id"].nunique()) == (5269, 991, 85)
    first = r.iloc[0]
    assert (first["user_id"], first["item_id"], first["rating"], first["timestamp"]) == (
        "A3CIUOJXQ5VDQ2",
        "B0000530HU",
        5.0,
        1472688000,
    )
    assert first["review_text"] == "As advertised. Reasonably priced"
    assert first["summary"] == "Five Stars"
    assert sorted(r["rating"].unique()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    # no metadata: titles are left for the leakage-safe fallback in processing
    assert (beauty5.items["title"] == "").all() and len(beauty5.items) == 85


def test_embedded_copy_is_the_shared_file(shared_data):
    raw = load_dataset("embedded_beauty")
    assert raw.source["files"][0]["sha256"] == dl.sha256_file(
        shared_data / "amazon_beauty_2018_5core" / "All_Beauty_5.json.gz"
    )
    assert (L.EMBEDDED_BEAUTY.parent / "PROVENANCE.md").read_text().count("EMNLP") >= 1


def _amazon_line(user, asin, rating, ts, text="", summary=""):
    return json.dumps(
        {
            "reviewerID": user,
            "asin": asin,
            "overall": rating,
            "unixReviewTime": ts,
            "reviewText": text,
            "summary": summary,
        }
    )


def test_amazon_with_metadata_plain_and_gz(tmp_path):
    reviews = (
        "\n".join(
            [
                _amazon_line("u1", "A", 5, 10, "good"),
                _amazon_line("u1", "B", 2, 20, "bad"),
                _amazon_line("u2", "C", 4, 30),
            ]
        )
        + "\n"
    )
    meta = (
        "\n".join(
            [
                json.dumps(
                    {
                        "asin": "A",
                        "title": "Rose &amp; Oud <b>Soap</b>",
                        "brand": "Acme",
                        "price": "$5.00",
                        "category": ["Beauty", "Soap"],
                        "description": ["Gentle", "bar."],
                    }
                ),
                json.dumps({"asin": "A", "title": "duplicate ignored"}),
                json.dumps({"asin": "B", "title": "", "brand": "Zed"}),
            ]
        )
        + "\n"
    )
    (tmp_path / "r.json").write_text(reviews)
    (tmp_path / "r.json.gz").write_bytes(gzip.compress(reviews.encode()))
    (tmp_path / "meta.json.gz").write_bytes(gzip.compress(meta.encode()))
    plain = L.load_amazon(tmp_path / "r.json", tmp_path / "meta.json.gz")
    gz = L.load_amazon(tmp_path / "r.json.gz", tmp_path / "meta.json.gz")
    pd.testing.assert_frame_equal(plain.interactions, gz.interactions)
    items = plain.items.set_index("item_id")
    assert items.loc["A", "title"] == "Rose & Oud Soap"
    assert items.loc["A", "title_source"] == "metadata"
    assert items.loc["A", "attributes"] == "brand: Acme; price: $5.00; category: Beauty > Soap"
    assert items.loc["A", "metadata_description"] == "Gentle bar."
    assert items.loc["B", "title"] == "" and items.loc["B", "attributes"] == "brand: Zed"
    assert items.loc["C", "title"] == ""  # no metadata record at all
    assert plain.interactions.set_index("item_id").loc["C", "review_text"] == ""


# --------------------------------------------------------------------------- generic
def test_generic_csv_with_items_and_dates(tmp_path):
    pd.DataFrame(
        {
            "user": ["a", "a", "b"],
            "item": ["x", "y", "x"],
            "rating": [5, 1, 4],
            "timestamp": ["2019-03-01", "2019-03-02T10:00:00", "2019-03-03"],
            "review": ["nice", "", "ok"],
        }
    ).to_csv(tmp_path / "interactions.csv", index=False)
    pd.DataFrame(
        {"item": ["x"], "title": ["Thing X"], "description": ["A thing."], "brand": ["Acme"], "genre": [""]}
    ).to_csv(tmp_path / "items.csv", index=False)
    raw = load_dataset("generic", tmp_path)
    r = raw.interactions
    assert r["timestamp"].tolist() == [1551398400, 1551520800, 1551571200]
    assert r["review_text"].tolist() == ["nice", "", "ok"]
    items = raw.items.set_index("item_id")
    assert items.loc["x", "title"] == "Thing X" and items.loc["x", "attributes"] == "brand: Acme"
    assert items.loc["x", "metadata_description"] == "A thing."
    assert items.loc["y", "title"] == ""  # not in the items table: fallback later


def test_generic_parquet_unix_seconds(tmp_path):
    pd.DataFrame({"user": [1, 1], "item": [7, 8], "rating": [3.5, 4.0], "timestamp": [100, 200]}).to_parquet(
        tmp_path / "interactions.parquet"
    )
    raw = load_dataset("generic", tmp_path)
    assert raw.interactions["user_id"].tolist() == ["1", "1"]
    assert raw.interactions["item_id"].tolist() == ["7", "8"]
    assert raw.interactions["timestamp"].tolist() == [100, 200]


# --------------------------------------------------------------------------- release
def test_release_loader_shipped_equals_shared(shared_data):
    shipped = L.load_release()
    shared = L.load_release(shared_data / "reasoningrec_release")
    pd.testing.assert_frame_equal(shipped.interactions, shared.interactions)
    assert shipped.windows == shared.windows
    assert len(shipped.interactions) == 4231 and shipped.interactions["user_id"].nunique() == 624
    assert {s: len(w) for s, w in shipped.windows.items()} == {"train": 624, "valid": 624, "test": 624}
    assert shipped.windows["test"]["0"] == ["2", "3", "4", "5", "5", "6"]  # repeated ids kept
    items = shipped.items.set_index("item_id")
    assert items.loc["17", "title"].startswith("Braun Clean & Renew")  # HTML entity decoded
    assert items.loc["17", "attributes"] == "brand: Braun; price: $11.94"


def test_release_files(shared_data):
    files = release_files()
    assert {"ratings", "items", "profiles", "train", "valid", "test", "license"} <= set(files)
    assert all(p.is_file() for p in files.values())
    # the ML-1M summaries (no ratings, MIT) ship too, unchanged
    shared = release_files(shared_data / "reasoningrec_release")
    assert shared["ml1m_summaries"].name == files["ml1m_summaries"].name == "movie_summary_25_words.csv"
    assert dl.sha256_file(files["ml1m_summaries"]) == dl.sha256_file(shared["ml1m_summaries"])
    assert release_files(shared_data / "reasoningrec_release" / "beauty")["ratings"].is_file()


# --------------------------------------------------------------------------- download + checksums
def test_git_blob_sha1_known_answer(tmp_path):
    (tmp_path / "h").write_bytes(b"hello\n")
    assert dl.git_blob_sha1(tmp_path / "h") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_checksum_ledger_records_then_verifies_then_catches_changes(tmp_path):
    downloads = tmp_path / "downloads"
    f = downloads / "amazon" / "X.json.gz"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"abc")
    ledger = dl.ChecksumLedger(downloads)
    assert ledger.verify(f)["status"].startswith("recorded now")
    ledger.record(f, "https://example.org/X.json.gz")
    assert dl.ChecksumLedger(downloads).verify(f)["status"].startswith("verified")
    f.write_bytes(b"abd")
    with pytest.raises(DataError, match="differs from the .* recorded"):
        dl.ChecksumLedger(downloads).verify(f)


def test_fetch_ml1m_verifies_git_blob(tmp_path, monkeypatch):
    """The download path unpacks the zip and rejects a ratings.dat whose blob id is wrong."""

    def fake_download(urls, dest, desc=""):
        with zipfile.ZipFile(dest, "w") as z:
            for name in ("ratings.dat", "movies.dat", "users.dat", "README"):
                z.writestr(f"ml-1m/{name}", "1::1::5::1\n" if name == "ratings.dat" else "x\n")
        return urls[0]

    monkeypatch.setattr(dl, "download_file", fake_download)
    with pytest.raises(DataError, match="git blob id .* is not the published"):
        dl.fetch_ml1m(tmp_path)
    blob = dl.git_blob_sha1(tmp_path / "ml-1m" / "ratings.dat")
    monkeypatch.setattr(dl, "ML1M_RATINGS_GIT_BLOB", blob)
    folder = dl.fetch_ml1m(tmp_path)
    assert (folder / "movies.dat").is_file()
    assert "ml-1m/movies.dat" in json.loads((tmp_path / "checksums.json").read_text())


def test_load_dataset_uses_download_cache(tmp_path, shared_data, monkeypatch):
    """A paper dataset absent from DATA_DIR='' is read from CACHE_DIR/downloads when there."""
    cached = tmp_path / "downloads" / "amazon"
    cached.mkdir(parents=True)
    shutil.copy(shared_data / "amazon_beauty_2018_5core" / "All_Beauty_5.json.gz", cached)
    monkeypatch.setattr(dl, "is_online", lambda url, timeout=3.0: False)
    raw = load_dataset("beauty", "", tmp_path, allow_download=True)
    assert len(raw.interactions) == 5269
    assert any("5-core" in n for n in raw.notes)
    assert raw.source["files"][0]["checksum_status"].startswith("recorded now")


# --------------------------------------------------------------------------- ml-latest-small (shipped)
@pytest.fixture(scope="module")
def ml_small():
    return load_dataset("ml_latest_small")


def test_ml_latest_small_shipped_counts_and_checksums(ml_small):
    r = ml_small.interactions
    assert (len(r), r["user_id"].nunique(), r["item_id"].nunique()) == (100_836, 610, 9_724)
    assert len(ml_small.items) == 9_742 and len(ml_small.tags) == 3_683
    assert sorted(r["rating"].unique()) == [x / 2 for x in range(1, 11)]
    assert round(float((r["rating"] > 3).mean()), 3) == 0.612
    assert r.groupby("user_id").size().min() == 20
    first = r.iloc[0]
    assert (first["user_id"], first["item_id"], first["rating"], first["timestamp"]) == ("1", "1", 4.0, 964982703)
    assert all(f["checksum_status"].startswith("verified: git blob id") for f in ml_small.source["files"])
    assert [f["role"] for f in ml_small.source["files"]] == ["ratings", "movies", "tags", "links"]
    assert "redistribution allowed" in ml_small.source["license"]
    assert (L.ML_SMALL_DIR / "README.txt").is_file() and (L.ML_SMALL_DIR / "PROVENANCE.md").is_file()


def test_ml_latest_small_titles_genres_and_last_interactions(ml_small):
    items = ml_small.items.set_index("item_id")
    assert items.loc["318", "title"] == "The Shawshank Redemption"
    assert items.loc["318", "attributes"] == "year: 1994; genres: Crime, Drama"
    assert items.loc["1", "attributes"] == "year: 1995; genres: Adventure, Animation, Children, Comedy, Fantasy"
    no_genre = items[items["attributes"].str.contains("no genres")]
    assert no_genre.empty  # "(no genres listed)" is not a genre
    from rrlib.data import processing as P

    ordered = P.order_interactions(ml_small.interactions, "file")
    assert int((ordered.groupby("user_id").tail(1)["rating"] <= 3).sum()) == 203


def test_ml_latest_small_from_data_dir_equals_shipped(ml_small, shared_data):
    other = load_dataset("ml_latest_small", shared_data / "ml-latest-small")
    pd.testing.assert_frame_equal(other.interactions, ml_small.interactions)
    pd.testing.assert_frame_equal(other.items, ml_small.items)
    pd.testing.assert_frame_equal(other.tags, ml_small.tags)
    assert all(f["checksum_status"].startswith("verified") for f in other.source["files"])


def test_ml_latest_small_modified_copy(tmp_path, monkeypatch, shared_data):
    for name in ("ratings.csv", "movies.csv"):
        shutil.copy(shared_data / "ml-latest-small" / name, tmp_path / name)
    with open(tmp_path / "ratings.csv", "a", newline="") as f:
        f.write("1,1,4.0,964982704\r\n")
    edited = load_dataset("ml_latest_small", tmp_path)  # a user's copy: accepted, flagged
    assert edited.source["files"][0]["checksum_status"].startswith("differs from the 2018-09 release")
    assert any("differ from the 2018-09" in n for n in edited.notes) and edited.tags is None
    monkeypatch.setattr(L.movielens, "ML_SMALL_DIR", tmp_path)  # the shipped copy: refused
    with pytest.raises(DataError, match="the shipped copy was modified"):
        L.load_ml_latest_small()


def test_ml_latest_small_data_dir_without_ratings(tmp_path):
    with pytest.raises(DataError, match="holds no ratings.csv .* of ml-latest-small"):
        load_dataset("ml_latest_small", tmp_path)


# --------------------------------------------------------------------------- Amazon 2014 Musical Instruments
def test_amazon_instruments_shipped(shared_data):
    raw = load_dataset("amazon_instruments")
    r = raw.interactions
    assert (len(r), r["user_id"].nunique(), r["item_id"].nunique()) == (10_261, 1_429, 900)
    assert round(float((r["rating"] > 3).mean()), 3) == 0.879
    assert r["review_text"].nunique() == 10_255
    assert r.iloc[0]["summary"] == "good" and r.iloc[0]["timestamp"] == 1393545600
    assert (raw.items["title"] == "").all()  # no metadata: headline fallback later
    assert raw.source["files"][0]["sha256"] == dl.sha256_file(
        shared_data / "amazon_musical_instruments_2014_5core" / "Musical_instruments_reviews.csv.gz"
    )
    assert "SIGIR 2015" in raw.source["citation"] and "WWW 2016" in raw.source["citation"]
    from rrlib.data import processing as P

    ordered = P.order_interactions(r, "file")
    assert int((ordered.groupby("user_id").tail(1)["rating"] <= 3).sum()) == 209


def test_amazon_instruments_from_the_2014_json(tmp_path):
    lines = [_amazon_line("u1", "A", 5, 100, "great strings", "Nice"), _amazon_line("u1", "B", 2, 200, "hums")]
    (tmp_path / "reviews_Musical_Instruments_5.json.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    raw = load_dataset("amazon_instruments", tmp_path)
    assert raw.interactions["item_id"].tolist() == ["A", "B"] and raw.name == "amazon_instruments"


# --------------------------------------------------------------------------- Amazon 2018, any category
def _category_file(folder, name, n=3):
    lines = [_amazon_line(f"u{k}", f"P{k}", 4, 100 + k, "ok") for k in range(n)]
    (folder / name).write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


def test_amazon2018_any_category_5core(tmp_path):
    _category_file(tmp_path, "Musical_Instruments_5.json.gz")
    raw = load_dataset("amazon2018", tmp_path)  # category from the single file
    assert raw.source["category"] == "Musical_Instruments" and len(raw.interactions) == 3
    assert any("official 5-core" in n for n in raw.notes)
    assert (
        load_dataset("amazon2018", tmp_path, amazon_category="Musical_Instruments").source["category"]
        == "Musical_Instruments"
    )
    _category_file(tmp_path, "Video_Games_5.json.gz")
    with pytest.raises(
        DataError,
        match=r"holds 2 review categories \(\['Musical_Instruments', 'Video_Games'\]\)"
        r".*Set AMAZON_CATEGORY",
    ):
        load_dataset("amazon2018", tmp_path)
    assert load_dataset("amazon2018", tmp_path, amazon_category="Video_Games").source["category"] == "Video_Games"


def test_amazon2018_unknown_category_offline(tmp_path):
    with pytest.raises(DataError, match="'Musical_Instrument' not found .* not one of the published categories"):
        load_dataset("amazon2018", tmp_path, tmp_path / "cache", amazon_category="Musical_Instrument")
    with pytest.raises(ValueError, match="AMAZON_CATEGORY='Books' applies to DATASET=amazon2018 only"):
        load_dataset("beauty", tmp_path, amazon_category="Books")


def test_beauty_and_fashion_accept_their_5core_files(tmp_path):
    _category_file(tmp_path, "AMAZON_FASHION_5.json.gz")
    shutil.copy(L.EMBEDDED_BEAUTY, tmp_path)
    assert len(load_dataset("beauty", tmp_path).interactions) == 5269
    raw = load_dataset("fashion", tmp_path)
    assert len(raw.interactions) == 3 and any("the paper used the full AMAZON_FASHION" in n for n in raw.notes)


def test_domains_of_the_new_datasets():
    from rrlib.data import domain_of

    assert domain_of({"DATASET": "ml_latest_small"}) == "movies"
    assert domain_of({"DATASET": "amazon_instruments"}) == "instruments"
    assert domain_of({"DATASET": "amazon2018", "AMAZON_CATEGORY": "Musical_Instruments"}) == "instruments"
    assert domain_of({"DATASET": "amazon2018", "AMAZON_CATEGORY": "Toys_and_Games", "DOMAIN": "beauty"}) == "beauty"
    assert domain_of({"DATASET": "amazon2018", "AMAZON_CATEGORY": "Books"}) == "books"  # EXP3RT's Amazon-Book
    with pytest.raises(DataError, match="AMAZON_CATEGORY='Toys_and_Games' implies no domain"):
        domain_of({"DATASET": "amazon2018", "AMAZON_CATEGORY": "Toys_and_Games"})


# --------------------------------------------------------------------------- the release's ML-1M summaries
def test_release_ml1m_summaries_cover_ml_latest_small(ml_small):
    from rrlib.enrich import import_coverage, import_fallbacks, load_import, resolve_import

    path = resolve_import("release:ml1m_summaries")
    assert path == release_files()["ml1m_summaries"] and (path.parent.parent / "LICENSE").is_file()
    summaries = load_import(path, "item")
    assert len(summaries) == 3883 and summaries["2"].startswith("Jumanji (1995) is")  # outer quotes dropped
    r = ml_small.interactions
    assert round(float(r["item_id"].isin(summaries).mean()), 2) == 0.58  # of the ratings
    cov = import_coverage(ml_small.items["item_id"], summaries)
    assert (cov["covered"], cov["needed"]) == (2949, 9742)
    rest = import_fallbacks(
        ml_small.items["item_id"], summaries, dict(zip(ml_small.items["item_id"], ml_small.items["title"])), show=3
    )
    assert rest["n"] == 9742 - 2949 and len(rest["first"]) == 3 and rest["first"][0]["title"]
    with pytest.raises(FileNotFoundError, match="release:nope"):
        resolve_import("release:nope")
