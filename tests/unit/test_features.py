"""The encoder's slanted cuts, and models logged before them still encoding as they were fitted."""

from __future__ import annotations

import pickle

import numpy as np

from forestops import contract
from forestops.modeling.features import ENGINEERED_SOURCES, OBLIQUE_WEIGHTS, ContractEncoder


def _rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    numeric = rng.uniform(0, 3000, size=(5, len(contract.NUMERIC_NAMES)))
    return numeric, np.array([0, 1, 2, 3, 0]), np.array([0, 5, 10, 39, 7])


def test_oblique_columns_are_their_weighted_sums() -> None:
    encoder = ContractEncoder()
    numeric, area, soil = _rows()
    matrix = encoder.encode_arrays(numeric, area, soil)
    names = list(encoder.get_feature_names_out())
    column = {name: i for i, name in enumerate(contract.NUMERIC_NAMES)}
    for name, weights in OBLIQUE_WEIGHTS.items():
        expected = sum(weight * numeric[:, column[source]] for source, weight in weights.items())
        np.testing.assert_allclose(matrix[:, names.index(name)], expected, rtol=1e-12)
    assert matrix[0, names.index("roads_minus_twice_fire")] == (
        numeric[0, column["horizontal_distance_to_roadways"]]
        - 2 * numeric[0, column["horizontal_distance_to_fire_points"]]
    )


def test_an_encoder_pickled_before_the_oblique_cuts_encodes_as_it_was_fitted() -> None:
    old = ContractEncoder()
    del old.__dict__["oblique"]  # what unpickling a model logged before `oblique` gives
    revived = pickle.loads(pickle.dumps(old))
    numeric, area, soil = _rows()
    width = len(contract.NUMERIC_NAMES) + len(ENGINEERED_SOURCES) + 2
    matrix = revived.encode_arrays(numeric, area, soil)
    assert matrix.shape == (5, width) == (5, len(revived.get_feature_names_out()))
    np.testing.assert_array_equal(
        matrix, ContractEncoder(oblique=False).encode_arrays(numeric, area, soil)
    )
    assert len(revived.column_sources()) == width
    assert ContractEncoder().encode_arrays(numeric, area, soil).shape[1] == width + len(
        OBLIQUE_WEIGHTS
    )
