"""The shared value checks of the readers (rrlib/data/loaders/values.py) on small known inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rrlib.config.params import validate
from rrlib.data import DataError
from rrlib.data.loaders import values as V
from rrlib.errors import ParamError

ROWS = V.Rows.numbered("t.csv", 10, first_line=2)


@pytest.mark.parametrize(
    "column,expected,fmt",
    [
        (["1472688000", "1472688001"], [1472688000, 1472688001], "unix seconds"),
        ([1472688000123456, 1472688001999999], [1472688000, 1472688001], "unix microseconds"),
        ([1472688000 * 10**9 + 5], [1472688000], "unix nanoseconds"),
        ([1472688000.9, 1472688001.2], [1472688000, 1472688001], "unix seconds"),
        (["2016-09-01", "2016/09/01 00:00:30"], None, None),  # separators differ: still year first, one family
        (["2016-09-01 00:00:30", "2016-09-01T01:00"], [1472688030, 1472691600], "ISO 8601"),
        (["1 September 2016", "Sep 2, 2016"], [1472688000, 1472774400], "dates with month names"),
        (["01.09.2016", "13.09.2016"], [1472688000, 1473724800], "day-first"),
    ],
)
def test_timestamp_formats(column, expected, fmt):
    if expected is None:
        secs, _ = V.parse_timestamps(column, ROWS)
        assert secs.tolist() == [1472688000, 1472688030]
        return
    secs, found = V.parse_timestamps(column, ROWS)
    assert secs.tolist() == expected and found.startswith(fmt)


@pytest.mark.parametrize(
    "column,match",
    [
        (["2016-09-01", ""], r"t\.csv, line 3: column 'timestamp' is empty"),
        (["2016-02-30"], r"line 2: .* '2016-02-30', which is not a valid date"),
        (["1969-12-31"], r"before 1970"),
        (
            ["2016-09-01", "01/09/2016", "2016-09-03"],
            r"line 3: .* '01/09/2016' \(day/month/year dates\), but most rows "
            r"are ISO 8601",
        ),
        ([True, False], r"true/false"),
        ([float("inf")], r"must be a finite unix timestamp"),
    ],
)
def test_timestamp_refusals(column, match):
    with pytest.raises(DataError, match=match):
        V.parse_timestamps(pd.Series(column), ROWS)


def test_date_order_parameter_is_checked():
    with pytest.raises(ParamError, match="DATE_ORDER='ymd' is not one of"):
        V.parse_timestamps(["2016-09-01"], ROWS, date_order="ymd")


def test_parquet_rows_are_named_by_row_number():
    with pytest.raises(DataError, match=r"x\.parquet, row 2: column 'rating' holds 9"):
        V.check_ratings(pd.Series([4, 9]), V.Rows("x.parquet"), V.GENERIC_SCALE)


def test_rating_scale_steps_and_parameter():
    half = V.RatingScale(0.5, 5.0, 0.5, "half-star")
    assert V.check_ratings(["0.5", "4.5"], ROWS, half).tolist() == [0.5, 4.5]
    with pytest.raises(DataError, match=r"line 3: column 'rating' holds '4\.25', not on the half-star scale"):
        V.check_ratings(["0.5", "4.25"], ROWS, half)
    assert V.rating_scale_param([], half) is half
    assert V.rating_scale_param([0, 10], half).high == 10.0
    for bad in ([1], [5, 1], ["a", 2], [1, float("nan")]):
        with pytest.raises(ParamError, match="RATING_SCALE="):
            V.rating_scale_param(bad, half)
    assert validate({"RATING_SCALE": [1, 5]})["RATING_SCALE"] == [1.0, 5.0]
    with pytest.raises(ValueError, match="RATING_SCALE must be a list of numbers"):
        validate({"RATING_SCALE": ["1", "5"]})


def test_csv_lines_blank_lines_bom_and_crlf():
    text = '\ufeffa,b\r\n1,"x\r\ny"\r\n\r\n2,z\r\n'
    df, rows = V.read_csv_text(text, "t.csv")
    assert df.columns.tolist() == ["a", "b"] and df["b"].tolist() == ["x\r\ny", "z"]
    assert rows.lines.tolist() == [2, 5]
    data = "a,b\n1,é\n".encode("utf-8-sig")
    assert V.decode(data, "t.csv")[0] == "a,b\n1,é\n"
    assert V.decode("é".encode("latin-1"), "t.csv", "auto") == ("é", "latin-1")


def test_duplicate_header_is_refused():
    with pytest.raises(DataError, match=r"line 1: column name\(s\) \['a'\] appear more than once"):
        V.read_csv_text("a,a\n1,2\n", "t.csv")


def test_mixed_units_names_the_minority_even_when_first():
    column = np.array([1472688000000] + [1472688000 + k for k in range(5)])
    with pytest.raises(DataError, match=r"line 2: .* unix milliseconds, but the column mixes units \(5 seconds"):
        V.parse_timestamps(column, ROWS)
