"""Check an uploaded CSV's shape before anything is sent, so a person reads "column X is missing"
instead of a failed request.

Headers are matched through the contract (course CamelCase or canonical snake_case); a label
column is allowed and kept aside, so a labelled course file can be scored against its truth.
Values are passed on untouched as text: judging them is the inference API's job (one validator).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from forestops import contract
from forestops.csv_header import read_header, sniff_delimiter

Problem = Literal["not_text", "unreadable", "empty", "no_features", "columns"]


@dataclass
class CsvCheck:
    """Either `features` (canonical columns, contract order, text values) or a `problem`."""

    features: pd.DataFrame | None = None
    labels: pd.Series | None = None
    problem: Problem | None = None
    missing: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_csv(data: bytes) -> CsvCheck:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return CsvCheck(problem="not_text", error=str(error))
    if "\x00" in text:
        return CsvCheck(problem="not_text", error="NUL bytes: a binary file")
    if not text.strip():
        return CsvCheck(problem="empty")
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=sniff_delimiter(text.split("\n", 1)[0])
    )
    try:
        header = [cell.strip() for cell in next(reader)]
        columns = _check_columns(header)
        if columns is not None:
            return columns
        rows: list[list[str]] = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                found = f"line {reader.line_num}: {len(row)} fields, the header has {len(header)}"
                return CsvCheck(problem="unreadable", error=found)
            rows.append([cell.strip() for cell in row])
    except csv.Error as error:
        return CsvCheck(problem="unreadable", error=str(error))
    if not rows:
        return CsvCheck(problem="empty")
    frame = pd.DataFrame(rows, columns=[contract.canonical_column(name) for name in header])
    labels = frame[contract.LABEL] if contract.LABEL in frame.columns else None
    return CsvCheck(features=frame[list(contract.FEATURE_NAMES)], labels=labels)


def _check_columns(header: list[str]) -> CsvCheck | None:
    """The header's problems, or None when it names each feature once and nothing unknown."""
    columns = read_header(header)
    repeated = sorted(name for name, count in Counter(columns.canonical).items() if count > 1)
    unknown, missing = columns.unknown, columns.missing
    if len(missing) == len(contract.FEATURE_NAMES):
        return CsvCheck(problem="no_features", missing=missing, unknown=unknown)
    if missing or unknown or repeated:
        return CsvCheck(problem="columns", missing=missing, unknown=unknown, repeated=repeated)
    return None


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


EXAMPLE_CSV = (
    ",".join(contract.FEATURE_NAMES) + "\n2596,51,3,258,0,510,211,232,148,6279,Rawah,C7745\n"
)
"""The original design's example file: it must work exactly as written."""
