"""The reliance shift's measure (pipeline.reliance.compare): shares of mean |contribution|."""

from __future__ import annotations

import pytest

from forestops import contract
from forestops.pipeline.reliance import compare

FEATURES = contract.FEATURE_NAMES


def test_the_same_reliance_at_another_scale_is_no_shift() -> None:
    training = {name: float(i + 1) for i, name in enumerate(FEATURES)}
    surer = {name: 3 * value for name, value in training.items()}  # larger raw scores everywhere

    result = compare(training, surer)

    assert result["total_shift"] == pytest.approx(0)
    assert all(v["shift"] == pytest.approx(0) for v in result["features"].values())
    assert result["features"]["slope"] == {"training": 3.0, "served": 9.0, "shift": 0.0}


def test_weight_moving_between_features_is_the_difference_of_shares() -> None:
    training = dict.fromkeys(FEATURES, 1.0) | {"elevation": 7.0, "aspect": 3.0}  # total 20
    served = dict.fromkeys(FEATURES, 1.0) | {"elevation": 3.0, "aspect": 7.0}  # total 20

    result = compare(training, served)

    shifts = {name: v["shift"] for name, v in result["features"].items()}
    assert shifts["elevation"] == pytest.approx(-0.2) and shifts["aspect"] == pytest.approx(0.2)
    assert sum(shifts.values()) == pytest.approx(0)
    assert result["total_shift"] == pytest.approx(0.2)  # a fifth of the explanation moved


def test_disjoint_reliance_is_a_total_shift_of_one() -> None:
    training = dict.fromkeys(FEATURES, 0.0) | {"elevation": 2.0}
    served = dict.fromkeys(FEATURES, 0.0) | {"soil_type": 5.0}
    assert compare(training, served)["total_shift"] == pytest.approx(1)
