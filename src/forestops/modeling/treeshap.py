"""LightGBM's TreeSHAP contributions, the same numbers, an order of magnitude sooner; and the same
for a forest of scikit-learn classification trees, which has no TreeSHAP of its own here.

Why: `Booster.predict(..., pred_contrib=True)` runs the classic TreeSHAP recursion, whose cost
per tree is ~leaves x depth^2 (every leaf unwinds its path once per feature on it). On the
full-data champion one record's predicted class (432 trees of 255 leaves, paths 20+ deep) took
58 ms against a 5 ms goal (issue 18). `treeshap.c` computes the same path-dependent Shapley values
in ~nodes x depth / 2 per tree:

For a leaf v with value c_v, path features F_v, and per feature j the products z_j of the cover
fractions and p_j of the record's 0/1 decisions along the path, TreeSHAP's game on v is
c_v prod_{j in S} p_j prod_{j not in S} z_j, and its Shapley value for i is
c_v (p_i - z_i) sum_S |S|!(d-1-|S|)!/d! prod_{j in S} p_j prod_{j not in S, j != i} z_j. The weight
is the Beta integral of t^|S| (1-t)^(d-1-|S|) over [0, 1], so the sum is the integral of
prod_{j != i} (z_j + (p_j - z_j) t): a polynomial of degree < d, which Gauss-Legendre quadrature
with ceil(d / 2) points integrates exactly. Evaluated at those points the products are plain
numbers: carried down the tree, summed up over leaves, and handed to each split's feature with
the leaves no deeper split on that feature claims (Linear TreeSHAP, Yu et al., NeurIPS 2022,
reaches the same bound with polynomial arithmetic).

The kernel is a small C file compiled once per process with the system compiler (the images
carry one for the forest compiler); where there is none, or the kernel's answer on the check rows
differs from the booster's by more than `TOLERANCE`, the explainer stays on `pred_contrib`.

A scikit-learn forest (extra trees, random forest) answers the average of its trees' class
fractions, so each tree's leaf holds K values, fraction / trees, and every tree explains every
class: the same game with the probability in place of the raw score. Its trees test
`value <= threshold` on the record's float32 values (scikit-learn's dtype), so `for_forest`'s
callers pass float32-rounded records. With no `pred_contrib` to compare with, `checked_forest`
holds the kernel to additivity against the forest's own `predict_proba`, which only the right
leaves and values give; the unit tests compare it with Shapley values by enumeration.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from forestops.modeling.lightgbm_text import booster_forest
from forestops.native import KernelUnavailable, compiled

if TYPE_CHECKING:
    from lightgbm import Booster
    from sklearn.ensemble._forest import ForestClassifier

SOURCE = Path(__file__).with_name("treeshap.c")
MAX_POINTS = 32  # treeshap.c's: paths with up to 64 distinct features
PLAIN_DECISION = 128  # treeshap.c's: left when value <= threshold (scikit-learn's test)
TOLERANCE = 1e-9  # largest difference from pred_contrib, in raw-score units, that counts as equal
_POINTER = ctypes.c_void_p
T = TypeVar("T")


@cache
def _declared(compiler: str) -> ctypes.CDLL:
    kernel = compiled(SOURCE, compiler)
    kernel.forestops_treeshap_layout.restype = ctypes.c_int32
    size, count = ctypes.c_size_t, ctypes.c_int32
    kernel.forestops_treeshap_layout.argtypes = [
        *[_POINTER] * 7,
        size,  # values per node
        _POINTER,
        size,  # trees
        *[_POINTER] * 11,
    ]
    kernel.forestops_treeshap.restype = ctypes.c_int
    kernel.forestops_treeshap.argtypes = [
        *[_POINTER] * 12,
        *[size] * 4,  # values per node, first, last, classes
        count,
        _POINTER,
        _POINTER,
        _POINTER,
        size,
        size,
        _POINTER,
        _POINTER,
    ]
    return kernel


def _shared(work: Callable[[T], np.ndarray], pieces: list[T]) -> list[np.ndarray]:
    """`work` on every piece, the first in this thread while the pool's threads take the rest."""
    pending = [_pool().submit(work, piece) for piece in pieces[1:]]
    return [work(pieces[0]), *(future.result() for future in pending)]


@cache
def _pool() -> ThreadPoolExecutor:
    """Threads shared by every explanation in the process: one record's halves must not wait
    for threads to be started."""
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="treeshap")


def kernel(compiler: str = "cc") -> ctypes.CDLL:
    """The compiled kernel, built on the first call in this process (about a second of CPU)."""
    return _declared(compiler)


def _quadrature() -> tuple[np.ndarray, np.ndarray]:
    """Row n: the n Gauss-Legendre points and weights moved to [0, 1] (rows of MAX_POINTS)."""
    points = np.full((MAX_POINTS + 1, MAX_POINTS), 0.5)
    weights = np.zeros((MAX_POINTS + 1, MAX_POINTS))
    for n in range(1, MAX_POINTS + 1):
        x, w = np.polynomial.legendre.leggauss(n)
        points[n, :n], weights[n, :n] = (x + 1) / 2, w / 2
    return points, weights


class TreeShap:
    """A forest's trees laid out for the kernel (`forestops_treeshap_layout`): a multiclass
    booster's (`for_booster`) or a scikit-learn forest's (`for_forest`)."""

    def __init__(
        self,
        trees: list[dict[str, np.ndarray]],
        base: np.ndarray,
        num_features: int,
        values: int,
        compiler: str = "cc",
    ) -> None:
        """`trees`: each tree's nodes (`_tree_arrays`' keys, `value` holding `values` per node);
        `base`: the expected score per class; `values`: 1 (tree t adds to class t mod K) or K."""
        self.classes = len(base)
        self.num_features = num_features
        self.values = values
        self.base = base
        starts = np.zeros(len(trees) + 1, dtype=np.int32)
        starts[1:] = np.cumsum([len(tree["left"]) for tree in trees])
        given = {
            key: np.ascontiguousarray(np.concatenate([tree[key] for tree in trees]))
            for key in ("left", "right", "feature", "threshold", "decision", "cover", "value")
        }
        slots = int(starts[-1]) + len(trees)
        self.layout: dict[str, np.ndarray] = {
            "parent": np.zeros(slots, np.int32),
            "earlier": np.zeros(slots, np.int32),
            "edge": np.zeros(slots, np.int32),
            "is_left": np.zeros(slots, np.uint8),
            "z": np.zeros(slots),
            "value": np.zeros(slots * values),
            "split": np.zeros(slots, np.int32),
            "threshold": np.zeros(slots),
            "decision": np.zeros(slots, np.uint8),
        }
        self.starts = starts
        self.inner = np.zeros(len(trees), dtype=np.int32)
        self.points = np.zeros(len(trees), dtype=np.int32)
        self.kernel = kernel(compiler)
        self.largest = self.kernel.forestops_treeshap_layout(
            *(given[key].ctypes.data for key in given),
            values,
            starts.ctypes.data,
            len(trees),
            *(array.ctypes.data for array in self.layout.values()),
            self.inner.ctypes.data,
            self.points.ctypes.data,
        )
        if self.largest < 0:
            raise KernelUnavailable(
                f"a path has more than {2 * MAX_POINTS} distinct features, or memory ran out"
            )
        self.quadrature = _quadrature()
        # Per class k and tree t, the work of class k's trees up to t: a tree's work is its slots
        # times its vectors of points (treeshap.c's chunks of 4).
        cost = np.diff(starts) * ((self.points + 3) // 4)
        of_class = np.arange(len(trees))[None, :] % self.classes == np.arange(self.classes)[:, None]
        if values > 1:  # every tree explains every class
            of_class[:] = True
        self.cumulative_cost = np.cumsum(np.where(of_class, cost, 0), axis=1)

    @classmethod
    def for_booster(cls, booster: Booster, compiler: str = "cc") -> TreeShap:
        forest = booster_forest(booster)
        trees, expected = zip(*map(_tree_arrays, forest.trees), strict=True)
        base = np.zeros(forest.num_class)  # summed tree by tree, as LightGBM sums it
        for index, value in enumerate(expected):
            base[index % forest.num_class] += value
        return cls(list(trees), base, forest.num_features, 1, compiler)

    @classmethod
    def for_forest(cls, forest: ForestClassifier, compiler: str = "cc") -> TreeShap:
        """A fitted scikit-learn forest of classification trees (no class weights, no missing
        values seen in fitting: every split is `value <= threshold`)."""
        classes = len(forest.classes_)
        trees = [
            _sklearn_tree(estimator.tree_, len(forest.estimators_))
            for estimator in forest.estimators_
        ]
        base = np.zeros(classes)
        for tree in trees:
            leaf = tree["left"] < 0
            cover = tree["cover"][leaf] / tree["cover"][0]
            base += cover @ tree["value"].reshape(-1, classes)[leaf]
        return cls(trees, base, forest.n_features_in_, classes, compiler)

    def contributions(
        self, matrix: np.ndarray, only: np.ndarray | None = None, threads: int = 1
    ) -> np.ndarray:
        """(rows, classes, columns + 1) like `pred_contrib` reshaped, the base value last; with
        `only` (a class position per row) the other classes are NaN.

        `threads` (0: every core) share the rows, or one record's trees: the kernel releases the
        GIL, and one record of a full-size champion is milliseconds of work.
        """
        rows, trees = len(matrix), len(self.points)
        features = np.ascontiguousarray(matrix, dtype=np.float64)
        explain = (
            np.full(rows, -1, dtype=np.int32)
            if only is None
            else np.ascontiguousarray(only, dtype=np.int32)
        )
        workers = threads if threads > 0 else os.cpu_count() or 1
        if workers <= 1 or rows == 0:
            contributions = self._run(features, explain, 0, trees)
        elif rows >= workers:
            bounds = np.linspace(0, rows, workers + 1).astype(int).tolist()
            slices = [slice(a, b) for a, b in itertools.pairwise(bounds)]
            parts = _shared(lambda rows: self._run(features[rows], explain[rows], 0, trees), slices)
            contributions = np.concatenate(parts)
        else:
            ranges = list(itertools.pairwise(self._tree_bounds(explain, workers)))
            contributions = np.sum(
                _shared(lambda r: self._run(features, explain, *r), ranges), axis=0
            )
        out = np.empty((rows, self.classes, self.num_features + 1))
        out[:, :, : self.num_features] = contributions
        out[:, :, self.num_features] = self.base
        if only is not None:
            out[np.arange(self.classes)[None, :] != explain[:, None]] = np.nan
        return out

    def work(self, rows: int, only: np.ndarray | None = None) -> int:
        """The kernel's steps (node slots x vectors of points; ~6 ns each on a 2026 server core)
        to explain `rows` records, each for its class position in `only`, or for every class."""
        per_class = self.cumulative_cost[:, -1]
        return int(per_class.sum() * rows if only is None else per_class[only].sum())

    def _tree_bounds(self, explain: np.ndarray, workers: int) -> list[int]:
        """Tree ranges of about equal work for the classes asked (`explain`, -1: every class):
        a split by tree count leaves one thread waiting on the other's deeper trees."""
        asked = np.unique(explain)
        cumulative = self.cumulative_cost[asked if asked[0] >= 0 else slice(None)].sum(axis=0)
        shares = cumulative[-1] * np.arange(1, workers) / workers
        return [0, *np.searchsorted(cumulative, shares).tolist(), len(cumulative)]

    def _run(self, features: np.ndarray, explain: np.ndarray, first: int, last: int) -> np.ndarray:
        """The kernel over trees first..last - 1: (rows, classes, columns), no base."""
        contributions = np.zeros((len(features), self.classes, self.num_features))
        failed = self.kernel.forestops_treeshap(
            *(array.ctypes.data for array in self.layout.values()),
            self.starts.ctypes.data,
            self.inner.ctypes.data,
            self.points.ctypes.data,
            self.values,
            first,
            last,
            self.classes,
            self.largest,
            *(table.ctypes.data for table in self.quadrature),
            features.ctypes.data,
            len(features),
            self.num_features,
            explain.ctypes.data,
            contributions.ctypes.data,
        )
        if failed:
            raise MemoryError("the TreeSHAP kernel could not allocate its work space")
        return contributions


def _tree_arrays(tree: dict[str, str]) -> tuple[dict[str, np.ndarray], float]:
    """One tree's nodes, internal ones first, then leaves (LightGBM's child ~k is leaf k), and its
    expected value (LightGBM's Tree::ExpectedValue, in its order: the base it adds)."""
    leaves = int(tree["num_leaves"])
    leaf_value = np.array(tree["leaf_value"].split(), dtype=np.float64)
    if leaves == 1:  # nothing to explain: its value goes to the base
        none = np.full(1, -1, np.int32)
        alone: dict[str, np.ndarray] = {"left": none, "right": none}
        alone |= {"feature": np.zeros(1, np.int32)}
        alone |= {"threshold": np.zeros(1), "decision": np.zeros(1, np.uint8)}
        return alone | {"cover": np.ones(1), "value": leaf_value}, float(leaf_value[0])
    inner = leaves - 1
    leaf_count = np.array(tree["leaf_count"].split(), dtype=np.float64)
    internal_count = np.array(tree["internal_count"].split(), dtype=np.float64)
    no_children = np.full(leaves, -1, np.int32)
    left, right = (
        np.concatenate([np.where(c >= 0, c, inner + ~c).astype(np.int32), no_children])
        for c in (np.array(tree[key].split(), np.int64) for key in ("left_child", "right_child"))
    )
    arrays = {
        "left": left,
        "right": right,
        "feature": np.concatenate(
            [np.array(tree["split_feature"].split(), np.int32), np.zeros(leaves, np.int32)]
        ),
        "threshold": np.concatenate(
            [np.array(tree["threshold"].split(), np.float64), np.zeros(leaves)]
        ),
        "decision": np.concatenate(
            [np.array(tree["decision_type"].split(), np.uint8), np.zeros(leaves, np.uint8)]
        ),
        "cover": np.concatenate([internal_count, leaf_count]),
        "value": np.concatenate([np.zeros(inner), leaf_value]),
    }
    expected = 0.0
    for value, count in zip(leaf_value.tolist(), leaf_count.tolist(), strict=True):
        expected += count / internal_count[0] * value
    return arrays, expected


def _sklearn_tree(tree: object, trees: int) -> dict[str, np.ndarray]:
    """One scikit-learn tree's nodes (its own numbering: -1 children for a leaf), each leaf's class
    fractions divided by the forest's `trees`: what `predict_proba` averages."""
    left = np.asarray(tree.children_left, dtype=np.int32)  # type: ignore[attr-defined]
    internal = left >= 0
    counts = np.asarray(tree.value[:, 0, :], dtype=np.float64)  # type: ignore[attr-defined]
    fractions = counts / counts.sum(axis=1, keepdims=True)
    return {
        "left": left,
        "right": np.asarray(tree.children_right, dtype=np.int32),  # type: ignore[attr-defined]
        "feature": np.where(internal, tree.feature, 0).astype(np.int32),  # type: ignore[attr-defined]
        "threshold": np.where(internal, tree.threshold, 0.0),  # type: ignore[attr-defined]
        "decision": np.full(len(left), PLAIN_DECISION, dtype=np.uint8),
        "cover": np.asarray(tree.weighted_n_node_samples, dtype=np.float64),  # type: ignore[attr-defined]
        "value": np.ascontiguousarray(np.where(internal[:, None], 0.0, fractions / trees)).ravel(),
    }


def checked(booster: Booster, check: np.ndarray, compiler: str = "cc") -> TreeShap:
    """A TreeShap whose contributions on `check` equal `pred_contrib`'s within TOLERANCE.

    Raises KernelUnavailable otherwise (or when there is no kernel): checked although exact by
    construction, because the kernel is compiled here by whatever compiler is on PATH.
    """
    shap = TreeShap.for_booster(booster, compiler)
    expected = np.asarray(booster.predict(check, pred_contrib=True)).reshape(
        len(check), shap.classes, -1
    )
    difference = float(np.abs(shap.contributions(check) - expected).max())
    if not math.isfinite(difference) or difference > TOLERANCE:
        raise KernelUnavailable(f"contributions differ from pred_contrib's by {difference:.3g}")
    return shap


def checked_forest(forest: ForestClassifier, check: np.ndarray, compiler: str = "cc") -> TreeShap:
    """A TreeShap over a scikit-learn forest whose base plus contributions on `check` (float32
    values) equal the forest's `predict_proba` within TOLERANCE; else KernelUnavailable.

    Each record is checked for one class, the classes taken in turn so that every class's leaf
    values are read: every class of every record would be ~7x the work (1.2 s of the first
    explanation's 1.8 s on a one-batch extra-trees champion), for paths the other records walk.
    """
    shap = TreeShap.for_forest(forest, compiler)
    rows = np.arange(len(check))
    only = rows % shap.classes
    explained = shap.contributions(check, only)[rows, only].sum(axis=1)
    difference = float(np.abs(explained - forest.predict_proba(check)[rows, only]).max())
    if not math.isfinite(difference) or difference > TOLERANCE:
        raise KernelUnavailable(
            f"contributions do not add up to predict_proba: {difference:.3g} off"
        )
    return shap
