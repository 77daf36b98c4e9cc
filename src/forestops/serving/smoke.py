"""The smoke test every model passes before it serves: sane answers on the contract's example and
corners, and the serving fast path equal to the pyfunc path that `mlflow models serve` would use."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forestops import contract
from forestops.modeling.features import frame_to_arrays
from forestops.modeling.package import PROBABILITY_COLUMNS, ForestCoverModel, input_example
from forestops.serving.predictor import Predict
from forestops.serving.served_model import ModelRefused, short


def smoke_frame() -> pd.DataFrame:
    """The contract's input example plus the all-minimum and all-maximum corners of the contract."""
    example = input_example()
    corners = [
        {
            **{f.name: getattr(f, bound) for f in contract.NUMERIC_FEATURES},
            **{name: cats[index].code for name, cats in contract.CATEGORICAL_FEATURES.items()},
        }
        for bound, index in (("minimum", 0), ("maximum", -1))
    ]
    return pd.concat([example, pd.DataFrame(corners)], ignore_index=True)


def smoke_test(model: ForestCoverModel, predict: Predict) -> None:
    """Raise ModelRefused unless `predict` answers sanely and agrees with the pyfunc path."""
    frame = smoke_frame()
    try:
        fast = predict(*frame_to_arrays(frame))
        slow = model.predict(None, frame)[list(PROBABILITY_COLUMNS)].to_numpy()
    except Exception as error:
        raise ModelRefused(f"smoke prediction raised {short(error)}") from error
    expected = (len(frame), len(contract.CLASS_IDS))
    if fast.shape != expected:
        raise ModelRefused(f"smoke prediction has shape {fast.shape}, expected {expected}")
    if not np.isfinite(fast).all():
        raise ModelRefused("smoke prediction gave non-finite probabilities")
    if not np.allclose(fast.sum(axis=1), 1.0, atol=1e-6):
        raise ModelRefused("smoke prediction probabilities do not sum to 1")
    if not np.allclose(fast, slow, atol=1e-9):
        raise ModelRefused("the serving fast path disagrees with the pyfunc predict path")
