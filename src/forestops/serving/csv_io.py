"""CSV in, CSV out for `/predict/csv`: the spreadsheet user's way to score a file.

The header may use canonical or course CamelCase names, in any order, and may carry a label
column (`cover_type`/`Cover_Type`, kept untouched); a UTF-8 BOM and `;` as the delimiter (what
European spreadsheets save) are accepted, and the answer uses the same delimiter. Cells are
parsed with the contract's own parsers (the ones ingestion uses), so `2900` and `2900.0` are
fine here while fractions, out-of-bounds numbers and unknown categories are errors naming the
line and the column. The output repeats every input column and cell as it came, then appends
the prediction columns; a cell that a spreadsheet would run as a formula (one starting with
`=`, `+`, `-`, `@`, a tab or a CR that is not a plain number) gets a leading `'` (OWASP's advice
against CSV injection).

What a malformed upload can cost is bounded: a header line longer than `MAX_HEADER_CHARS` or
with more than `MAX_COLUMNS` columns is refused before anything else is parsed (no valid header
comes near either: the contract has 13 columns), a cell over the csv module's field limit or any
other csv error is a 422 naming the line, and only the first `MAX_ERRORS` problems are described
(the rest are counted).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from forestops import contract
from forestops.csv_header import read_header, sniff_delimiter
from forestops.modeling.package import PROBABILITY_COLUMNS
from forestops.serving.errors import MAX_ERRORS

PREDICTION_COLUMNS = ("cover_type_pred", "cover_type_name", *PROBABILITY_COLUMNS)
MAX_COLUMNS = 64
MAX_HEADER_CHARS = 4096
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?")


class CsvRejected(ValueError):
    """The upload cannot be scored; `errors` are FastAPI-style validation error entries (the
    first MAX_ERRORS of `total`)."""

    def __init__(self, errors: list[dict[str, Any]], total: int | None = None) -> None:
        self.total = len(errors) if total is None else total
        super().__init__(f"{self.total} problem(s) in the uploaded CSV")
        self.errors = errors


class TooManyRows(ValueError):
    pass


@dataclass(frozen=True)
class ParsedCsv:
    delimiter: str
    header: list[str]
    rows: list[list[str]]
    numeric: np.ndarray
    area: np.ndarray
    soil: np.ndarray


def _error(loc: tuple[str | int, ...], msg: str, kind: str, value: object = None) -> dict[str, Any]:
    return {"type": kind, "loc": ["body", "file", *loc], "msg": msg, "input": value}


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CsvRejected(
            [_error((), f"the file is not UTF-8 text (byte {error.start})", "csv_encoding")]
        ) from None


def _columns(header: list[str]) -> dict[str, int]:
    """Canonical feature name -> position in the file; unknown, duplicate or missing: 422."""
    columns = read_header(header)
    errors: list[dict[str, Any]] = []
    for raw, first in columns.strays:
        if first is None:
            errors.append(_error((raw,), f"unknown column {raw!r}", "csv_unknown_column", raw))
        else:
            errors.append(
                _error((raw,), f"column {raw!r} duplicates {first!r}", "csv_duplicate_column", raw)
            )
    if columns.missing:
        missing = columns.missing
        errors.append(
            _error((), f"missing column(s): {', '.join(missing)}", "csv_missing_column", missing)
        )
    if errors:
        raise CsvRejected(errors)
    return columns.positions


def _header(text: str, delimiter: str) -> list[str]:
    """The header row, refused (422 naming the limit) when longer or wider than any valid one."""
    first_line = text[: MAX_HEADER_CHARS + 2].split("\n", 1)[0].rstrip("\r")
    if len(first_line) > MAX_HEADER_CHARS:
        raise CsvRejected(
            [
                _error(
                    (1,),
                    f"the header line is longer than {MAX_HEADER_CHARS} characters "
                    "(MAX_HEADER_CHARS); expected the contract's column names",
                    "csv_header_too_long",
                )
            ]
        )
    try:
        header = next(csv.reader(io.StringIO(first_line, newline=""), delimiter=delimiter), None)
    except csv.Error as error:
        raise CsvRejected([_error((1,), f"line 1: {error}", "csv_malformed")]) from None
    if header and len(header) > MAX_COLUMNS:
        raise CsvRejected(
            [
                _error(
                    (1,),
                    f"the header has {len(header)} columns, more than {MAX_COLUMNS} "
                    f"(MAX_COLUMNS; the contract has {len(contract.COLUMNS)})",
                    "csv_too_many_columns",
                )
            ]
        )
    if not header or not any(cell.strip() for cell in header):
        raise CsvRejected([_error((), "the file is empty: expected a header line", "csv_empty")])
    return header


def parse_csv(data: bytes, max_rows: int) -> ParsedCsv:
    """Parse and validate an upload; raises CsvRejected (422) or TooManyRows (413)."""
    text = _decode(data)
    first_line = text[: MAX_HEADER_CHARS + 2].split("\n", 1)[0]
    delimiter = sniff_delimiter(first_line)
    header = _header(text, delimiter)
    positions = _columns(header)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    next(reader)  # the header, parsed above
    rows: list[list[str]] = []
    numeric: list[list[int]] = []
    codes: list[tuple[int, int]] = []
    errors: list[dict[str, Any]] = []
    total = 0
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(rows) == max_rows:
                raise TooManyRows(f"more than {max_rows} data rows (MAX_BATCH_ROWS)")
            line = reader.line_num
            rows.append(row)
            found: list[dict[str, Any]] = []
            if len(row) != len(header):
                message = f"line {line}: {len(row)} fields, the header has {len(header)}"
                found.append(_error((line,), message, "csv_field_count", row))
            else:
                parsed = _parse_row(row, header, positions, line, found)
                if parsed is not None:
                    numeric.append(parsed[0])
                    codes.append(parsed[1])
            total += len(found)
            errors.extend(found[: MAX_ERRORS - len(errors)])
    except csv.Error as error:  # e.g. a cell over the csv module's field limit (131,072)
        line = reader.line_num
        total += 1
        if len(errors) < MAX_ERRORS:
            errors.append(_error((line,), f"line {line}: {error}", "csv_malformed"))
    if total:
        raise CsvRejected(errors, total)
    if not rows:
        raise CsvRejected([_error((), "the file has a header but no data rows", "csv_empty")])
    code_array = np.asarray(codes, dtype=np.int64).reshape(-1, 2)
    return ParsedCsv(
        delimiter=delimiter,
        header=header,
        rows=rows,
        numeric=np.asarray(numeric, dtype=np.float64),
        area=code_array[:, 0],
        soil=code_array[:, 1],
    )


def _parse_row(
    row: list[str],
    header: list[str],
    positions: dict[str, int],
    line: int,
    errors: list[dict[str, Any]],
) -> tuple[list[int], tuple[int, int]] | None:
    numbers: list[int] = []
    categories: list[int] = []
    ok = True
    for name in contract.FEATURE_NAMES:
        position = positions[name]
        value = row[position]
        try:
            if name in contract.CATEGORICAL_FEATURES:
                categories.append(contract.category_code(name, value))
            else:
                numbers.append(contract.parse_int(name, value))
        except ValueError as error:
            ok = False
            column = header[position]
            errors.append(_error((line, column), f"line {line}: {error}", "value_error", value))
    return (numbers, (categories[0], categories[1])) if ok else None


def render_csv(
    parsed: ParsedCsv,
    probabilities: np.ndarray,
    extra_columns: tuple[str, ...] = (),
    extra_cells: list[list[str]] | None = None,
) -> str:
    """The upload's rows with the prediction columns, then `extra_columns` (one list of
    `extra_cells` per row, e.g. an explanation)."""
    labels = probabilities.argmax(axis=1)
    extra = extra_cells or [[] for _ in parsed.rows]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=parsed.delimiter, lineterminator="\n")
    writer.writerow([*map(inert, parsed.header), *PREDICTION_COLUMNS, *extra_columns])
    for row, label, probs, cells in zip(parsed.rows, labels, probabilities, extra, strict=True):
        writer.writerow(
            [
                *map(inert, row),
                int(label),
                contract.CLASS_NAMES[label],
                *(f"{p:.6f}" for p in probs),
                *cells,
            ]
        )
    return out.getvalue()


def inert(cell: str) -> str:
    """`cell`, with a leading `'` when a spreadsheet would read it as a formula."""
    if cell.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell
