"""The request record is the data contract: names, aliases, bounds, categories, strictness."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from forestops import contract
from forestops.modeling.package import input_example
from forestops.serving.schemas import ForestRecord, feature_schema

RECORDS = TypeAdapter(list[ForestRecord])  # type: ignore[valid-type]
EXAMPLE: dict[str, Any] = input_example().iloc[0].to_dict()


def _errors(record: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        RECORDS.validate_python([record])
    return [(e["loc"], e["type"]) for e in caught.value.errors()]


def test_categories_validate_to_contract_codes_from_any_alias() -> None:
    record = {**EXAMPLE, "wilderness_area": " comanche PEAK ", "soil_type": "7745"}
    [validated] = RECORDS.validate_python([record])
    assert validated.__dict__["wilderness_area"] == contract.category_code(
        "wilderness_area", "Commanche"
    )
    assert validated.__dict__["soil_type"] == contract.category_code("soil_type", "C7745")


def test_course_names_are_accepted_but_not_both_spellings() -> None:
    course = {{v: k for k, v in contract.COURSE_NAMES.items()}[k]: v for k, v in EXAMPLE.items()}
    [validated] = RECORDS.validate_python([course])
    assert validated.__dict__["elevation"] == EXAMPLE["elevation"]
    assert _errors({**EXAMPLE, "Elevation": 1}) == [((0, "Elevation"), "extra_forbidden")]


@pytest.mark.parametrize("spec", contract.NUMERIC_FEATURES, ids=lambda s: s.name)
def test_every_bound_comes_from_the_contract(spec: contract.NumericFeature) -> None:
    for inside in (spec.minimum, spec.maximum):
        RECORDS.validate_python([{**EXAMPLE, spec.name: inside}])
    assert _errors({**EXAMPLE, spec.name: spec.minimum - 1}) == [
        ((0, spec.name), "greater_than_equal")
    ]
    assert _errors({**EXAMPLE, spec.name: spec.maximum + 1}) == [
        ((0, spec.name), "less_than_equal")
    ]


@pytest.mark.parametrize(
    ("value", "kind"),
    [("13", "int_type"), (True, "int_type"), (13.5, "int_from_float"), (None, "int_type")],
)
def test_numbers_are_json_numbers_without_fractions(value: object, kind: str) -> None:
    assert _errors({**EXAMPLE, "slope": value}) == [((0, "slope"), kind)]


def test_integral_floats_are_integers() -> None:
    [validated] = RECORDS.validate_python([{**EXAMPLE, "slope": 13.0}])
    assert validated.__dict__["slope"] == 13 and type(validated.__dict__["slope"]) is int


def test_unknown_category_message_lists_accepted_codes() -> None:
    with pytest.raises(ValidationError) as caught:
        RECORDS.validate_python([{**EXAMPLE, "wilderness_area": "Yosemite"}])
    [error] = caught.value.errors()
    assert error["loc"] == (0, "wilderness_area")
    assert "accepted: Rawah, Neota, Commanche, Cache" in error["msg"]


def test_json_schema_lists_bounds_and_category_spellings() -> None:
    schema = ForestRecord.model_json_schema()
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == sorted(contract.FEATURE_NAMES)
    assert (
        schema["properties"]["aspect"]["minimum"],
        schema["properties"]["aspect"]["maximum"],
    ) == (0, 360)
    assert {"Rawah", "Comanche Peak", "Cache la Poudre"} <= set(
        schema["properties"]["wilderness_area"]["enum"]
    )
    assert {"C7745", "7745"} <= set(schema["properties"]["soil_type"]["enum"])


def test_feature_schema_defaults_form_a_valid_record() -> None:
    features = feature_schema()
    record = {f.name: f.default for f in features}
    RECORDS.validate_python([record])
    assert [f.course_name for f in features] == [*contract.COURSE_NAMES][:-1]


def test_the_api_describes_each_feature_with_the_contracts_one_description() -> None:
    described = {f.name: f.description for f in feature_schema()}
    assert described == {name: d.en for name, d in contract.FEATURE_DESCRIPTIONS.items()}
    field = ForestRecord.model_json_schema()["properties"]["elevation"]
    assert field["description"] == "Elevation above sea level (m)"
