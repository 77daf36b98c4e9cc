"""A scikit-learn forest's probabilities in one C call (`forest_walk.c`), the same bits as its
`predict_proba`: the service's predictor for a forest champion (the extra trees of a course
group's one batch) where a compiler is at hand.

Why: asking each of 100 trees through `tree_.predict` costs a few µs of Python and NumPy per
tree. Measured in process on the one-batch champion (100 trees, ~12,000 nodes each;
benchmarks/RESULTS.md, ## Inference), encoding included: one record 0.41 ms that way and 0.08 ms
walked; 1,000 records 29 ms and 24 ms, where the trees' own work dominates. The walk copies
each tree's child, feature and threshold arrays contiguous (scikit-learn exposes them as strided
views of its node structs, ~25 bytes a node) and reads the leaf values where scikit-learn keeps
them.
"""

from __future__ import annotations

import ctypes
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from forestops.native import compiled

SOURCE = Path(__file__).with_name("forest_walk.c")
_POINTER = ctypes.c_void_p


@cache
def _declared(compiler: str) -> Any:
    function = compiled(SOURCE, compiler).forestops_forest_proba
    size = ctypes.c_size_t
    function.restype = None
    function.argtypes = [*[_POINTER] * 5, size, size, size, _POINTER, size, size, _POINTER]
    return function


class ForestWalk:
    """(rows, `classes`) probabilities of a float32 matrix, the trees (`tree_`) averaged as
    `predict_proba` averages them. Raises KernelUnavailable without a working compiler."""

    def __init__(self, trees: list[Any], classes: int, compiler: str) -> None:
        self.function = _declared(compiler)
        self.trees, self.classes = len(trees), classes
        # held here as long as the kernel reads them through `pointers`
        self.arrays: dict[str, list[np.ndarray]] = {
            "left": [np.ascontiguousarray(tree.children_left, dtype=np.int32) for tree in trees],
            "right": [np.ascontiguousarray(tree.children_right, dtype=np.int32) for tree in trees],
            "feature": [np.ascontiguousarray(tree.feature, dtype=np.int32) for tree in trees],
            "threshold": [np.ascontiguousarray(tree.threshold, dtype=np.float64) for tree in trees],
            "value": [np.ascontiguousarray(tree.value, dtype=np.float64) for tree in trees],
        }
        self.stride = int(np.prod(self.arrays["value"][0].shape[1:]))  # values per node
        self.pointers = [
            (_POINTER * len(trees))(*(array.ctypes.data for array in column))
            for column in self.arrays.values()
        ]

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        features = np.ascontiguousarray(matrix, dtype=np.float32)
        out = np.empty((len(features), self.classes))
        self.function(
            *self.pointers,
            self.trees,
            self.stride,
            self.classes,
            features.ctypes.data,
            len(features),
            features.shape[1],
            out.ctypes.data,
        )
        return out
