"""Every kind of bad input fails with a DataError naming the file, line or column and the fix."""
from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from rrlib.artifacts import RunPaths
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
        tmp_path / "interactions.csv", index=False)
    with pytest.raises(DataError, match=r"interactions\.csv: column\(s\) \['rating'\] missing \(found "
                                        r"\['user', 'item', 'stars', 'timestamp'\]\)"):
        load_dataset("generic", tmp_path)


def test_generic_header_only(tmp_path):
    (tmp_path / "interactions.csv").write_text("user,item,rating,timestamp\n")
    with pytest.raises(DataError, match="has a header but no rows"):
        load_dataset("generic", tmp_path)


def test_generic_bad_timestamp_names_row(tmp_path):
    pd.DataFrame({"user": ["a", "a"], "item": ["x", "y"], "rating": [5, 4],
                  "timestamp": ["2019-01-01", "yesterday"]}).to_csv(tmp_path / "interactions.csv", index=False)
    with pytest.raises(DataError, match=r"interactions\.csv, line 3: column 'timestamp' .* got 'yesterday'"):
        load_dataset("generic", tmp_path)


def test_generic_items_without_item_column(tmp_path):
    pd.DataFrame({"user": ["a"], "item": ["x"], "rating": [5], "timestamp": [1]}).to_csv(
        tmp_path / "interactions.csv", index=False)
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
    with pytest.raises(DataError, match=r"KCORE=5 leaves no users in toy: the most active user has 2 "
                                        r"interaction\(s\).* Lower KCORE"):
        P.user_kcore(inter, 5, "toy")


def test_kcore_that_leaves_no_users_through_prepare(tmp_path):
    with pytest.raises(DataError, match="KCORE=50 leaves no users"):
        prepare({"KCORE": 50, "CACHE_DIR": str(tmp_path / "cache")}, RunPaths.of(tmp_path / "run"),
                progress=False)


def test_generic_domain_must_be_given():
    with pytest.raises(DataError, match="set DOMAIN to movies, beauty, fashion or instruments"):
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
