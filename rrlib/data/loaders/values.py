"""Checked reading of what every loader shares: text encodings, CSV rows with their physical
line numbers, timestamps and ratings.

Every check names the file and the line (CSV, JSON lines, ``.dat``) or row (Parquet) of the
first offending value, says how many values are affected and how to fix it.

Timestamps (:func:`parse_timestamps`) are detected per column and converted to unix seconds:

* numbers: unix seconds, milliseconds, microseconds or nanoseconds, told apart by size
  (seconds < 1e11, i.e. up to year 5138; milliseconds < 1e14; microseconds < 1e17;
  nanoseconds up to the int64 limit). One unit per column: a column mixing units is refused,
  as are negative, non-finite and larger values;
* ``datetime64`` columns (Parquet): converted from their own unit; time zones to UTC;
* strings: ISO 8601 (``2019-03-01``, ``2019-03-01T12:30:00``, ``2019-03-01 12:30:00+02:00``,
  ``...Z``; also ``2019/03/01``), day/month/year with ``/``, ``.`` or ``-`` (``03/04/2019``) whose
  order comes from ``DATE_ORDER`` (``dmy``, ``mdy``) or, with ``auto``, from the column itself:
  a value such as ``13/04/2019`` proves day-first; a column where every value reads both ways is
  refused, and so is one with day-first and month-first proof; dates with month names
  (``1 March 2019``, ``Mar 1, 2019``). A column mixing these families, numbers and strings,
  or times with and without a UTC offset is refused. Times without an offset are read as UTC.
  Dates before 1970 are refused.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import ParamError
from ..errors import DataError

ENCODING_HINT = (
    "set ENCODING to the file's encoding (e.g. latin-1 or cp1252), or ENCODING: auto "
    "(UTF-8 when the bytes are valid UTF-8, else latin-1)"
)


# ---------------------------------------------------------------------------------------
# where a row sits in its file
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rows:
    """Locations of a table's rows for messages: the physical line (1-based) where each row
    starts in its file, or None for formats without lines (Parquet: ``row N``)."""

    path: Path
    lines: np.ndarray | None = None

    def at(self, i: int) -> str:
        if self.lines is None:
            return f"{self.path}, row {int(i) + 1}"
        return f"{self.path}, line {int(self.lines[int(i)])}"

    @classmethod
    def numbered(cls, path: Path, n: int, first_line: int = 1) -> "Rows":
        """Rows that are consecutive lines (``.dat`` files: one row per line, no header)."""
        return cls(Path(path), np.arange(first_line, first_line + n, dtype="int64"))


def _show(value: Any) -> str:
    """A value as the file holds it, for messages (numpy scalars as plain numbers)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _n(k: int, what: str) -> str:
    return f"{k:,} {what}" + ("" if k == 1 else "s")


# ---------------------------------------------------------------------------------------
# encodings
# ---------------------------------------------------------------------------------------
def check_encoding(encoding: str) -> str:
    """The codec name for ENCODING (``auto`` or any name Python knows)."""
    if encoding == "auto":
        return encoding
    try:
        return codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise ParamError(
            f"ENCODING={encoding!r} is not a text encoding Python knows; use utf-8 (default), "
            f"latin-1, cp1252, ... or auto (UTF-8 when valid, else latin-1)."
        ) from None


def decode(data: bytes, path: Path, encoding: str = "utf-8") -> tuple[str, str]:
    """Text of ``data`` and the encoding used. ``auto``: UTF-8 when valid, else latin-1 (the
    original MovieLens encoding). A UTF-8 byte-order mark is dropped. Undecodable bytes raise
    a DataError naming the line and column."""
    encoding = check_encoding(encoding)
    if encoding == "auto":
        try:
            return data.decode("utf-8-sig"), "utf-8"
        except UnicodeDecodeError:
            return data.decode("latin-1"), "latin-1"
    codec = "utf-8-sig" if encoding == "utf-8" else encoding
    try:
        return data.decode(codec), encoding
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        start = data.rfind(b"\n", 0, e.start) + 1
        end = data.find(b"\n", e.start)
        snippet = data[start : end if end >= 0 else len(data)][:160].decode(codec, errors="replace").strip()
        raise DataError(
            f"{path}, line {line}, column {e.start - start + 1}: byte 0x{data[e.start]:02x} is not "
            f"valid {encoding} ({e.reason}) in {snippet!r}. The file is not {encoding}: "
            f"{ENCODING_HINT}."
        ) from None


# ---------------------------------------------------------------------------------------
# CSV with physical line numbers
# ---------------------------------------------------------------------------------------
#: other delimiters a "CSV" file may use: (character, its name in messages)
_OTHER_DELIMITERS = ((";", "';' (semicolon)"), ("\t", "tab"), ("|", "'|' (pipe)"))


def _other_delimiter(header: list[str]) -> tuple[str, str] | None:
    """The delimiter a one-column header is really split by (None: no sign of one)."""
    counts = [(header[0].count(ch), ch, name) for ch, name in _OTHER_DELIMITERS] if len(header) == 1 else []
    best = max(counts, default=(0, "", ""))
    return (best[1], best[2]) if best[0] else None


def read_csv_text(text: str, path: Path) -> tuple[pd.DataFrame, Rows]:
    """A comma-separated table with a header row, every field a string, and where each row
    starts (its physical line: quoted fields may span lines). Blank lines are skipped; a row
    with the wrong number of fields or broken quoting is an error naming its line. A one-column
    header split by ``;``, a tab or ``|`` is refused as a file with another delimiter, and a row
    equal to the header (two files joined) as a repeated header row, with its line and count."""
    path = Path(path)
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # long reviews
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    starts: list[int] = []
    repeated: list[int] = []  # lines of rows that repeat the header
    last = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(
                f"{path}, line {last + 1}: not valid CSV ({e}). A field holding commas, quotes or "
                f'line breaks must be in double quotes, with inner quotes doubled ("").'
            ) from None
        start, last = last + 1, reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if header is None:
            header = [h.strip() for h in record]
            dup = sorted({h for h in header if header.count(h) > 1})
            if dup:
                raise DataError(f"{path}, line {start}: column name(s) {dup} appear more than once in the header.")
            other = _other_delimiter(header)
            if other is not None:
                raise DataError(
                    f"{path}, line {start}: the header is one column, {header[0][:100]!r}, holding the "
                    f"delimiter {other[1]}: the file looks {other[1]}-separated, but the reader needs "
                    f"comma-separated values. Save it with commas (e.g. pandas: pd.read_csv(path, "
                    f"sep={other[0]!r}).to_csv(path, index=False)), or give a Parquet file."
                )
            continue
        if [f.strip() for f in record] == header:
            repeated.append(start)
            continue
        if len(record) != len(header):
            raise DataError(
                f"{path}, line {start}: expected {len(header)} fields ({','.join(header)}), got "
                f"{len(record)}: {','.join(record)[:120]!r}. A field holding a comma or a line break "
                f"must be in double quotes."
            )
        rows.append(record)
        starts.append(start)
    if header is None:
        raise DataError(f"{path} has no header row. The first line must name the columns.")
    if repeated:
        raise DataError(
            f"{path}, line {repeated[0]}: this row repeats the header row ({','.join(header)[:120]}), "
            f"{len(repeated):,} time(s) in the file (e.g. two files joined together). Delete the "
            f"repeated header line(s), keeping the first line only."
        )
    df = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header, dtype=object)
    return df, Rows(path, np.asarray(starts, dtype="int64"))


# ---------------------------------------------------------------------------------------
# timestamps
# ---------------------------------------------------------------------------------------
DATE_ORDERS = ("auto", "dmy", "mdy")
ACCEPTED_TIMESTAMPS = (
    "unix seconds (or milliseconds, microseconds, nanoseconds: one unit per column), ISO 8601 "
    "(2019-03-01, 2019-03-01T12:30:00, optional Z or +02:00), DD/MM/YYYY or MM/DD/YYYY "
    "(see DATE_ORDER), or dates with month names (1 March 2019)"
)
# size classes of numeric timestamps: (name, divisor to seconds, exclusive upper bound)
_UNITS = (
    ("seconds", 1, 1e11),
    ("milliseconds", 10**3, 1e14),
    ("microseconds", 10**6, 1e17),
    ("nanoseconds", 10**9, float(np.iinfo("int64").max)),
)
_NUMBER = re.compile(r"^[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)$", re.IGNORECASE)
_TIME = r"(?:[T ]+(?P<hh>\d{1,2}):(?P<mi>\d{2})(?::(?P<ss>\d{2})(?:[.,](?P<frac>\d+))?)?)?"
_TZ = r"\s*(?P<tz>Z|UTC|[+-]\d{2}(?::?\d{2})?)?"
_YMD = re.compile(r"^(?P<y>\d{4})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})" + _TIME + _TZ + "$")
_XYY = re.compile(r"^(?P<a>\d{1,2})(?P<sep>[-/.])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4})" + _TIME + _TZ + "$")
_NAMED = re.compile(r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?(?:\b|$)", re.IGNORECASE)
_YEAR = re.compile(r"\b\d{4}\b")
_FAMILIES = {"ymd": "ISO 8601 dates (year first)", "xyy": "day/month/year dates", "named": "dates with month names"}


def check_date_order(order: str) -> str:
    if order not in DATE_ORDERS:
        raise ParamError(
            f"DATE_ORDER={order!r} is not one of {list(DATE_ORDERS)} (auto: from the data, refusing "
            f"ambiguous columns; dmy: 03/04/2019 is 3 April; mdy: it is March 4)."
        )
    return order


def _minority(kinds: np.ndarray) -> tuple[int, str, str]:
    """(first row of a kind other than the most common one, its kind, the most common kind)."""
    names, counts = np.unique(kinds, return_counts=True)
    major = names[np.argmax(counts)]
    i = int(np.flatnonzero(kinds != major)[0])
    return i, str(kinds[i]), str(major)


def _counts(kinds: np.ndarray) -> str:
    names, counts = np.unique(kinds, return_counts=True)
    return ", ".join(f"{c:,} {n}" for n, c in sorted(zip(names, counts), key=lambda x: -x[1]))


def _from_numbers(values: pd.Series, original: pd.Series, rows: Rows, column: str) -> tuple[np.ndarray, str]:
    num = pd.to_numeric(values, errors="coerce")
    f = num.to_numpy(dtype=float, na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(f))
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{rows.at(i)}: column '{column}' must be a finite unix timestamp, got {_show(original.iloc[i])} "
            f"({_n(len(bad), 'such value')}). Fix or delete that row."
        )
    neg = np.flatnonzero(f < 0)
    if len(neg):
        i = int(neg[0])
        raise DataError(
            f"{rows.at(i)}: column '{column}' holds {_show(original.iloc[i])}, a time before 1970-01-01 "
            f"({_n(len(neg), 'negative value')}); rating timestamps are unix times after 1970."
        )
    bounds = np.array([u[2] for u in _UNITS])
    cls = np.searchsorted(bounds, f, side="right")
    over = np.flatnonzero(cls >= len(_UNITS))
    if len(over):
        i = int(over[0])
        raise DataError(
            f"{rows.at(i)}: column '{column}' holds {_show(original.iloc[i])}, out of range for a unix "
            f"timestamp (seconds below 1e11, i.e. before year 5138; milliseconds, microseconds and "
            f"nanoseconds are recognised by their size up to {bounds[-1]:.3g}); "
            f"{_n(len(over), 'value')} out of range. Fix that row."
        )
    kinds = np.array([_UNITS[c][0] for c in range(len(_UNITS))], dtype=object)[cls]
    if len(set(cls.tolist())) > 1:
        i, kind, major = _minority(kinds)
        raise DataError(
            f"{rows.at(i)}: column '{column}' holds {_show(original.iloc[i])}, which reads as unix {kind}, "
            f"but the column mixes units ({_counts(kinds)}; most are {major}). Mixed units would "
            f"reorder the interactions: give every row in one unit."
        )
    name, div, _ = _UNITS[int(cls[0])] if len(cls) else _UNITS[0]
    if num.dtype.kind in "iu":
        secs = num.to_numpy(dtype="int64") // div
    else:
        secs = np.floor(f / div).astype("int64")
    return secs, f"unix {name}" + ("" if div == 1 else " (converted to seconds)")


def _from_datetimes(values: pd.Series, rows: Rows, column: str, what: str) -> tuple[np.ndarray, str]:
    bad = np.flatnonzero(values.isna().to_numpy())
    if len(bad):
        raise DataError(
            f"{rows.at(int(bad[0]))}: column '{column}' is empty ({_n(len(bad), 'empty value')}). "
            f"Fill it or delete the row."
        )
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    secs = ((values - pd.Timestamp(0)) // pd.Timedelta(seconds=1)).to_numpy(dtype="int64")
    neg = np.flatnonzero(secs < 0)
    if len(neg):
        i = int(neg[0])
        raise DataError(
            f"{rows.at(i)}: column '{column}' holds {values.iloc[i]}, before 1970-01-01 "
            f"({_n(len(neg), 'such value')}); rating timestamps are after 1970."
        )
    return secs, what


def _tz_minutes(tz: pd.Series) -> np.ndarray:
    out = np.zeros(len(tz), dtype="int64")
    for i, t in enumerate(tz.to_numpy(dtype=object)):
        if isinstance(t, str) and t not in ("Z", "UTC"):
            sign = -1 if t[0] == "-" else 1
            digits = t[1:].replace(":", "")
            out[i] = sign * (int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) > 2 else 0))
    return out


def _civil_seconds(
    y, m, d, parts: pd.DataFrame, idx: np.ndarray, text: pd.Series, rows: Rows, column: str, family: str
) -> np.ndarray:
    """Unix seconds from year/month/day and the optional time and offset groups."""
    y, m, d = (np.asarray(v, dtype="int64") for v in (y, m, d))
    hh = parts["hh"].fillna("0").astype("int64").to_numpy()
    mi = parts["mi"].fillna("0").astype("int64").to_numpy()
    ss = parts["ss"].fillna("0").astype("int64").to_numpy()
    day = pd.to_datetime(pd.DataFrame({"year": y, "month": m, "day": d}), errors="coerce")
    bad = np.flatnonzero(day.isna().to_numpy() | (hh > 23) | (mi > 59) | (ss > 60))
    if len(bad):
        i = int(idx[bad[0]])
        raise DataError(
            f"{rows.at(i)}: column '{column}' holds {_show(text.iloc[i])}, which is not a valid date or time "
            f"when read as {family} ({_n(len(bad), 'such value')}). Fix that row"
            + (" or check DATE_ORDER." if family.startswith(("day-first", "month-first")) else ".")
        )
    early = np.flatnonzero(y < 1970)
    if len(early):
        i = int(idx[early[0]])
        raise DataError(
            f"{rows.at(i)}: column '{column}' holds {_show(text.iloc[i])}, before 1970-01-01; rating "
            f"timestamps are after 1970 ({_n(len(early), 'such value')})."
        )
    days = ((day - pd.Timestamp(0)) // pd.Timedelta(days=1)).to_numpy(dtype="int64")
    return days * 86400 + hh * 3600 + mi * 60 + ss - _tz_minutes(parts["tz"]) * 60


def _from_strings(text: pd.Series, rows: Rows, column: str, date_order: str) -> tuple[np.ndarray, str]:
    n = len(text)
    family = np.full(n, "", dtype=object)
    ymd = text.str.extract(_YMD)
    xyy = text.str.extract(_XYY)
    family[ymd["y"].notna().to_numpy()] = "ymd"
    family[(family == "") & xyy["y"].notna().to_numpy()] = "xyy"
    named = text.str.contains(_NAMED) & text.str.contains(_YEAR)
    family[(family == "") & named.to_numpy()] = "named"
    unknown = np.flatnonzero(family == "")
    if len(unknown):
        i = int(unknown[0])
        raise DataError(
            f"{rows.at(i)}: column '{column}' must be a timestamp, got {_show(text.iloc[i])} "
            f"({_n(len(unknown), 'unreadable value')}). Accepted: {ACCEPTED_TIMESTAMPS}."
        )
    if len(set(family.tolist())) > 1:
        i, kind, major = _minority(family)
        raise DataError(
            f"{rows.at(i)}: column '{column}' holds {_show(text.iloc[i])} ({_FAMILIES[kind]}), but most "
            f"rows are {_FAMILIES[major]} ({_counts(np.array([_FAMILIES[f] for f in family]))}). "
            f"Write every date of the column in one format."
        )
    kind = family[0]
    parts = ymd if kind == "ymd" else xyy
    if kind != "named":
        timed = parts["hh"].notna().to_numpy()
        aware = parts["tz"].notna().to_numpy()
        if timed.any() and len(set(aware[timed].tolist())) > 1:
            sub = np.where(aware[timed], "with a UTC offset", "without a UTC offset").astype(object)
            j, _, major = _minority(sub)
            i = int(np.flatnonzero(timed)[j])
            raise DataError(
                f"{rows.at(i)}: column '{column}' holds {_show(text.iloc[i])}, but most times are {major} "
                f"({_counts(sub)}). Times without an offset are read as UTC, so mixing them shifts "
                f"some rows by hours: give every time in one form."
            )
    idx = np.arange(n)
    if kind == "ymd":
        secs = _civil_seconds(
            ymd["y"].astype("int64"),
            ymd["m"].astype("int64"),
            ymd["d"].astype("int64"),
            ymd,
            idx,
            text,
            rows,
            column,
            "year-month-day",
        )
        return secs, "ISO 8601 dates (times without offset read as UTC)"
    if kind == "xyy":
        a, b = xyy["a"].astype("int64").to_numpy(), xyy["b"].astype("int64").to_numpy()
        order, why = date_order, f"DATE_ORDER={date_order}"
        if order == "auto":
            day_first = np.flatnonzero((a > 12) & (b <= 12))
            month_first = np.flatnonzero((b > 12) & (a <= 12))
            if len(day_first) and len(month_first):
                i, j = int(day_first[0]), int(month_first[0])
                raise DataError(
                    f"{rows.at(i)}: column '{column}' holds {_show(text.iloc[i])}, which can only be "
                    f"day-first, but {rows.at(j)} holds {_show(text.iloc[j])}, which can only be "
                    f"month-first: the column mixes date orders. Write every date in one order."
                )
            if len(day_first):
                order, why = (
                    "dmy",
                    f"day-first: {rows.at(int(day_first[0]))} holds {_show(text.iloc[int(day_first[0])])}",
                )
            elif len(month_first):
                order, why = (
                    "mdy",
                    (f"month-first: {rows.at(int(month_first[0]))} holds {_show(text.iloc[int(month_first[0])])}"),
                )
            else:
                i = int(np.flatnonzero(a != b)[0]) if (a != b).any() else 0
                raise DataError(
                    f"{rows.at(i)}: column '{column}' holds {_show(text.iloc[i])}, which could be day-first "
                    f"or month-first, and no date of the column settles it. Set DATE_ORDER: dmy "
                    f"(03/04/2019 is 3 April) or DATE_ORDER: mdy (March 4), or write ISO dates "
                    f"(2019-04-03)."
                )
        day, month = (a, b) if order == "dmy" else (b, a)
        label = "day-first dates (DD/MM/YYYY)" if order == "dmy" else "month-first dates (MM/DD/YYYY)"
        secs = _civil_seconds(xyy["y"].astype("int64"), month, day, xyy, idx, text, rows, column, label)
        return secs, f"{label}; {why}"
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{rows.at(i)}: column '{column}' holds {_show(text.iloc[i])}, which is not a valid date "
            f"({_n(len(bad), 'such value')}). Accepted: {ACCEPTED_TIMESTAMPS}."
        )
    return _from_datetimes(parsed, rows, column, "dates with month names (read as UTC)")


def parse_timestamps(
    values: Any, rows: Rows, column: str = "timestamp", date_order: str = "auto"
) -> tuple[np.ndarray, str]:
    """Unix seconds (int64) for a column of timestamps, and the format detected (module doc)."""
    check_date_order(date_order)
    s = pd.Series(values).reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(s):
        return _from_datetimes(s, rows, column, f"datetime64[{s.dt.unit}] (converted to seconds)")
    if pd.api.types.is_bool_dtype(s):
        raise DataError(f"{rows.path}: column '{column}' holds true/false values, not timestamps.")
    if pd.api.types.is_numeric_dtype(s):
        return _from_numbers(s, s, rows, column)
    missing = s.isna().to_numpy()
    text = s.astype(str).str.strip()
    empty = np.flatnonzero(missing | (text == "").to_numpy())
    if len(empty):
        raise DataError(
            f"{rows.at(int(empty[0]))}: column '{column}' is empty ({_n(len(empty), 'empty value')}). "
            f"Fill it or delete the row."
        )
    is_dt = s.map(lambda v: isinstance(v, (pd.Timestamp, np.datetime64)) or hasattr(v, "isoformat")).to_numpy()
    if is_dt.all():
        return _from_datetimes(pd.to_datetime(s, utc=True), rows, column, "date/time objects (converted to seconds)")
    is_num = text.str.fullmatch(_NUMBER).to_numpy()
    if is_num.all():
        return _from_numbers(text, s, rows, column)
    if is_num.any():
        kinds = np.where(is_num, "numbers (unix time)", "date strings").astype(object)
        i, kind, major = _minority(kinds)
        raise DataError(
            f"{rows.at(i)}: column '{column}' holds {_show(s.iloc[i])}, one of {kind}, but most rows are "
            f"{major} ({_counts(kinds)}). Give every timestamp in one format."
        )
    return _from_strings(text, rows, column, date_order)


# ---------------------------------------------------------------------------------------
# ratings
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RatingScale:
    """The valid ratings of a dataset: [low, high], on multiples of ``step`` above ``low`` when
    ``step`` is given."""

    low: float
    high: float
    step: float | None = None
    name: str = ""

    def describe(self) -> str:
        steps = f" in steps of {self.step:g}" if self.step else ""
        return f"{self.name + ' ' if self.name else ''}scale [{self.low:g}, {self.high:g}]{steps}"


GENERIC_SCALE = RatingScale(1.0, 5.0, None, "default generic")


def rating_scale_param(value: Any, default: RatingScale | None) -> RatingScale | None:
    """RATING_SCALE ([] = the dataset's own ``default``; else [low, high])."""
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return default
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value)
        or not value[0] < value[1]
    ):
        raise ParamError(
            f"RATING_SCALE={value!r} must be [lowest, highest] with lowest < highest (e.g. [1, 5]), "
            f"or [] for the dataset's own scale."
        )
    return RatingScale(float(value[0]), float(value[1]), None, "RATING_SCALE")


def check_ratings(values: Any, rows: Rows, scale: RatingScale, column: str = "rating", fix: str = "") -> np.ndarray:
    """Ratings as floats; a non-number, non-finite or off-scale value is a DataError naming its line."""
    s = pd.Series(values).reset_index(drop=True)
    num = (
        s
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        else pd.to_numeric(s.astype(str).str.strip(), errors="coerce")
    )
    f = num.to_numpy(dtype=float, na_value=np.nan)
    bad = np.flatnonzero(np.isnan(f) & ~s.astype(str).str.strip().str.lower().eq("nan").to_numpy())
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{rows.at(i)}: column '{column}' must be a number, got {_show(s.iloc[i])}. Fix that line "
            f"({_n(len(bad), 'bad value')} in total)."
        )
    fix = fix or (
        "If the data uses another scale, set RATING_SCALE: [lowest, highest] (and a LIKE_THRESHOLD that fits it)."
    )
    bad = np.flatnonzero(~np.isfinite(f))
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{rows.at(i)}: column '{column}' must be a finite number, got {_show(s.iloc[i])} "
            f"({_n(len(bad), 'non-finite value')}). Fix or delete that row."
        )
    eps = 1e-9
    bad = np.flatnonzero((f < scale.low - eps) | (f > scale.high + eps))
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{rows.at(i)}: column '{column}' holds {_show(s.iloc[i])}, outside the {scale.describe()} "
            f"({_n(len(bad), 'value')} outside, from {np.nanmin(f[bad]):g} to {np.nanmax(f[bad]):g}). "
            f"{fix}"
        )
    if scale.step:
        q = (f - scale.low) / scale.step
        bad = np.flatnonzero(np.abs(q - np.round(q)) > 1e-6)
        if len(bad):
            i = int(bad[0])
            raise DataError(
                f"{rows.at(i)}: column '{column}' holds {_show(s.iloc[i])}, not on the {scale.describe()} "
                f"({_n(len(bad), 'such value')}). {fix}"
            )
    return f
