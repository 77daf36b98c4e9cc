"""Contract-driven feature encoding: the first step of every model pipeline.

Categories get their codes from the contract (never from the data that happened to arrive), and
the engineered features are the usual Covertype ones (FIELD_NOTES: +0.7 accuracy points). The
whole encoding is plain numpy on three arrays, so the inference service can call
`ContractEncoder.encode_arrays` on validated records without building a DataFrame, and the result
is bit-for-bit what `transform` gives during training and through `mlflow.pyfunc`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from forestops import contract

_IDX = {name: i for i, name in enumerate(contract.NUMERIC_NAMES)}
_N_AREAS = len(contract.WILDERNESS_AREAS)
_N_SOILS = len(contract.SOIL_TYPES)
_WATER_H = "horizontal_distance_to_hydrology"
_WATER_V = "vertical_distance_to_hydrology"
_ROADS = "horizontal_distance_to_roadways"
_FIRE = "horizontal_distance_to_fire_points"
# Each engineered column, in `_engineered`'s order, with the contract features it is computed from:
# explanations hand a column's contribution back to these (modeling.explain), and
# tests/unit/test_explain.py checks by perturbation that each column reads exactly these.
ENGINEERED_SOURCES: dict[str, tuple[str, ...]] = {
    "hydrology_euclidean": (_WATER_H, _WATER_V),
    "elevation_minus_vertical_hydrology": ("elevation", _WATER_V),
    "elevation_minus_horizontal_hydrology": ("elevation", _WATER_H),
    "hydrology_plus_fire": (_WATER_H, _FIRE),
    "hydrology_minus_fire_abs": (_WATER_H, _FIRE),
    "hydrology_plus_roads": (_WATER_H, _ROADS),
    "hydrology_minus_roads_abs": (_WATER_H, _ROADS),
    "fire_plus_roads": (_FIRE, _ROADS),
    "fire_minus_roads_abs": (_FIRE, _ROADS),
    "hillshade_sum": ("hillshade_9am", "hillshade_noon", "hillshade_3pm"),
    "aspect_sin": ("aspect",),
    "aspect_cos": ("aspect",),
}
# Slanted cuts: cover types change along oblique lines in (elevation, distance) and in (roads,
# fire points) -- the distances are the location, roughly -- and axis-aligned trees need many
# splits for each. Weighted sums of contract numbers, {feature: weight}. LightGBM fitted on one
# batch (slice 1, 30k rows) and scored on another (slice 8): 0.9101 -> 0.9130 (benchmarks/RESULTS.md).
OBLIQUE_WEIGHTS: dict[str, dict[str, float]] = {
    "elevation_minus_roads_fiftieth": {"elevation": 1.0, _ROADS: -0.02},
    "elevation_plus_roads_tenth": {"elevation": 1.0, _ROADS: 0.1},
    "elevation_minus_roads_tenth": {"elevation": 1.0, _ROADS: -0.1},
    "elevation_plus_fire_tenth": {"elevation": 1.0, _FIRE: 0.1},
    "elevation_minus_fire_tenth": {"elevation": 1.0, _FIRE: -0.1},
    "roads_plus_twice_fire": {_ROADS: 1.0, _FIRE: 2.0},
    "twice_roads_plus_fire": {_ROADS: 2.0, _FIRE: 1.0},
    "roads_minus_twice_fire": {_ROADS: 1.0, _FIRE: -2.0},
    "twice_roads_minus_fire": {_ROADS: 2.0, _FIRE: -1.0},
}
OBLIQUE_SOURCES = {name: tuple(weights) for name, weights in OBLIQUE_WEIGHTS.items()}
_OBLIQUE_MATRIX = np.array(
    [
        [weights.get(name, 0.0) for weights in OBLIQUE_WEIGHTS.values()]
        for name in contract.NUMERIC_NAMES
    ]
)

Categorical = Literal["ordinal", "onehot"]


def frame_to_arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a frame with canonical or course column names into (numeric, area codes, soil codes).

    Raises ValueError naming missing columns or unknown categories.
    """
    frame = frame.rename(columns=contract.canonical_column)
    missing = [name for name in contract.FEATURE_NAMES if name not in frame.columns]
    if missing:
        raise ValueError(f"missing feature columns: {', '.join(missing)}")
    numeric = frame.loc[:, list(contract.NUMERIC_NAMES)].to_numpy(dtype=np.float64)
    return (
        numeric,
        _codes(frame["wilderness_area"], "wilderness_area"),
        _codes(frame["soil_type"], "soil_type"),
    )


def _codes(values: pd.Series, feature: str) -> np.ndarray:
    lookup = {
        spelling.casefold(): position
        for position, category in enumerate(contract.CATEGORICAL_FEATURES[feature])
        for spelling in (category.code, *category.aliases)
    }
    codes = values.astype(str).str.strip().str.casefold().map(lookup)
    if codes.isna().any():
        bad = values[codes.isna()].iloc[0]
        contract.category_code(feature, bad)  # raises the contract's readable error
    return codes.to_numpy(dtype=np.int64)


class ContractEncoder(TransformerMixin, BaseEstimator):
    """Stateless transformer: raw contract columns -> model matrix.

    `categorical="ordinal"` suits trees (one code column per category feature);
    `"onehot"` suits linear models and kernels (the contract's full category lists, so the
    width never depends on the data). `engineered` adds the derived Covertype features, and
    `oblique` (with them) the slanted cuts of OBLIQUE_WEIGHTS.
    """

    oblique = False  # what an encoder pickled before `oblique` existed computes

    def __init__(
        self, categorical: Categorical = "ordinal", engineered: bool = True, oblique: bool = True
    ) -> None:
        self.categorical = categorical
        self.engineered = engineered
        self.oblique = oblique

    def fit(self, X: pd.DataFrame, y: object = None) -> ContractEncoder:
        self.n_features_in_ = len(contract.FEATURE_NAMES)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.encode_arrays(*frame_to_arrays(X))

    def encode_arrays(self, numeric: np.ndarray, area: np.ndarray, soil: np.ndarray) -> np.ndarray:
        """The encoding itself, on already-validated arrays (the serving fast path)."""
        numeric = np.asarray(numeric, dtype=np.float64).reshape(-1, len(contract.NUMERIC_NAMES))
        blocks = [numeric]
        if self.engineered:
            blocks.append(_engineered(numeric))
        if self.engineered and self.oblique:
            blocks.append(numeric @ _OBLIQUE_MATRIX)
        if self.categorical == "onehot":
            blocks.append(np.eye(_N_AREAS)[area])
            blocks.append(np.eye(_N_SOILS)[soil])
        else:
            blocks.append(np.column_stack([area, soil]).astype(np.float64))
        return np.hstack(blocks)

    def column_sources(self) -> list[tuple[str, ...]]:
        """For each column of the model matrix, the contract features it is computed from."""
        sources: list[tuple[str, ...]] = [(name,) for name in contract.NUMERIC_NAMES]
        if self.engineered:
            sources += ENGINEERED_SOURCES.values()
        if self.engineered and self.oblique:
            sources += OBLIQUE_SOURCES.values()
        widths = (_N_AREAS, _N_SOILS) if self.categorical == "onehot" else (1, 1)
        for name, width in zip(contract.CATEGORICAL_NAMES, widths, strict=True):
            sources += [(name,)] * width
        return sources

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        names = list(contract.NUMERIC_NAMES)
        if self.engineered:
            names += ENGINEERED_SOURCES
        if self.engineered and self.oblique:
            names += OBLIQUE_SOURCES
        if self.categorical == "onehot":
            names += [f"wilderness_area={c.code}" for c in contract.WILDERNESS_AREAS]
            names += [f"soil_type={c.code}" for c in contract.SOIL_TYPES]
        else:
            names += ["wilderness_area_code", "soil_type_code"]
        return np.asarray(names, dtype=object)


def _engineered(x: np.ndarray) -> np.ndarray:
    hh = x[:, _IDX["horizontal_distance_to_hydrology"]]
    vh = x[:, _IDX["vertical_distance_to_hydrology"]]
    road = x[:, _IDX["horizontal_distance_to_roadways"]]
    fire = x[:, _IDX["horizontal_distance_to_fire_points"]]
    elevation = x[:, _IDX["elevation"]]
    aspect = np.deg2rad(x[:, _IDX["aspect"]])
    hillshade = (
        x[:, _IDX["hillshade_9am"]] + x[:, _IDX["hillshade_noon"]] + x[:, _IDX["hillshade_3pm"]]
    )
    return np.column_stack(
        [
            np.hypot(hh, vh),
            elevation - vh,
            elevation - 0.2 * hh,
            hh + fire,
            np.abs(hh - fire),
            hh + road,
            np.abs(hh - road),
            fire + road,
            np.abs(fire - road),
            hillshade,
            np.sin(aspect),
            np.cos(aspect),
        ]
    )
