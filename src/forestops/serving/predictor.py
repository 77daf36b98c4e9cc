"""The function the service calls per request: the model's array fast path, made leaner still
for the estimators where a wrapper costs more than the trees.

LightGBM's sklearn wrapper introspects its own parameters and re-validates the input on every
`predict_proba` call: ~1.5 ms per call measured here, against ~0.14 ms for `Booster.predict` on
the same row of a 322-tree champion. For a LGBMClassifier that knows all seven classes the
service therefore encodes with the model's own encoder and asks the booster directly, one
thread per call (the service parallelises across calls). A scikit-learn forest (the extra
trees of a small-data champion) costs the same way: `predict_proba` validates the input again
for each of its trees and runs them through joblib, ~9 ms for one record on 100 trees against
0.41 ms through each tree's `tree_.predict` and 0.08 ms walked in C (encoding included; costs
in `forest_walk`); the service walks them in C (where nothing compiles, it asks each tree's
`tree_.predict`) on the float32 matrix scikit-learn would make and averages in scikit-learn's
order, the same bits. Everything else uses `ForestCoverModel.predict_proba_arrays` unchanged.
The holder's smoke test compares whatever this returns with the pyfunc predict path before a
model is ever served; the booster may later give way to its compiled form (`compiled_forest`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from forestops import contract
from forestops.modeling.package import ForestCoverModel
from forestops.native import KernelUnavailable
from forestops.serving.forest_walk import ForestWalk

if TYPE_CHECKING:
    from lightgbm import Booster

log = logging.getLogger(__name__)
Predict = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
Runtime = Literal["pyfunc", "lightgbm", "compiled", "forest"]


def lightgbm_booster(model: ForestCoverModel) -> Booster | None:
    """The booster of a LGBMClassifier that knows all seven classes (its columns are the classes)."""
    from lightgbm import LGBMClassifier

    estimator = model.estimator
    complete = np.array_equal(getattr(estimator, "classes_", ()), contract.CLASS_IDS)
    return estimator.booster_ if isinstance(estimator, LGBMClassifier) and complete else None


def forest_trees(model: ForestCoverModel) -> list[Any] | None:
    """The trees (`tree_`) of a scikit-learn classification forest that knows all seven classes."""
    forest = model.tree_forest
    if forest is not None and np.array_equal(forest.classes_, contract.CLASS_IDS):
        return [tree.tree_ for tree in forest.estimators_]
    return None


def make_predictor(
    model: ForestCoverModel, *, compiler: str, threads: int = 1
) -> tuple[Predict, Runtime]:
    """`compiler`: a forest's trees are walked in C (`forest_walk`) when it compiles.
    `threads`: the booster's per call; one for the service, the job's own for training's check of
    the compiled forest (`shipped_forest.ship`), which has the machine to itself."""
    encode = model.encoder.encode_arrays
    trees = forest_trees(model)
    if trees is not None:
        return _forest_predictor(encode, _tree_by_tree(trees, compiler)), "forest"
    booster = lightgbm_booster(model)
    if booster is None:
        return model.predict_proba_arrays, "pyfunc"

    def predict(numeric: np.ndarray, area: np.ndarray, soil: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(encode(numeric, area, soil), num_threads=threads))

    return predict, "lightgbm"


def _tree_by_tree(trees: list[Any], compiler: str) -> Callable[[np.ndarray], np.ndarray]:
    """The forest's probabilities of a float32 matrix: walked in C, or where that cannot be
    built, each tree asked in NumPy, summed in ForestClassifier.predict_proba's order."""
    classes = len(contract.CLASS_IDS)
    try:
        return ForestWalk(trees, classes, compiler)
    except KernelUnavailable as error:
        log.warning("the forest's trees are asked one by one: %s", error)

    def probabilities(matrix: np.ndarray) -> np.ndarray:
        summed = np.zeros((len(matrix), classes))
        for tree in trees:
            summed += tree.predict(matrix)[:, :classes]
        summed /= len(trees)
        return summed

    return probabilities


def _forest_predictor(encode: Predict, trees: Callable[[np.ndarray], np.ndarray]) -> Predict:
    def predict(numeric: np.ndarray, area: np.ndarray, soil: np.ndarray) -> np.ndarray:
        return trees(np.ascontiguousarray(encode(numeric, area, soil), dtype=np.float32))

    return predict
