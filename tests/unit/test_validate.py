"""Row validation: canonical records out, every reason of every bad row kept."""

from __future__ import annotations

import pandas as pd
import pytest

from forestops import contract
from forestops.pipeline.validate import validate_rows

GOOD = ["2596", "51", "3", "258", "0", "510", "221", "232", "148", "6279", "Rawah", "C7745", "4"]


def with_value(position: int, value: object) -> list[object]:
    row: list[object] = list(GOOD)
    row[position] = value
    return row


def test_good_rows_become_typed_canonical_records() -> None:
    aliased = with_value(10, "Comanche Peak")
    aliased[11] = "7745"
    frame, rejected = validate_rows([GOOD, aliased, [int(v) if v.isdigit() else v for v in GOOD]])
    assert rejected == []
    assert list(frame.columns) == list(contract.COLUMNS)
    assert frame["wilderness_area"].tolist() == ["Rawah", "Commanche", "Rawah"]
    assert frame["soil_type"].tolist() == ["C7745"] * 3
    assert frame["elevation"].tolist() == [2596] * 3
    assert frame["cover_type"].tolist() == [4] * 3
    for name in (*contract.NUMERIC_NAMES, contract.LABEL):
        assert pd.api.types.is_integer_dtype(frame[name])


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (with_value(0, "-1"), "elevation=-1 outside"),
        (with_value(1, "361"), "aspect=361 outside"),
        (with_value(2, "91"), "slope=91 outside"),
        (with_value(6, "256"), "hillshade_9am=256 outside"),
        (with_value(3, "-5"), "horizontal_distance_to_hydrology=-5 outside"),
        (with_value(0, "2,596"), "elevation must be an integer, got '2,596'"),
        (with_value(2, "3.5"), "slope must be an integer"),
        (with_value(4, None), "vertical_distance_to_hydrology must be an integer"),
        (with_value(10, "Yosemite"), "unknown wilderness_area 'Yosemite'"),
        (with_value(11, "C1234"), "unknown soil_type 'C1234'"),
        (with_value(12, "7"), "cover_type=7 is not a class id"),
        (with_value(12, "Aspen"), "cover_type must be an integer"),
        (GOOD[:12], "expected 13 values in the course's column order, got 12"),
        ([*GOOD, "extra"], "expected 13 values in the course's column order, got 14"),
        ({"elevation": 2596}, "expected a list of 13 values, got dict"),
        ("2596,51,3", "expected a list of 13 values, got str"),
    ],
)
def test_each_kind_of_bad_row_is_rejected_with_a_readable_reason(row: object, reason: str) -> None:
    frame, rejected = validate_rows([GOOD, row])
    assert len(frame) == 1
    [bad] = rejected
    assert (bad.row_number, bad.raw) == (2, row)
    assert len(bad.reasons) == 1 and reason in bad.reasons[0]


def test_all_reasons_of_a_row_are_collected() -> None:
    row = ["abc", "400", "3", "258", "0", "510", "221", "232", "999", "6279", "Mars", "C1", "9"]
    _, [rejected] = validate_rows([row])
    assert len(rejected.reasons) == 6
    joined = " | ".join(rejected.reasons)
    for fragment in (
        "elevation must be an integer, got 'abc'",
        "aspect=400 outside [0, 360]",
        "hillshade_3pm=999 outside [0, 255]",
        "unknown wilderness_area 'Mars'",
        "unknown soil_type 'C1'",
        "cover_type=9 is not a class id 0..6",
    ):
        assert fragment in joined


def test_row_numbers_are_one_based_payload_positions() -> None:
    rows = [GOOD, with_value(1, "x"), GOOD, with_value(2, "y")]
    frame, rejected = validate_rows(rows)
    assert len(frame) == 2
    assert [r.row_number for r in rejected] == [2, 4]


def test_no_rows_gives_an_empty_typed_frame() -> None:
    frame, rejected = validate_rows([])
    assert frame.empty and rejected == []
    assert list(frame.columns) == list(contract.COLUMNS)
    assert pd.api.types.is_integer_dtype(frame["elevation"])
