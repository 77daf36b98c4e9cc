"""The data contract: every bound, every alias, every label, the course's column names."""

from __future__ import annotations

import pytest

from forestops import contract

NUMERIC = [pytest.param(f, id=f.name) for f in contract.NUMERIC_FEATURES]


@pytest.mark.parametrize("feature", NUMERIC)
def test_numeric_bounds_are_inclusive(feature: contract.NumericFeature) -> None:
    assert contract.parse_int(feature.name, str(feature.minimum)) == feature.minimum
    assert contract.parse_int(feature.name, str(feature.maximum)) == feature.maximum
    assert contract.parse_int(feature.name, feature.default) == feature.default


@pytest.mark.parametrize("feature", NUMERIC)
def test_numeric_outside_bounds_is_an_error_not_clipped(feature: contract.NumericFeature) -> None:
    for value in (feature.minimum - 1, feature.maximum + 1):
        with pytest.raises(ValueError, match=rf"{feature.name}={value} outside"):
            contract.parse_int(feature.name, str(value))


def test_documented_physical_bounds() -> None:
    bounds = {f.name: (f.minimum, f.maximum) for f in contract.NUMERIC_FEATURES}
    assert bounds["aspect"] == (0, 360)
    assert bounds["slope"] == (0, 90)
    for name in ("hillshade_9am", "hillshade_noon", "hillshade_3pm"):
        assert bounds[name] == (0, 255)
    for name in contract.NUMERIC_NAMES:
        if name.startswith("horizontal_distance"):
            assert bounds[name][0] == 0
    assert bounds["vertical_distance_to_hydrology"][0] < -173  # the data set's own minimum
    assert bounds["elevation"][0] <= 1859 and bounds["elevation"][1] >= 3858


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2596", 2596), (" 2596 ", 2596), ("2596.0", 2596), (2596.0, 2596), ("1e3", 1000)],
)
def test_integers_in_every_spelling_parse(value: object, expected: int) -> None:
    assert contract.parse_int("elevation", value) == expected


@pytest.mark.parametrize("value", ["25.5", 25.5, "abc", "", "nan", "inf", None, True, [1]])
def test_non_integers_are_rejected_readably(value: object) -> None:
    with pytest.raises(ValueError, match="slope"):
        contract.parse_int("slope", value)


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("Rawah", "Rawah"),
        ("Neota", "Neota"),
        ("Commanche", "Commanche"),
        ("Commanche Peak", "Commanche"),
        ("Comanche", "Commanche"),
        ("Comanche Peak", "Commanche"),
        ("Cache", "Cache"),
        ("Cache la Poudre", "Cache"),
        ("Cache La Poudre", "Cache"),
        ("  rawah ", "Rawah"),
        ("CACHE LA POUDRE", "Cache"),
    ],
)
def test_wilderness_area_aliases_canonicalise(spelling: str, canonical: str) -> None:
    assert contract.canonical_category("wilderness_area", spelling) == canonical


@pytest.mark.parametrize("soil", contract.SOIL_TYPES, ids=lambda c: c.code)
def test_every_soil_code_and_its_bare_elu_number(soil: contract.Category) -> None:
    elu = soil.code.removeprefix("C")
    assert contract.canonical_category("soil_type", soil.code) == soil.code
    assert contract.canonical_category("soil_type", elu) == soil.code
    assert contract.canonical_category("soil_type", int(elu)) == soil.code
    assert contract.canonical_category("soil_type", soil.code.lower()) == soil.code


def test_the_40_uci_soil_codes_and_4_areas() -> None:
    assert len(contract.SOIL_TYPES) == 40
    assert len({c.code for c in contract.SOIL_TYPES}) == 40
    assert contract.canonical_category("soil_type", "7745") == "C7745"
    assert [c.code for c in contract.WILDERNESS_AREAS] == ["Rawah", "Neota", "Commanche", "Cache"]


@pytest.mark.parametrize(
    ("feature", "value"),
    [("wilderness_area", "Yosemite"), ("wilderness_area", ""), ("soil_type", "C9999")],
)
def test_unknown_categories_name_the_accepted_values(feature: str, value: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown {feature} .*accepted: "):
        contract.canonical_category(feature, value)


def test_category_codes_follow_the_contract_order() -> None:
    assert contract.category_code("wilderness_area", "Cache la Poudre") == 3
    assert contract.category_code("soil_type", "2702") == 0
    assert contract.category_code("soil_type", "C8776") == 39


@pytest.mark.parametrize("label", range(7))
def test_labels_0_to_6(label: int) -> None:
    assert contract.parse_label(str(label)) == label
    assert contract.parse_label(label) == label


@pytest.mark.parametrize("value", ["7", "-1", "1.5", "Aspen", ""])
def test_other_labels_are_rejected(value: str) -> None:
    with pytest.raises(ValueError, match="cover_type"):
        contract.parse_label(value)


def test_label_names_follow_the_course_numbering() -> None:
    assert contract.CLASS_NAMES[0] == "Spruce/Fir"
    assert contract.CLASS_NAMES[1] == "Lodgepole Pine"
    assert contract.CLASS_NAMES[6] == "Krummholz"


def test_course_column_names_map_in_course_order() -> None:
    course = [f.course_name for f in contract.NUMERIC_FEATURES]
    course += ["Wilderness_Area", "Soil_Type", "Cover_Type"]
    assert [contract.canonical_column(name) for name in course] == list(contract.COLUMNS)
    assert contract.canonical_column("\ufeffElevation") == "elevation"
    assert contract.canonical_column("ELEVATION") == "elevation"
    assert contract.canonical_column("something_else") == "something_else"
