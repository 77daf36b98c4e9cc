"""Parsed JSON records -> the model's arrays, with pydantic as the judge and a bulk shortcut.

Pydantic validation of `ForestRecord` costs ~15 us per record (twelve fields, two category
lookups, a model instance), which is most of a 1,000-record request. Nearly every batch is
clean: canonical names, JSON integers within bounds, category strings. `clean_arrays` checks
exactly that in bulk (one type scan, vectorised bounds) and returns the arrays directly; the
moment anything differs (an alias spelling of a column, an integral float, a bad value) it
gives up and `records_to_arrays` lets the pydantic model decide and name the error. It only
ever accepts a subset of what the model accepts, with identical values, which
tests/unit/test_serving_decode.py checks property-based.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, TypeAdapter

from forestops import contract

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]

_KEYS = frozenset(contract.FEATURE_NAMES)
_NUMERIC = contract.NUMERIC_NAMES
_MINIMUM = np.array([f.minimum for f in contract.NUMERIC_FEATURES], dtype=np.float64)
_MAXIMUM = np.array([f.maximum for f in contract.NUMERIC_FEATURES], dtype=np.float64)


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
    """Arrays for `items`; raises pydantic's ValidationError naming index and field otherwise."""
    fast = clean_arrays(items)
    return fast if fast is not None else validated_arrays(adapter.validate_python(items))
