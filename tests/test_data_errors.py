"""Every kind of bad input fails with a DataError naming the file, line or column and the fix."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest
from audit_example import EMBEDDED_BEAUTY

from rrlib.config.paths import RunPaths
from rrlib.data import DataError, domain_of, load_dataset, prepare
from rrlib.data import download as dl
from rrlib.data import loaders as L
from rrlib.data import processing as P


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_unknown_dataset_name():
    with pytest.raises(DataError, match=r"DATASET='movielens' is unknown; choose one of .*ml1m"):
        load_dataset("movielens")


def test_data_dir_that_does_not_exist(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=rf"{missing} does not exist\. Point DATA_DIR"):
        load_dataset("ml1m", missing)


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DataError, match="is a file; DATA_DIR must be the folder"):
        load_dataset("ml1m", tmp_path / "f.txt")


def test_offline_ml1m_says_which_files_where(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "is_online", lambda url, timeout=3.0: False)
    with pytest.raises(DataError) as e:
        load_dataset("ml1m", tmp_path, tmp_path / "cache", allow_download=True)
    msg = str(e.value)
    assert "ratings.dat, movies.dat and users.dat" in msg and str(tmp_path) in msg
    assert "ml-1m.zip" in msg and "cannot be reached" in msg


def test_offline_amazon_says_which_files_where(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("fashion", "", tmp_path / "cache", allow_download=False)
    msg = str(e.value)
    assert "AMAZON_FASHION.json.gz" in msg and "meta_AMAZON_FASHION.json.gz" in msg
    assert str(tmp_path / "cache" / "downloads" / "amazon") in msg and "ALLOW_DOWNLOAD=false" in msg


def test_generic_without_data_dir():
    with pytest.raises(DataError, match="DATASET=generic needs DATA_DIR"):
        load_dataset("generic")


def test_ml1m_malformed_line_names_file_and_line(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::10::5::100\n1::11::4\n1::12::3::300\n")
    (tmp_path / "movies.dat").write_text("10::A (2000)::Drama\n11::B (2000)::Drama\n12::C (2000)::Drama\n")
    with pytest.raises(DataError, match=r"ratings\.dat, line 2: expected 4 fields .* got 3: '1::11::4'"):
        L.load_movielens(tmp_path)


def test_ml1m_non_numeric_rating_names_column(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::10::5::100\n1::10::five::200\n")
    with pytest.raises(DataError, match=r"ratings\.dat, line 2: column 'rating' must be a number, got 'five'"):
        L.read_ml1m_ratings(tmp_path / "ratings.dat")


def test_ml1m_missing_movies_file(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::10::5::100\n")
    with pytest.raises(DataError, match=r"movies\.dat does not exist .* Put movies\.dat from ml-1m\.zip there"):
        L.load_movielens(tmp_path)


def test_ml1m_ratings_of_unknown_movie(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::10::5::100\n1::99::5::100\n")
    (tmp_path / "movies.dat").write_text("10::A (2000)::Drama\n")
    with pytest.raises(DataError, match=r"1 movie id\(s\) are not in .*movies\.dat .*same ml-1m\.zip"):
        L.load_movielens(tmp_path)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file(tmp_path, content):
    (tmp_path / "ratings.dat").write_bytes(content)
    with pytest.raises(DataError, match=r"ratings\.dat (is empty|has no content)"):
        L.read_ml1m_ratings(tmp_path / "ratings.dat")


def test_truncated_gzip(tmp_path):
    data = gzip.compress(b"1::10::5::100\n" * 1000)
    (tmp_path / "ratings.dat.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="damaged or truncated"):
        L.read_ml1m_ratings(tmp_path / "ratings.dat.gz")


def test_amazon_malformed_json_line(tmp_path):
    good = json.dumps({"reviewerID": "u", "asin": "a", "overall": 5, "unixReviewTime": 1})
    (tmp_path / "r.json").write_text(good + "\n" + '{"reviewerID": "u", "asin": \n')
    with pytest.raises(DataError, match=r"r\.json, line 2: not valid JSON"):
        L.read_amazon_reviews(tmp_path / "r.json")


def test_amazon_missing_field_names_line_and_field(tmp_path):
    good = json.dumps({"reviewerID": "u", "asin": "a", "overall": 5, "unixReviewTime": 1})
    bad = json.dumps({"reviewerID": "u", "asin": "a", "unixReviewTime": 1})
    (tmp_path / "r.json").write_text(good + "\n" + good + "\n" + bad + "\n")
    with pytest.raises(DataError, match=r"r\.json, line 3: field\(s\) \['overall'\] missing"):
        L.read_amazon_reviews(tmp_path / "r.json")


def test_generic_missing_column(tmp_path):
    pd.DataFrame({"user": ["a"], "item": ["x"], "stars": [5], "timestamp": [1]}).to_csv(
        tmp_path / "interactions.csv", index=False
    )
    with pytest.raises(
        DataError,
        match=r"interactions\.csv: column\(s\) \['rating'\] missing \(found "
        r"\['user', 'item', 'stars', 'timestamp'\]\)",
    ):
        load_dataset("generic", tmp_path)


def test_generic_header_only(tmp_path):
    (tmp_path / "interactions.csv").write_text("user,item,rating,timestamp\n")
    with pytest.raises(DataError, match="has a header but no rows"):
        load_dataset("generic", tmp_path)


def test_generic_bad_timestamp_names_row(tmp_path):
    pd.DataFrame(
        {"user": ["a", "a"], "item": ["x", "y"], "rating": [5, 4], "timestamp": ["2019-01-01", "yesterday"]}
    ).to_csv(tmp_path / "interactions.csv", index=False)
    with pytest.raises(DataError, match=r"interactions\.csv, line 3: column 'timestamp' .* got 'yesterday'"):
        load_dataset("generic", tmp_path)


def test_generic_items_without_item_column(tmp_path):
    pd.DataFrame({"user": ["a"], "item": ["x"], "rating": [5], "timestamp": [1]}).to_csv(
        tmp_path / "interactions.csv", index=False
    )
    pd.DataFrame({"id": ["x"], "title": ["X"]}).to_csv(tmp_path / "items.csv", index=False)
    with pytest.raises(DataError, match=r"items\.csv: column\(s\) \['item'\] missing"):
        load_dataset("generic", tmp_path)


def test_release_window_for_unknown_user(tmp_path, shared_data):
    import shutil

    beauty = tmp_path / "beauty"
    shutil.copytree(shared_data / "reasoningrec_release" / "beauty", beauty)
    beauty.chmod(0o755)
    for f in beauty.iterdir():
        f.chmod(0o644)
    test = json.loads((beauty / "user_test.json").read_text())
    test["99999"] = ["1", "2"]
    (beauty / "user_test.json").write_text(json.dumps(test))
    with pytest.raises(DataError, match=r"user_test\.json: user id\(s\) \['99999'\] have no rows"):
        L.load_release(tmp_path)


def test_kcore_that_leaves_no_users():
    inter = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]})
    with pytest.raises(
        DataError,
        match=r"KCORE=5 leaves no users in toy: the most active user has 2 "
        r"interaction\(s\).* Lower KCORE",
    ):
        P.user_kcore(inter, 5, "toy")


def test_kcore_that_leaves_no_users_through_prepare(tmp_path):
    with pytest.raises(DataError, match="KCORE=50 leaves no users"):
        prepare(
            EMBEDDED_BEAUTY | {"KCORE": 50, "CACHE_DIR": str(tmp_path / "cache")},
            RunPaths.of(tmp_path / "run"),
            progress=False,
        )


def test_generic_domain_must_be_given():
    with pytest.raises(DataError, match="set DOMAIN to movies, beauty, fashion, instruments or books"):
        domain_of({"DATASET": "generic", "DOMAIN": ""})
    assert domain_of({"DATASET": "generic", "DOMAIN": "movies"}) == "movies"
    assert domain_of({"DATASET": "ml1m"}) == "movies"
    assert domain_of({"DATASET": "release_beauty", "DOMAIN": ""}) == "beauty"


def test_embedded_copy_tampering_is_caught(tmp_path, monkeypatch):
    fake = tmp_path / "All_Beauty_5.json.gz"
    fake.write_bytes(gzip.compress(b'{"reviewerID": "u", "asin": "a", "overall": 5, "unixReviewTime": 1}\n'))
    monkeypatch.setattr(L.amazon, "EMBEDDED_BEAUTY", fake)
    with pytest.raises(DataError, match="embedded copy was modified"):
        L.load_embedded_beauty()


def test_truncated_gzip_json_lines(tmp_path):
    line = json.dumps({"reviewerID": "u", "asin": "a", "overall": 5, "unixReviewTime": 1}) + "\n"
    data = gzip.compress((line * 2000).encode())
    (tmp_path / "r.json.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"r\.json\.gz: cannot be read after line \d+ .*damaged or truncated"):
        L.read_amazon_reviews(tmp_path / "r.json.gz")


def test_amazon_file_with_only_blank_lines(tmp_path):
    (tmp_path / "r.json").write_text("\n\n")
    with pytest.raises(DataError, match=r"r\.json holds no reviews"):
        L.read_amazon_reviews(tmp_path / "r.json")


# --------------------------------------------------------------------------- issue 11: the data probes
# Each probe passed silently (or blamed the wrong line) before the checks in rrlib/data/loaders/values.py.
def _interactions(tmp_path, timestamps, ratings=None, name="interactions.csv", **extra):
    n = len(timestamps)
    df = pd.DataFrame(
        {
            "user": ["u"] * n,
            "item": [f"i{k}" for k in range(n)],
            "rating": ratings if ratings is not None else [4] * n,
            "timestamp": timestamps,
            **extra,
        }
    )
    if name.endswith(".parquet"):
        df.to_parquet(tmp_path / name)
    else:
        df.to_csv(tmp_path / name, index=False)
    return tmp_path


def test_probe_unix_seconds_mixed_with_milliseconds_is_refused(tmp_path):
    ts = [1472688000 + 60 * k for k in range(20)]
    ts[6] = 1472688000000  # milliseconds: would sort after every other row
    with pytest.raises(
        DataError,
        match=r"interactions\.csv, line 8: column 'timestamp' holds '1472688000000', which "
        r"reads as unix milliseconds, but the column mixes units \(19 seconds, "
        r"1 milliseconds",
    ):
        load_dataset("generic", _interactions(tmp_path, ts))


def test_probe_a_column_all_in_milliseconds_is_converted(tmp_path):
    raw = load_dataset("generic", _interactions(tmp_path, [1472688000123, 1472688060999]))
    assert raw.interactions["timestamp"].tolist() == [1472688000, 1472688060]
    assert raw.source["files"][0]["timestamp_format"].startswith("unix milliseconds")


def test_probe_day_first_dates_are_read_consistently(tmp_path):
    raw = load_dataset("generic", _interactions(tmp_path, ["03/04/2019", "13/04/2019"]))
    days = pd.to_datetime(raw.interactions["timestamp"], unit="s").dt.strftime("%Y-%m-%d").tolist()
    assert days == ["2019-04-03", "2019-04-13"]  # both day-first (13/04 settles the column)
    assert "day-first" in raw.source["files"][0]["timestamp_format"]


def test_probe_ambiguous_slash_dates_need_date_order(tmp_path):
    folder = _interactions(tmp_path, ["03/04/2019", "06/07/2019"])
    with pytest.raises(
        DataError,
        match=r"line 2: .* '03/04/2019', which could be day-first or month-first.*"
        r"Set DATE_ORDER: dmy",
    ):
        load_dataset("generic", folder)
    for order, first in (("dmy", "2019-04-03"), ("mdy", "2019-03-04")):
        raw = load_dataset("generic", folder, date_order=order)
        assert pd.to_datetime(raw.interactions["timestamp"].iloc[0], unit="s").strftime("%Y-%m-%d") == first


def test_probe_slash_dates_in_both_orders_are_refused(tmp_path):
    with pytest.raises(
        DataError,
        match=r"line 3: .* '13/04/2019', which can only be day-first, but .*line 4 holds "
        r"'04/13/2019', which can only be month-first",
    ):
        load_dataset("generic", _interactions(tmp_path, ["01/02/2019", "13/04/2019", "04/13/2019"]))


def test_probe_date_order_contradicted_by_the_data(tmp_path):
    with pytest.raises(
        DataError,
        match=r"line 3: .* '13/04/2019', which is not a valid date or time when read as "
        r"month-first",
    ):
        load_dataset("generic", _interactions(tmp_path, ["01/02/2019", "13/04/2019"]), date_order="mdy")


@pytest.mark.parametrize("value", ["1e30", "-5"])
def test_probe_out_of_range_timestamps_are_refused(tmp_path, value):
    with pytest.raises(DataError, match=rf"line 3: column 'timestamp' holds '{value}'"):
        load_dataset("generic", _interactions(tmp_path, ["1472688000", value]))


def test_probe_seconds_mixed_with_dates_blames_the_date_line(tmp_path):
    ts = [str(1472688000 + 86400 * k) for k in range(21)]
    ts[20] = "2016-09-21"  # row 21 = line 22 of the CSV
    with pytest.raises(
        DataError,
        match=r"interactions\.csv, line 22: column 'timestamp' holds '2016-09-21', one of "
        r"date strings, but most rows are numbers \(unix time\)",
    ):
        load_dataset("generic", _interactions(tmp_path, ts))


def test_probe_parquet_datetime64_is_converted_from_its_unit(tmp_path):
    stamps = pd.to_datetime(["2016-09-01 00:00:00", "2016-09-01 00:00:30"]).as_unit("us")
    raw = load_dataset("generic", _interactions(tmp_path, stamps, name="interactions.parquet"))
    assert raw.interactions["timestamp"].tolist() == [1472688000, 1472688030]
    assert raw.source["files"][0]["timestamp_format"].startswith("datetime64[us]")


def test_parquet_tz_aware_and_iso_offsets_become_utc(tmp_path):
    stamps = pd.to_datetime(["2016-09-01 02:00:00"]).tz_localize("Europe/Berlin")
    raw = load_dataset("generic", _interactions(tmp_path, stamps, name="interactions.parquet"))
    assert raw.interactions["timestamp"].tolist() == [1472688000]
    (tmp_path / "interactions.parquet").unlink()
    raw = load_dataset("generic", _interactions(tmp_path, ["2016-09-01T02:00:00+02:00", "2016-09-01T00:00:00Z"]))
    assert raw.interactions["timestamp"].tolist() == [1472688000, 1472688000]


def test_times_with_and_without_offsets_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"line 4: .* '2016-09-01T00:00:00Z', but most times are without a UTC offset"):
        load_dataset(
            "generic", _interactions(tmp_path, ["2016-09-01T00:00:00", "2016-09-01T01:00:00", "2016-09-01T00:00:00Z"])
        )


@pytest.mark.parametrize(
    "bad,match",
    [
        ("-3", r"line 3: column 'rating' holds '-3', outside the default generic scale \[1, 5\].*RATING_SCALE"),
        ("inf", r"line 3: column 'rating' must be a finite number, got 'inf'"),
        ("1e9", r"line 3: column 'rating' holds '1e9', outside the default generic scale \[1, 5\].*RATING_SCALE"),
        ("nan", r"line 3: column 'rating' must be a finite number, got 'nan'"),
    ],
)
def test_probe_bad_ratings_are_refused_with_their_line(tmp_path, bad, match):
    with pytest.raises(DataError, match=match):
        load_dataset("generic", _interactions(tmp_path, [1, 2], ratings=["4", bad]))


def test_rating_scale_parameter_widens_the_generic_scale(tmp_path):
    folder = _interactions(tmp_path, [1, 2], ratings=[7, 10])
    with pytest.raises(DataError, match=r"line 2: column 'rating' holds '7'"):
        load_dataset("generic", folder)
    assert load_dataset("generic", folder, rating_scale=[0, 10]).interactions["rating"].tolist() == [7.0, 10.0]
    with pytest.raises(ValueError, match=r"RATING_SCALE=\[5, 1\] must be \[lowest, highest\]"):
        load_dataset("generic", folder, rating_scale=[5, 1])


def test_known_scales_are_checked_on_the_paper_readers(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::10::5::100\n1::11::6::200\n")
    with pytest.raises(
        DataError,
        match=r"ratings\.dat, line 2: column 'rating' holds '6', outside the MovieLens-1M "
        r"scale \[1, 5\] in steps of 1",
    ):
        L.read_ml1m_ratings(tmp_path / "ratings.dat")
    lines = [json.dumps({"reviewerID": "u", "asin": "a", "overall": r, "unixReviewTime": 1}) for r in (5, 4.5)]
    (tmp_path / "r.json").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"r\.json, line 2: column 'overall' holds 4\.5, not on the Amazon star scale"):
        L.read_amazon_reviews(tmp_path / "r.json")


def test_probe_items_missing_from_items_csv_are_noted(tmp_path):
    folder = _interactions(tmp_path, [1, 2, 3, 4])
    pd.DataFrame({"item": ["i0", "i2"], "title": ["Zero", "Two"]}).to_csv(folder / "items.csv", index=False)
    raw = load_dataset("generic", folder)
    assert any("items.csv lacks 2 of the 4 item ids of interactions.csv (first: ['i1', 'i3'])" in n for n in raw.notes)
    assert raw.items.set_index("item_id").loc["i1", "title"] == ""


def test_probe_rating_errors_name_the_physical_line(tmp_path):
    reviews = [f"line one\nline two\nline three of review {k}" if k % 2 == 0 else "short" for k in range(8)]
    ratings = ["4"] * 8
    ratings[7] = "five"  # data row 8; rows 1, 3, 5, 7 span three lines each -> physical line 17
    _interactions(tmp_path, list(range(1, 9)), ratings=ratings, review=reviews)
    assert (tmp_path / "interactions.csv").read_text().splitlines()[16].startswith("u,i7,five")
    with pytest.raises(DataError, match=r"interactions\.csv, line 17: column 'rating' must be a number, got 'five'"):
        load_dataset("generic", tmp_path)


def test_probe_non_utf8_bytes_name_the_line_and_offer_encoding(tmp_path):
    text = "user,item,rating,timestamp,review\nu,i0,4,1,fine\nu,i1,5,2,caf\xe9 cr\xe8me\n"
    (tmp_path / "interactions.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(
        DataError,
        match=r"interactions\.csv, line 3, column 13: byte 0xe9 is not valid utf-8 .*set "
        r"ENCODING to the file's encoding .* or ENCODING: auto",
    ):
        load_dataset("generic", tmp_path)
    for enc in ("latin-1", "auto"):
        raw = load_dataset("generic", tmp_path, encoding=enc)
        assert raw.interactions["review_text"].iloc[1] == "café crème"
        assert raw.source["files"][0]["encoding"] in ("iso8859-1", "latin-1")
    with pytest.raises(ValueError, match="ENCODING='klingon' is not a text encoding"):
        load_dataset("generic", tmp_path, encoding="klingon")


def test_csv_with_a_broken_row_names_its_line(tmp_path):
    (tmp_path / "interactions.csv").write_text('user,item,rating,timestamp\nu,a,4,1\nu,"b\nc",4\n')
    with pytest.raises(DataError, match=r"interactions\.csv, line 3: expected 4 fields .* got 3"):
        load_dataset("generic", tmp_path)
    (tmp_path / "interactions.csv").write_text('user,item,rating,timestamp\nu,a,4,1\nu,"b,4,2\n')
    with pytest.raises(DataError, match=r"interactions\.csv, line 3: not valid CSV"):
        load_dataset("generic", tmp_path)


def test_new_data_parameters_reach_the_loader(tmp_path):
    """ENCODING, DATE_ORDER and RATING_SCALE from the parameters (notebook 01 / presets)."""
    from rrlib.data import load_raw

    text = "user,item,rating,timestamp\nu,i0,8,03/04/2019\nu,i1,9.5,06/07/2019\n"
    (tmp_path / "interactions.csv").write_bytes(text.encode("cp1252"))
    raw = load_raw(
        {
            "DATASET": "generic",
            "DATA_DIR": str(tmp_path),
            "DOMAIN": "movies",
            "ENCODING": "cp1252",
            "DATE_ORDER": "dmy",
            "RATING_SCALE": [0, 10],
        }
    )
    assert raw.interactions["rating"].tolist() == [8.0, 9.5]
    assert pd.to_datetime(raw.interactions["timestamp"].iloc[0], unit="s").month == 4


def test_amazon_json_lines_with_non_utf8_bytes_are_counted(tmp_path):
    good = json.dumps({"reviewerID": "u", "asin": "a", "overall": 5, "unixReviewTime": 1, "reviewText": "ok"})
    bad = json.dumps({"reviewerID": "u", "asin": "b", "overall": 4, "unixReviewTime": 2, "reviewText": "caf#"})
    (tmp_path / "r.json").write_bytes(good.encode() + b"\n" + bad.encode().replace(b"#", b"\xe9") + b"\n")
    raw = L.load_amazon(tmp_path / "r.json")
    assert raw.interactions["review_text"].tolist() == ["ok", "caf\ufffd"]
    assert any("1 line(s) hold bytes that are not UTF-8 (first: line 2)" in n for n in raw.notes)
