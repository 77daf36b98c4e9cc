"""The bulk shortcut never accepts what the pydantic model rejects, and never changes a value."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from forestops import contract
from forestops.modeling.package import input_example
from forestops.serving.decode import (
    InvalidRecords,
    clean_arrays,
    records_to_arrays,
    validated_arrays,
)
from forestops.serving.errors import MAX_ERRORS
from forestops.serving.schemas import ForestRecord

RECORDS: TypeAdapter[Any] = TypeAdapter(list[ForestRecord])  # type: ignore[valid-type]
EXAMPLE: dict[str, Any] = input_example().iloc[0].to_dict()

_value = st.one_of(
    st.integers(-4000, 60_000),
    st.floats(-4000, 60_000),
    st.just(float("nan")),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.sampled_from(["Rawah", "comanche", " Cache la Poudre", "C7745", "7745", "2702", "x"]),
    st.sampled_from([7745, 2702]),
)
_key = st.sampled_from([*contract.FEATURE_NAMES, *contract.COURSE_NAMES, "extra"])
_record = st.builds(
    lambda base, changes, dropped: {
        k: v for k, v in {**base, **changes}.items() if k not in dropped
    },
    st.just(EXAMPLE),
    st.dictionaries(_key, _value, max_size=3),
    st.sets(st.sampled_from(contract.FEATURE_NAMES), max_size=1),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_record, min_size=1, max_size=4))
def test_shortcut_agrees_with_pydantic(items: list[dict[str, Any]]) -> None:
    fast = clean_arrays(items)
    try:
        judged = validated_arrays(RECORDS.validate_python(items))
    except ValidationError:
        assert fast is None
        return
    if fast is not None:
        for mine, theirs in zip(fast, judged, strict=True):
            np.testing.assert_array_equal(mine, theirs)
            assert mine.dtype == theirs.dtype


def test_clean_batch_takes_the_shortcut_and_others_do_not() -> None:
    assert clean_arrays([EXAMPLE, {**EXAMPLE, "wilderness_area": "comanche peak"}]) is not None
    assert clean_arrays([{**EXAMPLE, "slope": 13.0}]) is None  # valid, but pydantic's call
    assert clean_arrays([{**EXAMPLE, "soil_type": 7745}]) is None


def test_records_to_arrays_names_the_bad_record() -> None:
    with pytest.raises(InvalidRecords) as caught:
        records_to_arrays([EXAMPLE, {**EXAMPLE, "aspect": 400}], RECORDS)
    assert caught.value.errors[0]["loc"] == (1, "aspect")
    assert caught.value.total == 1


def test_errors_of_a_big_bad_batch_are_listed_up_to_the_cap_and_all_counted() -> None:
    with pytest.raises(InvalidRecords) as caught:
        records_to_arrays([EXAMPLE] * 300 + [{}] * 1000, RECORDS)
    assert len(caught.value.errors) == MAX_ERRORS
    assert caught.value.errors[0]["loc"] == (300, "elevation")  # indexes across chunks
    assert caught.value.total == 1000 * len(EXAMPLE)


def test_a_record_with_a_million_unknown_keys_is_judged_on_a_few_and_counted_in_full() -> None:
    record = {**EXAMPLE, **{f"k{i}": i for i in range(1_000_000)}}
    with pytest.raises(InvalidRecords) as caught:
        records_to_arrays([record], RECORDS)
    assert len(caught.value.errors) == MAX_ERRORS
    assert {e["type"] for e in caught.value.errors} == {"extra_forbidden"}
    assert caught.value.total == 1_000_000
