"""The candidate models a training job compares: one sklearn Pipeline each, sized by settings.

Every candidate is `Pipeline([("encode", ContractEncoder(...)), ("model", estimator)])`, the shape
`ForestCoverModel` serves; a scaler, where one is needed, lives inside the "model" step so the
serving fast path (encoder, then estimator) stays exact. Models that cannot scale to the whole
store fit on a bounded stratified subsample, and say so in their params (FIELD_NOTES has the
measurements behind each default).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from forestops.config import Settings
from forestops.modeling.features import Categorical, ContractEncoder


def stratified_split(
    labels: np.ndarray, holdout_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (rest, holdout), the holdout ~`holdout_size` rows in the class proportions.

    Unlike sklearn's stratified splitters this accepts classes with a single row (an early,
    small store has them): such a row stays in `rest`, and every class with two or more rows
    appears on both sides. Seeded, so the same labels give the same split.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * holdout_size / len(labels)
    takes = np.floor(exact).astype(np.int64)
    # Largest remainders get the rows rounding left over, so the holdout has exactly the size.
    leftover = int(holdout_size - takes.sum())
    takes[np.argsort(takes - exact)[:leftover]] += 1
    takes = np.minimum(np.maximum(takes, 1), counts - 1)
    held = [
        rng.choice(np.flatnonzero(labels == cls), size=take, replace=False)
        for cls, take in zip(classes, takes, strict=True)
    ]
    holdout = np.sort(np.concatenate(held))
    rest = np.setdiff1d(np.arange(len(labels)), holdout, assume_unique=True)
    return rest, holdout


def evaluation_split(
    hashes: Sequence[str], labels: np.ndarray, fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, evaluation): a row evaluates iff its content hash (the store's dedup
    key, hex) falls in the `fraction` share, so a row that evaluated once evaluates forever as
    the store grows, and a model fitted on one store's training side never saw a later store's
    evaluation rows (the champion gate relies on it, `pipeline.promote`).

    The share is read from the hash's LAST 8 hex digits: `benchmarks/small_data.py` holds rows out
    by the first 8, and the two must not pick the same rows. Tiny stores only, two fallbacks that
    break the "forever": a class whose rows all hash into evaluation keeps one (its lowest share)
    for training, so every class trains (a single-row class always trains); and if no row hashes
    into evaluation, the lowest share of the classes with two rows or more evaluates alone.
    """
    labels = np.asarray(labels)
    share = np.array([int(digest[-8:], 16) for digest in hashes], dtype=np.float64) / 2**32
    held = share < fraction
    classes, counts = np.unique(labels, return_counts=True)
    for cls in classes:
        rows = np.flatnonzero(labels == cls)
        if held[rows].all():
            held[rows[np.argmin(share[rows])]] = False
    if not held.any():
        several = np.isin(labels, classes[counts >= 2])
        if several.any():
            held[np.flatnonzero(several)[np.argmin(share[several])]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


SMALL_DATA_ROWS = 150_000
"""Below this many rows (a course group gets ~30k) boosting is sized for small data: see
`EarlyStopping`. Above it nothing changes: a 5% split is plenty and a refit would double the cost."""
MIN_VALIDATION_ROWS = 10_000
MAX_VALIDATION_SHARE = 0.2


@dataclass(frozen=True)
class EarlyStopping:
    """LightGBM's early stopping on a validation split carved from the training part, plus a
    wall-clock budget so a retrain on a busy machine still ends in bounded time.

    On small data (under SMALL_DATA_ROWS) a 5% split is a few hundred rows per class: its
    accuracy curve is noisy and stops boosting too soon, and it withholds rows the model needs.
    There the split is larger (MIN_VALIDATION_ROWS, at most MAX_VALIDATION_SHARE of the rows),
    the learning rate is `small_data_learning_rate` (more, smaller steps), the rounds are those
    of the best classification error (`small_data_metric`: on 30k rows the log-loss bottoms out
    near round 200 while accuracy still climbs to round 600, 0.906 -> 0.910 on a held-out
    slice), and once the rounds are found the model is fitted again on every row with the rounds
    scaled by the rows added.
    """

    validation_fraction: float
    patience: int
    time_budget_s: float
    small_data_learning_rate: float = 0.05
    small_data_metric: str = "multi_error"

    def validation_rows(self, rows: int) -> int:
        if rows >= SMALL_DATA_ROWS:
            return round(rows * self.validation_fraction)
        floor = min(MIN_VALIDATION_ROWS, round(rows * MAX_VALIDATION_SHARE))
        return max(round(rows * self.validation_fraction), floor)


@dataclass(frozen=True)
class FittedCandidate:
    name: str
    pipeline: Pipeline
    params: dict[str, Any]
    fit_seconds: float


@dataclass(frozen=True)
class Candidate:
    name: str
    pipeline: Pipeline  # unfitted template; `fit` works on a clone
    max_rows: int | None = (
        None  # fit on a stratified subsample this large (models that cannot scale)
    )
    early_stopping: EarlyStopping | None = None
    min_class_rows: int = 1  # classes rarer than this in the fitted rows are left out of the fit
    notes: Mapping[str, str] = field(default_factory=dict)
    refits_small_data: bool = False  # fitted again with the evaluation rows under SMALL_DATA_ROWS

    def fit(self, features: pd.DataFrame, labels: np.ndarray, seed: int) -> FittedCandidate:
        from sklearn.base import clone

        pipeline: Pipeline = clone(self.pipeline)
        params: dict[str, Any] = {
            "candidate": self.name,
            "available_rows": len(labels),
            **self.notes,
        }
        if self.max_rows is not None and len(labels) > self.max_rows:
            _, sample = stratified_split(labels, self.max_rows, seed)
            features, labels = features.iloc[sample], labels[sample]
            params["subsample"] = f"stratified {len(sample)} of {params['available_rows']} rows"
        classes, counts = np.unique(labels, return_counts=True)
        rare = classes[counts < self.min_class_rows]
        if len(rare):
            kept = ~np.isin(labels, rare)
            features, labels = features.iloc[np.flatnonzero(kept)], labels[kept]
            params["classes_left_out"] = ",".join(str(c) for c in rare)
        fit_params: dict[str, Any] = {}
        budget = None
        everything = features, labels
        small = self.early_stopping is not None and len(labels) < SMALL_DATA_ROWS
        if self.early_stopping is not None:
            if small:
                pipeline.set_params(
                    model__learning_rate=self.early_stopping.small_data_learning_rate,
                    model__metric=self.early_stopping.small_data_metric,
                )
            rest, validation = stratified_split(
                labels, self.early_stopping.validation_rows(len(labels)), seed
            )
            encoder: ContractEncoder = pipeline.named_steps["encode"]
            budget = _TimeBudget(self.early_stopping.time_budget_s)
            fit_params = {
                "model__eval_X": encoder.transform(features.iloc[validation]),
                "model__eval_y": labels[validation],
                "model__callbacks": [
                    lgb.early_stopping(self.early_stopping.patience, verbose=False),
                    budget,
                ],
            }
            features, labels = features.iloc[rest], labels[rest]
            params["early_stopping_rows"] = len(validation)
        started = time.perf_counter()
        # One BLAS thread: the linear algebra here is small, and OpenBLAS threads spinning on a
        # shared 2-core machine made the logistic regression 8x slower (31 s instead of 3.8 s).
        with threadpool_limits(limits=1, user_api="blas"):
            pipeline.fit(features, labels, **fit_params)
        params["fit_rows"] = len(labels)
        if budget is not None:
            model = pipeline.named_steps["model"]
            params["best_iteration"] = model.best_iteration_
            params["stopped_by"] = (
                "time_budget"
                if budget.fired
                else "early_stopping"
                if model.best_iteration_ < model.n_estimators
                else "max_rounds"
            )
            if small and not budget.fired:  # a busy machine: do not spend the budget twice
                pipeline = _refit(pipeline, *everything, model.best_iteration_, params)
        fit_seconds = time.perf_counter() - started
        params.update(_scalar_params(pipeline))
        return FittedCandidate(self.name, pipeline, params, fit_seconds)

    def refit_with(
        self, fitted: FittedCandidate, features: pd.DataFrame, labels: np.ndarray, seed: int
    ) -> FittedCandidate | None:
        """`fitted` once more on `features` (every row it was fitted on and more: the training
        job's evaluation split, once it has been scored), or None where that is not done.

        Only on small data (under SMALL_DATA_ROWS) and only for a candidate that gains from it: a
        boosted model whose rounds are known (see `EarlyStopping`; they are scaled by the rows
        added) or one that `refits_small_data`. A few thousand rows more are worth a point there;
        above SMALL_DATA_ROWS another fit would double the longest step of the job for ~0.1 point.
        """
        started = time.perf_counter()
        if "refit_rounds" in fitted.params:
            params = dict(fitted.params)
            pipeline = _refit(fitted.pipeline, features, labels, params["refit_rounds"], params)
        elif self.refits_small_data and fitted.params["available_rows"] < SMALL_DATA_ROWS:
            again = self.fit(features, labels, seed)
            pipeline, params = again.pipeline, again.params
        else:
            return None
        params["refit_on"] = "every row, the evaluation split included"
        seconds = fitted.fit_seconds + time.perf_counter() - started
        return FittedCandidate(self.name, pipeline, params, seconds)


def _refit(
    found: Pipeline,
    features: pd.DataFrame,
    labels: np.ndarray,
    found_rounds: int,
    params: dict[str, Any],
) -> Pipeline:
    """`found_rounds` (fitted on `params["fit_rows"]` rows), scaled by the rows added, fitted on
    every row of `features` (the rows held back are what small data lacks most)."""
    from sklearn.base import clone

    rounds = max(1, round(found_rounds * len(labels) / params["fit_rows"]))
    refit: Pipeline = clone(found)
    refit.set_params(model__n_estimators=rounds)
    with threadpool_limits(limits=1, user_api="blas"):
        refit.fit(features, labels)
    params.update(refit_rounds=rounds, fit_rows=len(labels))
    return refit


class _TimeBudget:
    """LightGBM callback: stop boosting (keeping the trees so far) once the budget is spent."""

    order = 40  # after early_stopping (30), so its bookkeeping for this round is done

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.fired = False

    def __call__(self, env: Any) -> None:
        if time.monotonic() > self.deadline:
            self.fired = True
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)


def _scalar_params(pipeline: Pipeline) -> dict[str, Any]:
    """The pipeline's hyper-parameters that make sense as MLflow params (no nested objects)."""
    return {
        key: value
        for key, value in pipeline.get_params(deep=True).items()
        if value is None or isinstance(value, str | int | float | bool)
    }


def _pipeline(categorical: Categorical, engineered: bool, model: Any) -> Pipeline:
    encoder = ContractEncoder(categorical=categorical, engineered=engineered)
    return Pipeline([("encode", encoder), ("model", model)])


def _scaled(estimator: Any) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("classifier", estimator)])


def logistic_regression(settings: Settings) -> Candidate:
    return Candidate(
        "logistic_regression",
        _pipeline("onehot", True, _scaled(LogisticRegression(max_iter=300))),
        max_rows=settings.logreg_max_rows,
    )


_CALIBRATION_FOLDS = 3


def svc(settings: Settings) -> Candidate:
    # Platt scaling on cross-validated decision values, then one SVC on all rows: what
    # `SVC(probability=True)` did, in the form scikit-learn 1.9 asks for (it deprecates the flag).
    model = CalibratedClassifierCV(
        SVC(kernel="rbf", random_state=settings.train_seed),
        method="sigmoid",
        cv=_CALIBRATION_FOLDS,
        ensemble=False,
    )
    return Candidate(
        "svc",
        _pipeline("onehot", True, _scaled(model)),
        max_rows=settings.svc_max_rows,
        min_class_rows=_CALIBRATION_FOLDS,  # each fold needs every class
        notes={"subsample_reason": "kernel SVC fit time is quadratic in rows"},
    )


def _full_depth_forest(
    name: str,
    forest: type[RandomForestClassifier | ExtraTreesClassifier],
    categorical: Categorical,
    settings: Settings,
    max_rows: int,
    refits_small_data: bool,
    **options: Any,
) -> Candidate:
    """Fully grown trees, averaged: their size and fit time grow with the rows, hence `max_rows`."""
    model = forest(n_jobs=settings.train_n_jobs, random_state=settings.train_seed, **options)
    return Candidate(
        name,
        _pipeline(categorical, True, model),
        max_rows=max_rows,
        refits_small_data=refits_small_data,
        notes={"subsample_reason": "full-depth trees grow with rows: bounds fit time and size"},
    )


def random_forest(settings: Settings) -> Candidate:
    return _full_depth_forest(
        "random_forest",
        RandomForestClassifier,
        "ordinal",
        settings,
        settings.random_forest_max_rows,
        refits_small_data=False,
        n_estimators=settings.random_forest_trees,
    )


def extra_trees(settings: Settings) -> Candidate:
    # Fully grown trees on random cuts, averaged: on the ~30k rows a course group gets they score
    # above the boosting (0.920 against 0.912 on two held-out slices; benchmarks/RESULTS.md, Small
    # data), which has too few rows there to learn the map's fine detail, so like the boosting they
    # are refitted with the evaluation rows there. One-hot categories and a third of the columns
    # per split were the best of the settings tried. On more rows the boosting wins and these grow
    # with the rows, hence the bounded sample.
    return _full_depth_forest(
        "extra_trees",
        ExtraTreesClassifier,
        "onehot",
        settings,
        settings.extra_trees_max_rows,
        refits_small_data=True,
        n_estimators=settings.extra_trees_trees,
        criterion="entropy",
        max_features=0.3,
    )


def lightgbm(settings: Settings) -> Candidate:
    # lambda_l2=1 is what keeps 255-leaf boosting from collapsing on this data (FIELD_NOTES).
    model = lgb.LGBMClassifier(
        n_estimators=settings.lightgbm_max_rounds,
        num_leaves=settings.lightgbm_num_leaves,
        learning_rate=0.1,
        reg_lambda=1.0,
        n_jobs=settings.train_n_jobs,
        random_state=settings.train_seed,
        verbose=-1,
    )
    return Candidate(
        "lightgbm",
        _pipeline("ordinal", True, model),
        early_stopping=EarlyStopping(
            validation_fraction=settings.lightgbm_validation_fraction,
            patience=settings.lightgbm_early_stopping_rounds,
            time_budget_s=settings.lightgbm_time_budget_s,
        ),
    )


CANDIDATES: Mapping[str, Callable[[Settings], Candidate]] = {
    "logistic_regression": logistic_regression,
    "svc": svc,
    "random_forest": random_forest,
    "extra_trees": extra_trees,
    "lightgbm": lightgbm,
}


class CandidateConfigError(ValueError):
    """TRAIN_CANDIDATES names no candidate or an unknown one (checked before any work starts)."""


def build_candidates(settings: Settings) -> list[Candidate]:
    """The candidates named in `settings.train_candidates`, in that order."""
    known = ", ".join(CANDIDATES)
    unknown = [name for name in settings.train_candidates if name not in CANDIDATES]
    if unknown:
        raise CandidateConfigError(f"unknown candidate(s) {', '.join(unknown)}; known: {known}")
    if not settings.train_candidates:
        raise CandidateConfigError(f"TRAIN_CANDIDATES is empty; known: {known}")
    return [CANDIDATES[name](settings) for name in dict.fromkeys(settings.train_candidates)]
