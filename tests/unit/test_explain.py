"""The attribution of engineered columns to contract features is only as good as the declared
sources: each engineered column must read exactly the features `ENGINEERED_SOURCES` names."""

from __future__ import annotations

import numpy as np
import pytest

from forestops import contract
from forestops.modeling.explain import shares
from forestops.modeling.features import ENGINEERED_SOURCES, ContractEncoder


def _changed_columns(encoder: ContractEncoder, feature: str) -> set[str]:
    numeric = np.array([[f.default for f in contract.NUMERIC_FEATURES]], dtype=np.float64)
    area, soil = np.array([1]), np.array([5])
    before = encoder.encode_arrays(numeric, area, soil)
    if feature == "wilderness_area":
        area = np.array([2])
    elif feature == "soil_type":
        soil = np.array([6])
    else:
        numeric[0, contract.NUMERIC_NAMES.index(feature)] += 37
    after = encoder.encode_arrays(numeric, area, soil)
    names = encoder.get_feature_names_out()
    return {str(names[i]) for i in np.flatnonzero(before[0] != after[0])}


@pytest.mark.parametrize("categorical", ["ordinal", "onehot"])
def test_each_model_column_reads_exactly_its_declared_sources(categorical: str) -> None:
    encoder = ContractEncoder(categorical)  # type: ignore[arg-type]
    names = [str(name) for name in encoder.get_feature_names_out()]
    declared = dict(zip(names, encoder.column_sources(), strict=True))
    for feature in contract.FEATURE_NAMES:
        reading = {column for column, sources in declared.items() if feature in sources}
        changed = _changed_columns(encoder, feature)
        assert changed <= reading, feature  # a change never lands in an undeclared column
        if feature not in contract.CATEGORICAL_NAMES:
            assert changed == reading, feature  # and every declared column really reads it
    assert set(ENGINEERED_SOURCES) <= set(names)


def test_shares_hand_out_each_column_whole() -> None:
    matrix = shares(ContractEncoder().column_sources())
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-15)
    hillshade_sum = list(ContractEncoder().get_feature_names_out()).index("hillshade_sum")
    assert matrix[hillshade_sum, contract.FEATURE_NAMES.index("hillshade_3pm")] == 1 / 3
