"""Row-by-row validation of a payload against the data contract.

Every value goes through the contract's own parsers, so validation, the inference schema and the
model encoding cannot disagree. A rejected row carries every reason it failed (an operator fixing
the source wants the whole list, not the first problem), worded by the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, NamedTuple

import pandas as pd

from forestops import contract
from forestops.source.dataset import FRAME_DTYPES

_ARITY = len(contract.COLUMNS)
_PARSERS: tuple[Callable[[Any], object], ...] = (
    *(partial(contract.parse_int, name) for name in contract.NUMERIC_NAMES),
    *(partial(contract.canonical_category, name) for name in contract.CATEGORICAL_NAMES),
    contract.parse_label,
)
"""One contract parser per column, in the course's column order."""


class RejectedRow(NamedTuple):
    row_number: int  # 1-based position in the payload
    raw: Any  # exactly as received
    reasons: list[str]


def validate_rows(rows: Iterable[Any]) -> tuple[pd.DataFrame, list[RejectedRow]]:
    """Split rows in the course's column order into a canonical frame and the rejected rows."""
    valid: list[list[object]] = []
    rejected: list[RejectedRow] = []
    for number, raw in enumerate(rows, start=1):
        values, reasons = _check(raw)
        if reasons:
            rejected.append(RejectedRow(number, raw, reasons))
        else:
            valid.append(values)
    frame = pd.DataFrame(valid, columns=list(contract.COLUMNS)).astype(FRAME_DTYPES)
    return frame, rejected


def _check(raw: Any) -> tuple[list[object], list[str]]:
    if not isinstance(raw, list | tuple):
        return [], [f"expected a list of {_ARITY} values, got {type(raw).__name__}"]
    if len(raw) != _ARITY:
        return [], [f"expected {_ARITY} values in the course's column order, got {len(raw)}"]
    values: list[object] = []
    reasons: list[str] = []
    for parse, value in zip(_PARSERS, raw, strict=True):
        try:
            values.append(parse(value))
        except ValueError as error:
            reasons.append(str(error))
    return values, reasons
