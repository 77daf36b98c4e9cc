"""Every sentence of the UI in English and Spanish (the course's language), read from locale files.

`locales/en.toml` and `locales/es.toml` hold the same keys; pages ask for text by key
(`t("predict_title")`) and the language lives in the session, so one set of pages serves both
languages. What each feature and cover type means comes from the data contract (one description in
both languages, shared with the API's schema); labels, units and sentences from the locale files,
and so does the way each language writes numbers (29,283 and 93.2% vs 29.283 y 93,2 %).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Literal

import streamlit as st

from forestops import contract

Language = Literal["en", "es"]
LANGUAGES: Final[dict[Language, str]] = {"en": "English", "es": "Español"}
SESSION_KEY = "language"


@dataclass(frozen=True, slots=True)
class NumberFormat:
    """How a language writes numbers: its separators and where the % goes."""

    thousands: str
    decimal: str
    percent: str


def _read_locale(language: Language) -> dict[str, Any]:
    text = (resources.files("forestops.ui") / "locales" / f"{language}.toml").read_text("utf-8")
    return tomllib.loads(text)


_LOCALES: Final = {language: _read_locale(language) for language in LANGUAGES}
FORMATS: Final[dict[Language, NumberFormat]] = {
    language: NumberFormat(**locale.pop("format")) for language, locale in _LOCALES.items()
}
TEXT: Final[dict[str, dict[Language, str]]] = {
    key: {language: _LOCALES[language][key] for language in LANGUAGES if key in _LOCALES[language]}
    for key in {key: None for locale in _LOCALES.values() for key in locale}
}
"""key -> language -> text (a key missing from one file shows up here with one language only)."""


def language() -> Language:
    """The session's choice; before any, a `?lang=es` link's (shareable Spanish pages)."""
    chosen = st.session_state.get(SESSION_KEY) or st.query_params.get("lang", "en")
    return chosen if chosen in LANGUAGES else "en"


def t(key: str, /, **values: Any) -> str:
    """The text for `key` in the session's language, with `values` filled in."""
    text = TEXT[key][language()]
    return text.format(**values) if values else text


def _in_language(description: contract.Description) -> str:
    return description.es if language() == "es" else description.en


def class_label(class_id: int) -> str:
    cover = contract.COVER_TYPES[class_id]
    return cover.name_es if language() == "es" else cover.name


def class_description(class_id: int) -> str:
    return _in_language(contract.COVER_TYPES[class_id].description)


def feature_label(name: str) -> str:
    return t(f"feature.{name}")


def feature_help(name: str) -> str:
    """The description, plus the accepted range for a number (the same bounds the API enforces)."""
    described = _in_language(contract.FEATURE_DESCRIPTIONS[name])
    spec = contract.NUMERIC_BY_NAME.get(name)
    if spec is None:
        return described
    unit = t(f"unit.{spec.unit}")
    accepted = t("range", minimum=number(spec.minimum), maximum=number(spec.maximum), unit=unit)
    return f"{described}. {accepted}."


def format_number(
    value: float, written_in: Language, decimals: int = 0, signed: bool = False
) -> str:
    """`value` as `written_in` writes it: 29,283 and 3,150.5 in English, 29.283 and 3.150,5 in Spanish."""
    style = FORMATS[written_in]
    integer, _, fraction = f"{value:{'+' if signed else ''},.{decimals}f}".partition(".")
    integer = integer.replace(",", style.thousands)
    return f"{integer}{style.decimal}{fraction}" if fraction else integer


def number(value: float, decimals: int = 0, signed: bool = False) -> str:
    """`value` as the session's language writes numbers."""
    return format_number(value, language(), decimals, signed)


def format_percent(share: float, written_in: Language, decimals: int = 1) -> str:
    """A share 0..1 as a percentage as `written_in` writes it: 93.2% or 93,2 %."""
    shown = format_number(100 * share, written_in, decimals)
    return FORMATS[written_in].percent.format(number=shown)


def percent(share: float, decimals: int = 1) -> str:
    """A share 0..1 as a percentage in the session's language."""
    return format_percent(share, language(), decimals)


def category_label(feature: str, code: str) -> str:
    """ "C7745 · Como - Legault families complex..." (the ELU names are proper names: untranslated)."""
    for category in contract.CATEGORICAL_FEATURES[feature]:
        if category.code == code:
            return f"{code} · {category.label}"
    return code


def language_selector(container: Any, key: str) -> None:
    """A language switch that takes effect for the whole next run, navigation titles included."""

    def remember() -> None:
        st.session_state[SESSION_KEY] = st.session_state[key]

    options = list(LANGUAGES)
    container.segmented_control(
        "Language / Idioma",
        options,
        default=language(),
        required=True,
        format_func=LANGUAGES.__getitem__,
        key=key,
        on_change=remember,
    )
