"""The compiled TreeSHAP kernel gives LightGBM's own `pred_contrib`: every decision type (missing
values as None, zero or NaN, default left or right), values exactly on thresholds, NaN and
(near-)zero inputs, single-leaf trees, features split on again and again down a path, deep
leaf-wise trees. Each case compiles the real kernel with the system C compiler."""

from __future__ import annotations

import itertools
import math
from typing import Any

import lightgbm
import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from forestops.modeling.treeshap import KernelUnavailable, TreeShap, checked, checked_forest
from support.lightgbm_models import CLASSES, probe_rows, trained, with_decision_type

EXACT = 1e-12  # raw-score units; the kernel sums in another order than LightGBM


def lightgbm_contributions(model_text: str, rows: np.ndarray) -> np.ndarray:
    booster = lightgbm.Booster(model_str=model_text)
    return np.asarray(booster.predict(rows, pred_contrib=True)).reshape(len(rows), CLASSES, -1)


def kernel_contributions(model_text: str, rows: np.ndarray, only: np.ndarray | None = None):
    return TreeShap.for_booster(lightgbm.Booster(model_str=model_text)).contributions(rows, only)


@pytest.fixture(scope="module")
def model_text() -> str:
    return trained()


@pytest.mark.parametrize("decision_type", [0, 2, 4, 6, 8, 10])
def test_every_decision_type_gives_lightgbms_contributions(
    model_text: str, decision_type: int
) -> None:
    text = with_decision_type(model_text, decision_type)
    rows = probe_rows(text)
    expected = lightgbm_contributions(text, rows)
    assert np.abs(kernel_contributions(text, rows) - expected).max() <= EXACT


def test_zero_as_missing_model() -> None:
    text = trained(zero_as_missing=True)
    rows = probe_rows(text)
    expected = lightgbm_contributions(text, rows)
    assert np.abs(kernel_contributions(text, rows) - expected).max() <= EXACT


def test_deep_trees_splitting_on_the_same_features_again_and_again() -> None:
    """255 leaves over four features: paths dozens of splits deep, each feature many times on
    one path (the case LightGBM's TreeSHAP undoes and redoes, and the kernel's D accounts for)."""
    text = trained(rows=6000, num_leaves=255, min_data_in_leaf=2)
    shap = TreeShap.for_booster(lightgbm.Booster(model_str=text))
    assert shap.largest > 300  # nodes in the largest tree
    rows = probe_rows(text)[::10]  # LightGBM's own TreeSHAP takes ~15 ms a row on these paths
    expected = lightgbm_contributions(text, rows)
    got = shap.contributions(rows)
    assert np.abs(got - expected).max() <= EXACT
    # additivity, as the API promises it: base + contributions = the raw score
    raw = lightgbm.Booster(model_str=text).predict(rows, raw_score=True)
    assert np.abs(got.sum(axis=2) - raw).max() <= 1e-9


def staircase(features: int) -> lightgbm.Booster:
    """Trees whose deepest path splits on ~`features` distinct features, one after another:
    row k has its first k features 1, the rest 0, and the class k mod 3."""
    steps = np.arange(features + 1).repeat(3)
    matrix = (np.arange(features)[None, :] < steps[:, None]).astype(np.float64)
    params = {
        "objective": "multiclass",
        "num_class": 3,
        "num_leaves": 200,
        "min_data_in_leaf": 1,
        "min_sum_hessian_in_leaf": 0,
        "min_data_in_bin": 1,
        "verbose": -1,
    }
    return lightgbm.train(params, lightgbm.Dataset(matrix, steps % 3, params=params), 2)


def test_paths_through_dozens_of_distinct_features_use_every_quadrature_size() -> None:
    """Up to 64 distinct features a path (32 points, 8 chunks of the kernel's lanes). There the
    kernel is exact where LightGBM is not: LightGBM's TreeSHAP (EXTEND/UNWIND) loses precision
    on 50-feature paths (its contributions miss the raw score by ~1e-4 here), so the kernel is
    held to additivity and to its own answer with more points, and to LightGBM's only loosely."""
    booster = staircase(80)
    shap = TreeShap.for_booster(booster)
    assert shap.points.max() > 24  # paths of 49+ distinct features: chunk counts 7 and 8
    matrix = np.tril(np.ones((81, 80)), -1)  # every step of the staircase
    got = shap.contributions(matrix)
    raw = booster.predict(matrix, raw_score=True)
    assert np.abs(got.sum(axis=2) - raw).max() <= EXACT
    shap.points[shap.points > 2] = 32  # more points than needed changes nothing but rounding
    assert np.abs(shap.contributions(matrix) - got).max() <= EXACT
    lightgbms = np.asarray(booster.predict(matrix, pred_contrib=True)).reshape(got.shape)
    assert np.abs(got - lightgbms).max() <= 1e-3


def test_single_leaf_trees_only_move_the_base() -> None:
    text = trained(rows=200, min_data_in_leaf=150)  # too few rows to split: every tree one leaf
    assert "num_leaves=1\n" in text
    rows = probe_rows(text)
    got = kernel_contributions(text, rows)
    assert not got[:, :, :-1].any()
    assert np.abs(got - lightgbm_contributions(text, rows)).max() <= EXACT


def test_one_class_per_record_leaves_the_others_unexplained(model_text: str) -> None:
    rows = probe_rows(model_text)[:50]
    only = np.arange(len(rows)) % CLASSES
    got = kernel_contributions(model_text, rows, only)
    chosen = got[np.arange(len(rows)), only]
    expected = lightgbm_contributions(model_text, rows)[np.arange(len(rows)), only]
    assert np.abs(chosen - expected).max() <= EXACT
    others = np.arange(CLASSES)[None, :] != only[:, None]
    assert np.isnan(got[others]).all()


def test_no_compiler_is_a_clear_refusal(model_text: str) -> None:
    with pytest.raises(KernelUnavailable, match="did not run"):
        TreeShap.for_booster(lightgbm.Booster(model_str=model_text), compiler="/nonexistent/cc")


def test_a_kernel_answering_otherwise_than_lightgbm_is_refused(
    model_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard `checked` puts before use. Mocked: a kernel that computes something else cannot
    be compiled on purpose, so its answer is shifted after the fact."""
    booster = lightgbm.Booster(model_str=model_text)
    rows = probe_rows(model_text)[:5]
    assert checked(booster, rows).largest > 0
    honest = TreeShap.contributions
    monkeypatch.setattr(TreeShap, "contributions", lambda self, *args: honest(self, *args) + 1e-6)
    with pytest.raises(KernelUnavailable, match="differ from pred_contrib"):
        checked(booster, rows)


@pytest.mark.parametrize("rows", [1, 2, 37])
def test_threads_share_the_trees_of_one_record_or_the_records(model_text: str, rows: int) -> None:
    shap = TreeShap.for_booster(lightgbm.Booster(model_str=model_text))
    matrix = probe_rows(model_text)[:rows]
    only = np.arange(rows) % CLASSES
    for threads in (2, 3, 0):
        for classes in (None, only):
            alone, shared = (
                shap.contributions(matrix, classes),
                shap.contributions(matrix, classes, threads),
            )
            assert shared.shape == alone.shape
            np.testing.assert_allclose(shared, alone, rtol=0, atol=EXACT)


def test_one_records_trees_are_split_by_the_work_of_the_classes_asked() -> None:
    """Each thread gets about the same work for the classes explained (a tree's slots times its
    vectors of points), not the same number of trees: boosting's first trees are the largest."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 12))
    y = ((X[:, :3].sum(axis=1) > 0) * 3 + (X[:, 3] > 0.5) + rng.integers(0, 2, 3000)) % CLASSES
    settings = {"objective": "multiclass", "num_class": CLASSES, "num_leaves": 63}
    settings |= {"min_gain_to_split": 2.0, "min_data_in_leaf": 5, "verbose": -1}
    shap = TreeShap.for_booster(
        lightgbm.train(settings, lightgbm.Dataset(X, y), num_boost_round=20)
    )
    work = np.diff(shap.starts) * ((shap.points + 3) // 4)
    for asked in ([2], [0, 5], [-1]):
        explain = np.array(asked, dtype=np.int32)
        classes = np.arange(len(work)) % CLASSES
        counted = work * (np.isin(classes, explain) | (explain < 0).any())
        bounds = shap._tree_bounds(explain, 3)
        assert bounds[0] == 0 and bounds[-1] == len(work) and bounds == sorted(bounds)
        shares = [counted[a:b].sum() for a, b in itertools.pairwise(bounds)]
        assert all(abs(share - counted.sum() / 3) <= counted.max() for share in shares), shares


def _path_dependent_value(tree, node: int, x: np.ndarray, known: set[int], k: int) -> float:  # type: ignore[no-untyped-def]
    """TreeSHAP's game on one scikit-learn tree: class k's fraction with the features in `known`
    fixed at x and the others averaged over the training rows' cover."""
    left, right = tree.children_left[node], tree.children_right[node]
    if left < 0:
        return float(tree.value[node, 0, k] / tree.value[node, 0].sum())
    feature = tree.feature[node]
    if feature in known:
        child = left if x[feature] <= tree.threshold[node] else right
        return _path_dependent_value(tree, child, x, known, k)
    cover = tree.weighted_n_node_samples
    return (
        cover[left] * _path_dependent_value(tree, left, x, known, k)
        + cover[right] * _path_dependent_value(tree, right, x, known, k)
    ) / cover[node]


def _shapley_by_enumeration(forest, x: np.ndarray, k: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Every coalition of every feature, weighted |S|! (M - |S| - 1)! / M!: the definition."""
    features = len(x)
    phi = np.zeros(features)
    for estimator in forest.estimators_:
        for i in range(features):
            others = [j for j in range(features) if j != i]
            for size in range(features):
                weight = (
                    math.factorial(size) * math.factorial(features - size - 1)
                ) / math.factorial(features)
                for known in itertools.combinations(others, size):
                    with_i = _path_dependent_value(estimator.tree_, 0, x, {*known, i}, k)
                    without = _path_dependent_value(estimator.tree_, 0, x, set(known), k)
                    phi[i] += weight * (with_i - without) / len(forest.estimators_)
    return phi


@pytest.mark.parametrize("kind", [ExtraTreesClassifier, RandomForestClassifier])
def test_a_scikit_learn_forest_gets_shapley_values_by_their_definition(kind: type) -> None:
    """Extra trees (the small-data candidate) and a bootstrapped random forest (weighted covers):
    each class's contributions equal the enumeration over all 2^5 coalitions, and base plus
    contributions is the forest's predict_proba, the classes a record was not asked for NaN."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 5)).astype(np.float32).astype(np.float64)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 0.8) + 2 * (X[:, 4] > 1.2)
    forest = kind(n_estimators=4, max_depth=5, random_state=0).fit(X, y)
    shap = checked_forest(forest, X[:9])
    rows = X[9:14]
    got = shap.contributions(rows)
    for row, k in itertools.product(range(len(rows)), range(len(forest.classes_))):
        assert (
            np.abs(got[row, k, :-1] - _shapley_by_enumeration(forest, rows[row], k)).max() <= EXACT
        )
    assert np.abs(got.sum(axis=2) - forest.predict_proba(rows)).max() <= EXACT
    asked = np.array([0, 3, 1, 2, 0])
    one = shap.contributions(rows, asked)
    picked = (np.arange(len(rows)), asked)
    assert np.array_equal(one[picked], got[picked])
    assert np.isnan(one[np.arange(len(forest.classes_))[None, :] != asked[:, None]]).all()


@pytest.mark.parametrize("wrong", [0, 1, 2])
def test_a_forest_whose_kernel_does_not_add_up_to_predict_proba_is_refused(
    monkeypatch: pytest.MonkeyPatch, wrong: int
) -> None:
    """`checked_forest`'s guard, whichever class is wrong (each check record is asked for one
    class in turn). Mocked as above: the kernel's answer is shifted after the fact."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 3))
    forest = ExtraTreesClassifier(n_estimators=3, random_state=0).fit(
        X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 1)
    )
    assert len(forest.classes_) == 3
    honest = TreeShap.contributions

    def shifted(self: TreeShap, *args: Any) -> np.ndarray:
        answer = honest(self, *args)
        answer[:, wrong] += 1e-6
        return answer

    monkeypatch.setattr(TreeShap, "contributions", shifted)
    with pytest.raises(KernelUnavailable, match="predict_proba"):
        checked_forest(forest, X[:9])
