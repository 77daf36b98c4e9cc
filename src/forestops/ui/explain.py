"""An explanation from the inference API (`?explain=true`) in words a forester reads:
"Elevation 3,150 m → towards Spruce/Fir +1.8", in the session's language, strongest first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from forestops import contract
from forestops.ui.i18n import class_label, feature_label, number, t


def feature_value(name: str, value: Any) -> tuple[str, str]:
    """("Elevation", "3,150 m"): the feature's name and the record's value with its unit."""
    label, _, unit = feature_label(name).partition(" (")
    unit = unit.rstrip(")")
    if name in contract.CATEGORICAL_FEATURES:
        return label, str(value)
    shown = number(float(value))
    return label, f"{shown}{unit}" if unit == "°" else f"{shown} {unit}".rstrip()


def reasons(
    explanation: Mapping[str, Any], record: Mapping[str, Any]
) -> list[tuple[str, str, float]]:
    """(feature label and value, sentence, contribution) per contract feature, largest push
    (either way) first."""
    class_name = class_label(int(explanation["cover_type"]))
    ranked = sorted(
        explanation["contributions"].items(), key=lambda item: abs(item[1]), reverse=True
    )
    out = []
    for name, amount in ranked:
        label, value = feature_value(name, record[name])
        key = "reason_towards" if amount >= 0 else "reason_away"
        sentence = t(
            key, feature=label, value=value, name=class_name, amount=number(amount, 2, True)
        )
        out.append((f"{label} {value}", sentence, float(amount)))
    return out


def top_reasons(
    explanation: Mapping[str, Any], record: Mapping[str, Any], count: int = 3
) -> list[str]:
    return [sentence for _, sentence, _ in reasons(explanation, record)[:count]]
