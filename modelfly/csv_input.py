"""A CSV body (a header row of feature names, then one row per line) as checked rows.

The same checks, and the same messages, as `features.to_rows` gives a list of records, with
the row and its line in the file named; an empty cell is a missing value. When every column
is a number, pandas' C parser reads the file first (a million rows in a quarter of a second);
whatever it cannot read as finite numbers is read again, cell by cell, to say what is wrong.
"""

import csv
import io
import re

import numpy
import pandas

from modelfly.errors import BadInput, TooManyRows
from modelfly.features import Rows, feature_names, to_rows


def read_csv(data: bytes, card: dict, max_rows: int, max_text_chars: int) -> Rows:
    """The rows of `data`, in the card's feature order, checked as /predict checks records."""
    if all(feature["type"] == "number" for feature in card["features"]):
        values = _plain_numbers(data, feature_names(card), max_rows)
        if values is not None:
            return values
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise BadInput(f"the CSV is not UTF-8: line {line}, byte {error.start} is "
                       f"0x{data[error.start]:02x}") from None
    lines = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = next(lines, None)
        if not header:
            raise BadInput("the CSV is empty; send a header row of feature names, then one "
                           "row per line")
        rows = [row for row in lines if row]  # blank lines hold no row
    except csv.Error as problem:  # a NUL byte, a lone carriage return in a cell
        raise BadInput(f"the CSV cannot be read: line {lines.line_num}: {problem}") from None
    if not rows:
        raise BadInput("the CSV has a header but no rows")
    if len(rows) > max_rows:
        raise TooManyRows(f"the CSV has {len(rows)} rows; at most {max_rows} are allowed in "
                          "one job (MODELFLY_JOB_MAX_ROWS)")
    for index, row in enumerate(rows):
        if len(row) != len(header):
            raise BadInput(f"line {index + 2} of the CSV has {len(row)} field(s); its header "
                           f"has {len(header)}")
    names = feature_names(card)
    if sorted(header) != sorted(names):
        unknown = [column for column in header if column not in names]
        missing = [name for name in names if name not in header]
        twice = sorted({column for column in header if header.count(column) > 1})
        problems = [f"{what} column(s) " + ", ".join(map(repr, columns)) for what, columns in
                    (("unknown", unknown), ("missing", missing), ("repeated", twice)) if columns]
        raise BadInput(f"the CSV header has {' and '.join(problems)}; expected columns: "
                       + ", ".join(names))
    order = [header.index(name) for name in names]
    if all(feature["type"] == "number" for feature in card["features"]):
        try:
            values = numpy.array(rows, dtype=float)[:, order]
        except ValueError:  # a cell that is no number, or empty: the records say which
            values = None
        if values is not None and numpy.isfinite(values).all():
            return values
    records = [{name: _cell(row[i], feature) for name, i, feature
                in zip(names, order, card["features"], strict=True)} for row in rows]
    try:
        return to_rows(records, card, max_rows, max_text_chars)
    except BadInput as refusal:
        raise BadInput(_with_line(str(refusal))) from None


def _plain_numbers(data: bytes, names: list[str], max_rows: int) -> numpy.ndarray | None:
    """The rows as a float array, if the file is a header of exactly the feature names and
    finite numbers under it; else None."""
    end = data.find(b"\n")
    try:
        header = next(csv.reader([data[:end if end >= 0 else None].decode("utf-8").strip()]))
        frame = pandas.read_csv(io.BytesIO(data), dtype="float64", engine="c",
                                encoding="utf-8")
    except (ValueError, UnicodeDecodeError, pandas.errors.ParserError, StopIteration,
            csv.Error):
        return None
    if list(frame.columns) != header or sorted(header) != sorted(names) or \
            not 0 < len(frame) <= max_rows:
        return None
    values = frame[names].to_numpy()
    return values if numpy.isfinite(values).all() else None


def _cell(text: str, feature: dict) -> object:
    if text == "":
        return None
    if feature["type"] == "number":
        try:
            return float(text)
        except ValueError:
            return text  # refused by name below
    return text


def _with_line(message: str) -> str:
    """'record 3 ...' becomes 'row 3 (line 5 of the CSV) ...'."""
    return re.sub(r"^(?:record|row) (\d+)",
                  lambda found: f"row {found[1]} (line {int(found[1]) + 2} of the CSV)", message)
