"""The generated C reproduces LightGBM's own predictions: every decision type (missing values as
None, zero or NaN, default left or right), values exactly on a threshold, NaN and (near-)zero
inputs, single-leaf trees, any split into translation units. Each case compiles a real library
with the system C compiler and compares it with `lightgbm.Booster.predict` on the same model text.
"""

from __future__ import annotations

import re
from pathlib import Path

import lightgbm
import numpy as np
import pytest

from forestops.modeling.lightgbm_text import (
    Forest,
    UnsupportedModel,
    booster_forest,
    parse_model,
)
from forestops.serving.compiled_forest import build_library, load_forest
from forestops.serving.forest_codegen import forest_source, ranked_thresholds
from support.lightgbm_models import CLASSES, probe_rows, trained, with_decision_type


def compiled(model_text: str, directory: Path, units: int = 2) -> np.ndarray:
    target = directory / f"forest-{units}.so"
    build_library(model_text, target, units=units)
    predict = load_forest(target, lambda numeric, area, soil: numeric)
    rows = probe_rows(model_text)
    return predict(rows, np.zeros(len(rows)), np.zeros(len(rows)))


def native(model_text: str) -> np.ndarray:
    return lightgbm.Booster(model_str=model_text).predict(probe_rows(model_text), num_threads=1)


@pytest.fixture(scope="module")
def model_text() -> str:
    return trained()


@pytest.mark.parametrize("decision_type", [0, 2, 4, 6, 8, 10])
def test_every_decision_type_gives_lightgbms_answers(
    model_text: str, decision_type: int, tmp_path: Path
) -> None:
    text = with_decision_type(model_text, decision_type)
    expected, answered = native(text), compiled(text, tmp_path)
    assert np.array_equal(expected.argmax(axis=1), answered.argmax(axis=1))
    assert np.abs(expected - answered).max() <= 1e-12


def test_the_models_own_decision_types_and_nan_handling(model_text: str, tmp_path: Path) -> None:
    assert {"decision_type=2", "decision_type=10"} & set(
        re.findall(r"decision_type=\d+", model_text)
    )
    assert np.abs(native(model_text) - compiled(model_text, tmp_path)).max() <= 1e-12


def test_zero_as_missing_model(tmp_path: Path) -> None:
    text = trained(zero_as_missing=True)
    assert np.abs(native(text) - compiled(text, tmp_path)).max() <= 1e-12


def test_single_leaf_trees(tmp_path: Path) -> None:
    text = trained(rows=200, min_data_in_leaf=150)  # too few rows to split: every tree one leaf
    assert "num_leaves=1\n" in text
    assert np.abs(native(text) - compiled(text, tmp_path)).max() <= 1e-12


def test_translation_units_do_not_change_the_sums(model_text: str, tmp_path: Path) -> None:
    one, five = compiled(model_text, tmp_path, units=1), compiled(model_text, tmp_path, units=5)
    assert len(forest_source(model_text, units=5).units) == 5
    assert np.array_equal(one, five)  # the same additions in the same order: bit for bit


def test_models_it_cannot_reproduce_are_refused() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 5, size=(500, 2)).astype(float), rng.integers(0, CLASSES, 500)
    settings = {"objective": "multiclass", "num_class": CLASSES, "verbose": -1}
    categorical = lightgbm.train(
        {**settings, "min_data_per_group": 5, "cat_smooth": 1},
        lightgbm.Dataset(X, y, categorical_feature=[0]),
        num_boost_round=3,
    ).model_to_string()
    with pytest.raises(UnsupportedModel, match="categorical"):
        parse_model(categorical)
    binary = lightgbm.train(
        {"objective": "binary", "verbose": -1}, lightgbm.Dataset(X, y % 2), num_boost_round=2
    ).model_to_string()
    with pytest.raises(UnsupportedModel, match="not multiclass"):
        parse_model(binary)
    bagged = {**settings, "boosting": "rf", "bagging_fraction": 0.5, "bagging_freq": 1}
    forest = lightgbm.train(bagged, lightgbm.Dataset(X, y), num_boost_round=2).model_to_string()
    with pytest.raises(UnsupportedModel, match="average_output"):
        parse_model(forest)


def test_a_boosters_forest_read_from_the_file_it_writes_is_the_forest_of_its_text(
    model_text: str,
) -> None:
    """`booster_forest` (what the TreeSHAP kernel is laid out from) reads the model line by line
    from a file instead of `model_to_string()`: the same header facts and trees."""
    booster = lightgbm.Booster(model_str=model_text)
    read = booster_forest(booster)
    assert read == parse_model(booster.model_to_string())
    assert read.num_class == CLASSES and len(read.trees) == booster.num_trees()
    assert read.trees[0]["num_leaves"] == model_text.split("num_leaves=", 1)[1].split()[0]


def test_trees_hold_no_double_constants(model_text: str) -> None:
    """A split of missing type None compares the row's rank against an integer, and a leaf's value
    is its bit pattern as an integer: no double constant in the trees' code (each would be a
    constant-pool load per tree); the thresholds live once, sorted, in the rank tables."""
    text = with_decision_type(model_text, 0)
    source = forest_source(text, units=1)
    assert "r[" in source.units[0]
    assert not re.search(r"0x[0-9a-f.]+p[-+]?\d+", source.units[0])  # no C hex float
    leaves = parse_model(text).trees[0]["leaf_value"].split()
    assert all(f"{np.float64(v).view(np.uint64):#x}ULL" in source.units[0] for v in leaves)
    tables = ranked_thresholds(parse_model(text))
    assert all(values == sorted(set(values)) for values in tables)
    assert sum(map(len, tables)) > 0


def test_a_feature_with_more_thresholds_than_ranks_hold_is_refused() -> None:
    count = 65_536
    tree = {
        "num_leaves": str(count + 1),
        "split_feature": " ".join(["0"] * count),
        "threshold": " ".join(str(float(i)) for i in range(count)),
        "decision_type": " ".join(["2"] * count),
    }
    with pytest.raises(UnsupportedModel, match="distinct thresholds"):
        ranked_thresholds(Forest(CLASSES, 1, [tree]))
