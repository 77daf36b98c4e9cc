"""Candidate models: their shape (what serving relies on), their bounds and the seeded split."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forestops import contract
from forestops.config import Settings
from forestops.modeling.candidates import (
    CANDIDATES,
    SMALL_DATA_ROWS,
    build_candidates,
    evaluation_split,
    stratified_split,
)
from forestops.modeling.features import frame_to_arrays
from forestops.modeling.package import PROBABILITY_COLUMNS, ForestCoverModel
from forestops.store.loader import content_hashes
from support.training_data import course_rows

TINY = {
    "svc_max_rows": 300,
    "logreg_max_rows": 400,
    "random_forest_trees": 5,
    "random_forest_max_rows": 500,
    "extra_trees_trees": 10,
    "lightgbm_max_rounds": 40,
    "lightgbm_num_leaves": 15,
    "lightgbm_early_stopping_rounds": 5,
    "lightgbm_validation_fraction": 0.2,
    "train_n_jobs": 1,
}


@pytest.fixture(scope="module")
def rows(dataset_path: Path) -> pd.DataFrame:
    return course_rows(dataset_path, 1500)


def _fit(name: str, rows: pd.DataFrame, **overrides: object):  # type: ignore[no-untyped-def]
    settings = Settings(train_candidates=(name,), **{**TINY, **overrides})  # type: ignore[arg-type]
    (candidate,) = build_candidates(settings)
    features = rows.loc[:, list(contract.FEATURE_NAMES)]
    return candidate.fit(features, rows[contract.LABEL].to_numpy(), seed=7)


def test_stratified_split_keeps_class_shares_and_is_seeded() -> None:
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    rest, holdout = stratified_split(labels, 200, seed=1)
    assert len(holdout) == 200
    assert sorted(np.concatenate([rest, holdout])) == list(range(1000))
    assert np.bincount(labels[holdout]).tolist() == [120, 60, 20]
    again_rest, again_holdout = stratified_split(labels, 200, seed=1)
    assert np.array_equal(holdout, again_holdout) and np.array_equal(rest, again_rest)
    assert not np.array_equal(holdout, stratified_split(labels, 200, seed=2)[1])


def test_stratified_split_accepts_rare_classes() -> None:
    # sklearn's stratified splitters refuse a class with one row; an early store has them.
    labels = np.array([0] * 50 + [1] * 50 + [2, 3, 3])
    rest, holdout = stratified_split(labels, 10, seed=0)
    assert 2 in labels[rest] and 2 not in labels[holdout]  # the single row trains
    assert 3 in labels[rest] and 3 in labels[holdout]  # two rows: one on each side


def _hashes(shares: list[float]) -> list[str]:
    """Content-hash-like hex digests whose evaluation share (last 8 hex digits) is `shares`."""
    return [f"{row:024x}{int(share * 2**32):08x}" for row, share in enumerate(shares)]


def test_evaluation_membership_is_kept_as_rows_are_added(
    rows: pd.DataFrame, dataset_path: Path
) -> None:
    more = course_rows(dataset_path, 1500, skip=len(rows))
    grown = pd.concat([more, rows]).sample(frac=1.0, random_state=3)  # new rows, new order
    first, later = (content_hashes(frame) for frame in (rows, grown))

    def evaluating(hashes: list[str], frame: pd.DataFrame) -> set[str]:
        _, held = evaluation_split(hashes, frame[contract.LABEL].to_numpy(), 0.1)
        return {hashes[row] for row in held}

    before, after = evaluating(first, rows), evaluating(later, grown)
    assert before == after & set(first)  # an old row evaluates now iff it evaluated before
    assert after - set(first)  # and new rows evaluate too
    assert 0.07 < len(after) / len(grown) < 0.13  # the share asked for (1,500 + 1,500 rows)


def test_evaluation_split_keeps_every_class_on_the_training_side() -> None:
    # Class 1's two rows both hash into evaluation, class 2 has one row that does, class 0 none.
    labels = np.array([0, 0, 0, 0, 1, 1, 2])
    hashes = _hashes([0.5, 0.6, 0.7, 0.8, 0.05, 0.02, 0.01])
    train, held = evaluation_split(hashes, labels, 0.1)
    assert held.tolist() == [4]  # class 1 keeps its lowest share (row 5) for training
    assert set(labels[train]) == {0, 1, 2}  # the single-row class trains
    assert sorted([*train, *held]) == list(range(7))


def test_evaluation_split_is_never_empty_on_a_store_with_a_repeated_class() -> None:
    labels = np.array([0, 0, 1, 2, 2])
    hashes = _hashes([0.9, 0.4, 0.2, 0.5, 0.3])  # none in the 0.1 share
    train, held = evaluation_split(hashes, labels, 0.1)
    assert held.tolist() == [4]  # the lowest share among classes with two rows or more
    assert set(labels[train]) == {0, 1, 2}


def test_unknown_or_empty_candidate_lists_are_refused() -> None:
    with pytest.raises(
        ValueError, match=r"unknown candidate\(s\) xgboost; known: logistic_regression"
    ):
        build_candidates(Settings(train_candidates=("lightgbm", "xgboost")))
    with pytest.raises(ValueError, match="empty"):
        build_candidates(Settings(train_candidates=()))


def test_candidates_come_from_settings_in_order_once() -> None:
    settings = Settings(train_candidates="lightgbm, svc,lightgbm")  # type: ignore[arg-type]
    assert [c.name for c in build_candidates(settings)] == ["lightgbm", "svc"]


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_every_candidate_is_encoder_then_model_and_serves_exactly(
    name: str, rows: pd.DataFrame
) -> None:
    fitted = _fit(name, rows)
    assert [step for step, _ in fitted.pipeline.steps] == ["encode", "model"]
    # The serving fast path runs the encoder, then the "model" step: a scaler must live inside it.
    features = rows.loc[:100, list(contract.FEATURE_NAMES)]
    model = ForestCoverModel(fitted.pipeline)
    fast = model.predict_proba_arrays(*frame_to_arrays(features))
    pyfunc = model.predict(None, features).loc[:, list(PROBABILITY_COLUMNS)].to_numpy()
    np.testing.assert_allclose(fast, pyfunc, rtol=1e-9)
    assert fitted.params["candidate"] == name
    assert fitted.params["fit_rows"] <= len(rows)
    assert all(v is None or isinstance(v, str | int | float | bool) for v in fitted.params.values())


def test_linear_and_kernel_models_use_onehot_trees_use_ordinal() -> None:
    """Except the extra trees: random cuts on an ordinal code split soils arbitrarily (one-hot
    scored 0.9206 against 0.9181 on a held-out slice, benchmarks/RESULTS.md)."""
    encoders = {
        name: candidate.pipeline.named_steps["encode"].categorical
        for name, candidate in ((c.name, c) for c in build_candidates(Settings()))
    }
    assert encoders == {
        "logistic_regression": "onehot",
        "svc": "onehot",
        "random_forest": "ordinal",
        "extra_trees": "onehot",
        "lightgbm": "ordinal",
    }


def test_svc_fits_a_bounded_stratified_subsample_and_says_so(rows: pd.DataFrame) -> None:
    fitted = _fit("svc", rows, svc_max_rows=300)
    assert fitted.params["fit_rows"] == pytest.approx(300, abs=4)
    assert fitted.params["subsample"].startswith("stratified ")
    assert "quadratic" in fitted.params["subsample_reason"]


def test_small_data_is_not_subsampled(rows: pd.DataFrame) -> None:
    fitted = _fit("logistic_regression", rows, logreg_max_rows=100_000)
    assert fitted.params["fit_rows"] == len(rows)
    assert "subsample" not in fitted.params


def test_lightgbm_stops_early_on_a_validation_split_carved_from_training(
    rows: pd.DataFrame,
) -> None:
    fitted = _fit("lightgbm", rows, lightgbm_max_rounds=400, lightgbm_validation_fraction=0.05)
    params = fitted.params
    # small data: a 20% split (not 5%), then the model again on every row
    assert params["early_stopping_rows"] == pytest.approx(300, abs=4)
    assert params["stopped_by"] == "early_stopping"
    assert params["best_iteration"] < 400
    found_on = len(rows) - params["early_stopping_rows"]
    assert params["refit_rounds"] == round(params["best_iteration"] * len(rows) / found_on)
    assert params["fit_rows"] == len(rows)
    booster = fitted.pipeline.named_steps["model"].booster_
    assert booster.current_iteration() == params["refit_rounds"]
    assert params["model__learning_rate"] == 0.05  # smaller steps on small data
    assert params["model__metric"] == "multi_error"  # the rounds of the best accuracy
    assert params["model__n_jobs"] == 1 and params["model__num_leaves"] == 15


def test_a_small_data_model_is_refitted_with_the_rows_added_and_its_rounds_scaled(
    rows: pd.DataFrame,
) -> None:
    (candidate,) = build_candidates(Settings(train_candidates=("lightgbm",), **TINY))  # type: ignore[arg-type]
    features, labels = rows.loc[:, list(contract.FEATURE_NAMES)], rows[contract.LABEL].to_numpy()
    fitted = candidate.fit(features.iloc[:1200], labels[:1200], seed=7)
    refitted = candidate.refit_with(fitted, features, labels, seed=7)
    assert refitted is not None
    expected = round(fitted.params["refit_rounds"] * len(rows) / 1200)
    assert refitted.params["refit_rounds"] == expected
    assert refitted.params["fit_rows"] == len(rows)
    assert refitted.pipeline.named_steps["model"].booster_.current_iteration() == expected
    assert refitted.fit_seconds > fitted.fit_seconds
    assert fitted.params["fit_rows"] == 1200  # the scored model is left as it was


def test_extra_trees_are_fitted_again_with_the_evaluation_rows_on_small_data(
    rows: pd.DataFrame,
) -> None:
    """Their score is the model's fitted without the evaluation rows; what serves has them too
    (small data), within the same bounded sample, and one-hot categories feed the trees."""
    (candidate,) = build_candidates(Settings(train_candidates=("extra_trees",), **TINY))  # type: ignore[arg-type]
    features, labels = rows.loc[:, list(contract.FEATURE_NAMES)], rows[contract.LABEL].to_numpy()
    fitted = candidate.fit(features.iloc[:1200], labels[:1200], seed=7)
    assert fitted.params["fit_rows"] == 1200
    assert fitted.params["model__criterion"] == "entropy"
    assert fitted.params["encode__categorical"] == "onehot"
    refitted = candidate.refit_with(fitted, features, labels, seed=7)
    assert refitted is not None
    assert refitted.params["fit_rows"] == len(rows)
    assert refitted.params["refit_on"] == "every row, the evaluation split included"
    assert len(refitted.pipeline.named_steps["model"].estimators_) == 10
    bounded = Settings(train_candidates=("extra_trees",), **{**TINY, "extra_trees_max_rows": 1000})  # type: ignore[arg-type]
    (capped,) = build_candidates(bounded)
    again = capped.refit_with(fitted, features, labels, seed=7)
    assert again is not None and again.params["fit_rows"] == 1000
    assert again.params["subsample"] == f"stratified 1000 of {len(rows)} rows"


def test_extra_trees_on_large_data_fit_once(rows: pd.DataFrame) -> None:
    (candidate,) = build_candidates(Settings(train_candidates=("extra_trees",), **TINY))  # type: ignore[arg-type]
    fitted = _fit("extra_trees", rows)
    large = replace(fitted, params={**fitted.params, "available_rows": SMALL_DATA_ROWS})
    assert candidate.refit_with(large, rows, rows[contract.LABEL].to_numpy(), seed=7) is None


def test_boosting_on_large_data_keeps_its_split_and_fits_once() -> None:
    (candidate,) = build_candidates(Settings(train_candidates=("lightgbm",)))
    assert candidate.early_stopping is not None
    assert candidate.early_stopping.validation_rows(297_655) == round(297_655 * 0.05)
    assert candidate.early_stopping.validation_rows(SMALL_DATA_ROWS) == SMALL_DATA_ROWS // 20
    assert candidate.early_stopping.validation_rows(80_000) == 10_000
    assert candidate.early_stopping.validation_rows(26_789) == round(26_789 * 0.2)
    assert candidate.pipeline.get_params()["model__learning_rate"] == 0.1


def test_lightgbm_time_budget_ends_boosting(rows: pd.DataFrame) -> None:
    fitted = _fit("lightgbm", rows, lightgbm_max_rounds=400, lightgbm_time_budget_s=1e-6)
    assert fitted.params["stopped_by"] == "time_budget"
    assert fitted.params["best_iteration"] == 1
    assert "refit_rounds" not in fitted.params  # a spent budget is not spent twice
    (candidate,) = build_candidates(Settings(train_candidates=("lightgbm",), **TINY))  # type: ignore[arg-type]
    assert candidate.refit_with(fitted, rows, rows[contract.LABEL].to_numpy(), seed=7) is None
    booster = fitted.pipeline.named_steps["model"].booster_
    assert booster.current_iteration() == 1


@pytest.mark.parametrize(("preset", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_batch_jobs_make_openmp_threads_passive_unless_told_otherwise(
    preset: str | None, expected: str
) -> None:
    """Set by the package itself, so every entry point has it before any model library loads
    (the CLI may load the candidates, and LightGBM with them, before the pipeline)."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = (
        "import os, sys, forestops.cli\n"
        "assert 'forestops.pipeline' not in sys.modules\n"
        "print(os.environ['OMP_WAIT_POLICY'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == expected


def test_svc_leaves_out_a_class_too_rare_to_calibrate(rows: pd.DataFrame) -> None:
    rare = pd.concat([rows[rows[contract.LABEL] != 3], rows[rows[contract.LABEL] == 3].head(2)])
    fitted = _fit("svc", rare, svc_max_rows=100_000)
    assert fitted.params["classes_left_out"] == "3"
    probabilities = ForestCoverModel(fitted.pipeline).predict_proba_arrays(
        *frame_to_arrays(rare.loc[:, list(contract.FEATURE_NAMES)].head(5))
    )
    assert probabilities.shape == (5, 7) and not probabilities[:, 3].any()
