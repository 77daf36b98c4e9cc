"""Parsed JSON records -> the model's arrays, with pydantic as the judge and a bulk shortcut.

Pydantic validation of `ForestRecord` costs ~15 us per record (twelve fields, two category
lookups, a model instance), which is most of a 1,000-record request. Nearly every batch is
clean: canonical names, JSON integers within bounds, category strings. `clean_arrays` checks
exactly that in bulk (one type scan, vectorised bounds) and returns the arrays directly; the
moment anything differs (an alias spelling of a column, an integral float, a bad value) it
gives up and `records_to_arrays` lets the pydantic model decide and name the error. It only
ever accepts a subset of what the model accepts, with identical values, which
tests/unit/test_serving_decode.py checks property-based.

An invalid batch costs a bounded answer: pydantic judges it in chunks, the first `MAX_ERRORS`
errors are kept and the rest only counted, and a record with more keys than the contract has
names is judged on its known keys and its first unknown ones (the others counted as the
`extra_forbidden` errors they are), so no request makes the service build millions of errors.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

import numpy as np
from pydantic import BaseModel, TypeAdapter, ValidationError

from forestops import contract
from forestops.serving.errors import MAX_ERRORS

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]

_KEYS = frozenset(contract.FEATURE_NAMES)
_NUMERIC = contract.NUMERIC_NAMES
_MINIMUM = np.array([f.minimum for f in contract.NUMERIC_FEATURES], dtype=np.float64)
_MAXIMUM = np.array([f.maximum for f in contract.NUMERIC_FEATURES], dtype=np.float64)
_NAMES = frozenset(contract.FEATURE_NAMES) | frozenset(contract.COURSE_NAMES)
_CHUNK = 256  # records judged per pydantic call


class InvalidRecords(ValueError):
    """`errors`: pydantic's first entries (`loc` starting with the record index); `total`: how
    many errors the batch has in all."""

    def __init__(self, errors: list[dict[str, Any]], total: int) -> None:
        super().__init__(f"{total} error(s) in the records")
        self.errors = errors
        self.total = total


def clean_arrays(items: list[Any]) -> Arrays | None:
    """The arrays for a batch that is plainly valid, or None to ask pydantic."""
    if not all(type(item) is dict and item.keys() == _KEYS for item in items):
        return None
    rows = [[item[name] for name in _NUMERIC] for item in items]
    if not all(type(value) is int for row in rows for value in row):
        return None
    numeric = np.array(rows, dtype=np.float64)
    if ((numeric < _MINIMUM) | (numeric > _MAXIMUM)).any():
        return None
    try:
        area = [_code("wilderness_area", item["wilderness_area"]) for item in items]
        soil = [_code("soil_type", item["soil_type"]) for item in items]
    except ValueError:
        return None
    return numeric, np.array(area, dtype=np.int64), np.array(soil, dtype=np.int64)


def _code(feature: str, value: object) -> int:
    if type(value) is not str:
        raise ValueError(f"{feature} must be a string")
    return contract.category_code(feature, value)


def validated_arrays(records: list[BaseModel]) -> Arrays:
    """Arrays from validated `ForestRecord`s (categories are already codes)."""
    rows = [record.__dict__ for record in records]
    numeric = np.array([[row[name] for name in _NUMERIC] for row in rows], dtype=np.float64)
    area = np.fromiter((row["wilderness_area"] for row in rows), np.int64, len(rows))
    soil = np.fromiter((row["soil_type"] for row in rows), np.int64, len(rows))
    return numeric, area, soil


def records_to_arrays(items: list[Any], adapter: TypeAdapter[list[BaseModel]]) -> Arrays:
    """Arrays for `items`; raises InvalidRecords naming index and field otherwise."""
    fast = clean_arrays(items)
    if fast is not None:
        return fast
    records: list[BaseModel] = []
    errors: list[dict[str, Any]] = []
    total = 0
    for start in range(0, len(items), _CHUNK):
        chunk, dropped = _trimmed(items[start : start + _CHUNK])
        total += dropped
        try:
            judged = adapter.validate_python(chunk)
        except ValidationError as error:
            total += error.error_count()
            room = MAX_ERRORS - len(errors)
            if room > 0:
                listed = error.errors(include_url=False, include_context=False)
                errors.extend(
                    {**entry, "loc": (start + int(entry["loc"][0]), *entry["loc"][1:])}
                    for entry in islice(listed, room)
                )
            continue
        if not total:
            records.extend(judged)
    if total:
        raise InvalidRecords(errors, total)
    return validated_arrays(records)


def _trimmed(chunk: list[Any]) -> tuple[list[Any], int]:
    """The chunk with each over-long record cut to its known keys and its first MAX_ERRORS
    unknown ones, and how many unknown keys were cut (each one an error)."""
    if all(type(item) is not dict or len(item) <= len(_NAMES) for item in chunk):
        return chunk, 0
    trimmed: list[Any] = []
    dropped = 0
    for item in chunk:
        if type(item) is dict and len(item) > len(_NAMES):
            unknown = [key for key in item if key not in _NAMES]
            kept = {key: item[key] for key in item if key in _NAMES}
            kept.update((key, item[key]) for key in unknown[:MAX_ERRORS])
            dropped += max(0, len(unknown) - MAX_ERRORS)
            item = kept
        trimmed.append(item)
    return trimmed, dropped
