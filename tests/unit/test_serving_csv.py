"""CSV uploads: what spreadsheets produce is accepted, what cannot be scored is named precisely."""

from __future__ import annotations

import numpy as np
import pytest

from forestops import contract
from forestops.serving.csv_io import (
    MAX_COLUMNS,
    MAX_HEADER_CHARS,
    CsvRejected,
    TooManyRows,
    inert,
    parse_csv,
    render_csv,
)
from forestops.serving.errors import MAX_ERRORS

CANONICAL = ",".join(contract.FEATURE_NAMES)
ROW = "2596,51,3,258,0,510,221,232,148,6279,Rawah,C7745"


def test_bom_semicolons_course_header_and_label_column() -> None:
    header = ";".join(contract.COURSE_NAMES)
    data = f"\ufeff{header}\n{ROW.replace(',', ';')};4\n\n".encode()
    parsed = parse_csv(data, 10)
    assert parsed.delimiter == ";"
    assert parsed.header[0] == "Elevation"  # the BOM is gone
    assert parsed.rows == [[*ROW.split(","), "4"]]
    np.testing.assert_array_equal(
        parsed.numeric[0], [2596, 51, 3, 258, 0, 510, 221, 232, 148, 6279]
    )
    assert (parsed.area[0], parsed.soil[0]) == (0, contract.category_code("soil_type", "C7745"))


def test_columns_in_any_order_and_integral_floats() -> None:
    names = list(reversed(contract.FEATURE_NAMES))
    values = list(reversed(ROW.split(",")))
    values[-1] = "2596.0"
    parsed = parse_csv(f"{','.join(names)}\n{','.join(values)}\n".encode(), 10)
    assert parsed.numeric[0][0] == 2596


def _rejected(data: str) -> list[dict[str, object]]:
    with pytest.raises(CsvRejected) as caught:
        parse_csv(data.encode(), 10)
    return caught.value.errors


def test_header_problems_are_all_named() -> None:
    header = CANONICAL.replace("soil_type", "Wilderness_Area") + ",notes"
    errors = _rejected(f"{header}\n{ROW},x\n")
    assert [e["type"] for e in errors] == [
        "csv_duplicate_column",
        "csv_unknown_column",
        "csv_missing_column",
    ]
    assert errors[2]["input"] == ["soil_type"]


def test_bad_rows_name_line_and_column() -> None:
    bad = ROW.replace("2596", "25.5").replace("C7745", "C1")
    errors = _rejected(f"{CANONICAL}\n{ROW}\n{bad}\n{ROW},extra\n")
    assert [(e["loc"], e["type"]) for e in errors] == [
        (["body", "file", 3, "elevation"], "value_error"),
        (["body", "file", 3, "soil_type"], "value_error"),
        (["body", "file", 4], "csv_field_count"),
    ]


def test_errors_are_capped_and_the_rest_counted() -> None:
    bad = ROW.replace("2596", "-1")
    with pytest.raises(CsvRejected) as caught:
        parse_csv((CANONICAL + f"\n{bad}" * 80 + "\n").encode(), 100)
    assert len(caught.value.errors) == MAX_ERRORS
    assert caught.value.total == 80


def test_a_header_wider_or_longer_than_any_valid_one_is_refused_naming_the_limit() -> None:
    for header, kind, limit in (
        (",".join(["a"] * (MAX_COLUMNS + 1)), "csv_too_many_columns", "MAX_COLUMNS"),
        ("a" * (MAX_HEADER_CHARS + 1), "csv_header_too_long", "MAX_HEADER_CHARS"),
    ):
        errors = _rejected(f"{header}\n{ROW}\n")
        assert [e["type"] for e in errors] == [kind]
        assert limit in errors[0]["msg"]


def test_a_cell_over_the_csv_field_limit_is_rejected_naming_the_line() -> None:
    errors = _rejected(f"{CANONICAL}\n{ROW}\n{'9' * 200_000},{ROW}\n")
    assert [(e["type"], e["loc"]) for e in errors] == [("csv_malformed", ["body", "file", 3])]
    assert "field larger than field limit" in errors[0]["msg"]


@pytest.mark.parametrize(
    "cell", ["=1+1", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "=HYPERLINK(x)"]
)
def test_formula_cells_are_made_inert(cell: str) -> None:
    assert inert(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["-5", "+7", "-1.5", "Rawah", "C7745", ""])
def test_numbers_and_words_stay_as_they_are(cell: str) -> None:
    assert inert(cell) == cell


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "csv_empty"),
        (CANONICAL.encode() + b"\n", "csv_empty"),
        (b"\xff\xfe\x00", "csv_encoding"),
    ],
)
def test_empty_or_not_text(data: bytes, kind: str) -> None:
    with pytest.raises(CsvRejected) as caught:
        parse_csv(data, 10)
    assert caught.value.errors[0]["type"] == kind


def test_row_limit() -> None:
    with pytest.raises(TooManyRows):
        parse_csv((CANONICAL + f"\n{ROW}" * 3).encode(), 2)


def test_render_appends_predictions_with_the_input_delimiter() -> None:
    parsed = parse_csv(f"{CANONICAL.replace(',', ';')}\n{ROW.replace(',', ';')}\n".encode(), 10)
    probabilities = np.array([[0.1, 0.6, 0.1, 0.05, 0.05, 0.05, 0.05]])
    header, line = render_csv(parsed, probabilities).splitlines()
    assert header.endswith(
        ";cover_type_pred;cover_type_name;probability_0;probability_1;probability_2;probability_3;probability_4;probability_5;probability_6"
    )
    assert (
        line
        == ROW.replace(",", ";")
        + ";1;Lodgepole Pine;0.100000;0.600000;0.100000;0.050000;0.050000;0.050000;0.050000"
    )
