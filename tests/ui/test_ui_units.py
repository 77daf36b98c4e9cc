"""The UI's plain functions: CSV checks, the locale files and number formats, quarantine reason grouping, the
Streamlit command line."""

from __future__ import annotations

import re
import string
import tomllib
from pathlib import Path

import pytest

import forestops.ui
from forestops import contract
from forestops.ui.csv_input import EXAMPLE_CSV, check_csv
from forestops.ui.data import reason_column, reason_pattern
from forestops.ui.i18n import FORMATS, LANGUAGES, TEXT, format_number, format_percent
from forestops.ui.launch import streamlit_command
from forestops.ui.section_guard import SOURCES

UI_SOURCES = sorted(Path(forestops.ui.__file__).parent.rglob("*.py"))
COURSE_HEADER = ",".join(
    [f.course_name for f in contract.NUMERIC_FEATURES] + ["Wilderness_Area", "Soil_Type"]
)


def test_the_design_example_passes_as_is() -> None:
    check = check_csv(EXAMPLE_CSV.encode())
    assert check.ok and check.features is not None
    assert list(check.features.columns) == list(contract.FEATURE_NAMES)
    assert check.features.iloc[0].tolist() == EXAMPLE_CSV.splitlines()[1].split(",")
    assert check.labels is None


def test_course_header_bom_semicolons_and_labels_are_accepted() -> None:
    text = (
        "\ufeff"
        + COURSE_HEADER
        + ",Cover_Type\n2596,51,3,258,0,510,211,232,148,6279,Rawah,C7745,4\n"
    )
    check = check_csv(text.replace(",", ";").encode())
    assert check.ok and check.features is not None and check.labels is not None
    assert list(check.features.columns) == list(contract.FEATURE_NAMES)
    assert check.labels.tolist() == ["4"]


@pytest.mark.parametrize(
    ("data", "problem", "detail"),
    [
        (b"elevation,aspect\n1,2\n", "columns", {"missing": list(contract.FEATURE_NAMES[2:])}),
        (
            EXAMPLE_CSV.replace("slope", "slope,notes").replace(",3,", ",3,x,").encode(),
            "columns",
            {"unknown": ["notes"]},
        ),
        (
            EXAMPLE_CSV.replace("elevation", "elevation,Elevation")
            .replace("2596", "2596,2596")
            .encode(),
            "columns",
            {"repeated": ["elevation"]},
        ),
        (b"name,age\nada,36\n", "no_features", {}),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not_text", {}),
        (b"\xff\xfe\xfa", "not_text", {}),
        (b"  \n\n", "empty", {}),
        ((",".join(contract.FEATURE_NAMES) + "\n").encode(), "empty", {}),
        (
            (",".join(contract.FEATURE_NAMES) + "\n" + ",".join(["1"] * 14) + "\n").encode(),
            "unreadable",
            {},
        ),
    ],
)
def test_bad_files_are_named_precisely(
    data: bytes, problem: str, detail: dict[str, list[str]]
) -> None:
    check = check_csv(data)
    assert check.problem == problem
    for field, expected in detail.items():
        assert getattr(check, field) == expected


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_text_exists_in_both_languages_with_the_same_placeholders() -> None:
    for key, versions in TEXT.items():
        assert set(versions) == set(LANGUAGES), key
        assert all(text.strip() for text in versions.values()), key
        assert _placeholders(versions["en"]) == _placeholders(versions["es"]), key


def test_every_guarded_source_has_a_failure_sentence_taking_the_error() -> None:
    for source in SOURCES:
        assert _placeholders(TEXT[f"{source}_failed"]["en"]) == {"error"}, source


def test_every_key_the_pages_ask_for_exists_and_every_entry_is_used() -> None:
    source = "\n".join(path.read_text() for path in UI_SOURCES)
    literal = set(re.findall(r"\bt\(\s*[\"']([^\"']+)[\"']", source))  # t('x') inside f-strings
    assert literal <= set(TEXT), literal - set(TEXT)
    # Keys built at run time: one family per f-string in the pages.
    dynamic = re.findall(r"\bt\(\s*f\"([^{\"]*)\{", source)
    families = [*dynamic, "feature.", "unit."]
    suffix_families = ["_failed"]  # t(f"{source}_failed")
    unused = {
        key
        for key in TEXT
        if key not in literal
        and not any(key.startswith(prefix) for prefix in families if prefix)
        and not any(key.endswith(suffix) for suffix in suffix_families)
        and f'"{key}"' not in source  # keys passed around as data, e.g. metric names
    }
    assert not unused, unused
    assert all(f"feature.{feature}" in TEXT for feature in contract.FEATURE_NAMES)
    assert all(f"unit.{f.unit}" in TEXT for f in contract.NUMERIC_FEATURES)


def test_both_locale_files_hold_the_same_keys_placeholders_and_number_format() -> None:
    locales = Path(forestops.ui.__file__).with_name("locales")
    read = {
        language: tomllib.loads((locales / f"{language}.toml").read_text())
        for language in LANGUAGES
    }
    english, spanish = read["en"], read["es"]
    assert set(english) == set(spanish), set(english) ^ set(spanish)
    for key, text in english.items():
        if key != "format":
            assert _placeholders(text) == _placeholders(spanish[key]), key
    assert set(english["format"]) == set(spanish["format"])
    assert set(TEXT) == set(english) - {"format"}


def test_every_contract_feature_and_cover_type_is_described_once_in_both_languages() -> None:
    assert set(contract.FEATURE_DESCRIPTIONS) == set(contract.FEATURE_NAMES)
    described = [
        *contract.FEATURE_DESCRIPTIONS.values(),
        *(c.description for c in contract.COVER_TYPES),
    ]
    for description in described:
        assert description.en.strip() and description.es.strip(), description
        assert description.en != description.es, description
    assert not any(key.startswith(("help.", "cover.")) for key in TEXT)  # no second copy


@pytest.mark.parametrize(
    ("value", "decimals", "signed", "english", "spanish"),
    [
        (29_283, 0, False, "29,283", "29.283"),
        (2_596, 0, False, "2,596", "2.596"),
        (-3_150.5, 1, False, "-3,150.5", "-3.150,5"),
        (1_234_567.891, 2, True, "+1,234,567.89", "+1.234.567,89"),
        (0.25, 2, True, "+0.25", "+0,25"),
        (950, 0, False, "950", "950"),
    ],
)
def test_numbers_are_written_the_way_each_language_writes_them(
    value: float, decimals: int, signed: bool, english: str, spanish: str
) -> None:
    assert format_number(value, "en", decimals, signed) == english
    assert format_number(value, "es", decimals, signed) == spanish


def test_percentages_follow_the_language() -> None:
    assert format_percent(0.93215, "en") == "93.2%"
    assert format_percent(0.93215, "es") == "93,2\u00a0%"
    assert {f.decimal for f in FORMATS.values()} == {".", ","}


def test_quarantine_reasons_group_by_pattern_and_column() -> None:
    assert reason_pattern("elevation=99999 outside [0, 5000] m") == "elevation=# outside [#, #] m"
    assert reason_pattern({"reason": "slope=91 outside [0, 90] degrees"}).startswith("slope=#")
    assert reason_column("elevation=# outside [#, #] m") == "elevation"
    assert reason_pattern("unknown soil_type 'C9999'; accepted: C2702, C2703") == (
        "unknown soil_type 'C#'"
    )
    assert reason_column("unknown soil_type 'C#'") == "soil_type"
    assert reason_column("horizontal_distance_to_roadways must be an integer") == (
        "horizontal_distance_to_roadways"
    )
    assert reason_column("row has 12 fields, expected 13") == ""


def test_the_streamlit_command_is_headless_private_and_on_the_given_port() -> None:
    command = streamlit_command(8765, "0.0.0.0")
    assert command[1:4] == ["-m", "streamlit", "run"]
    assert Path(command[4]) == Path(forestops.ui.__file__).with_name("app.py")
    flags = dict(flag.removeprefix("--").split("=", 1) for flag in command[5:])
    assert flags["server.headless"] == "true"
    assert flags["browser.gatherUsageStats"] == "false"
    assert flags["server.port"] == "8765"
    assert flags["server.address"] == "0.0.0.0"
    assert flags["client.showErrorDetails"] == "none"
