"""Train a tiny real model and make it the champion, the way the training pipeline does.

The serving tests need a real registered champion (a pyfunc with the contract encoder inside,
tagged and signed like a candidate run, registered and aliased) but not a good one: 20 trees on
a few thousand rows of the shared data train in about a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.pipeline import Pipeline

from forestops import contract
from forestops.config import Settings
from forestops.modeling.features import ContractEncoder
from forestops.modeling.integrity import sign_logged_model
from forestops.modeling.package import log_forest_model
from forestops.modeling.tracking import PRIMARY_METRIC, TAG_CANDIDATE, TAG_KIND, mlflow_uris

# The test stores' key: their settings are copied into other homes, which must verify the same
# signatures (a key generated per FORESTOPS_HOME would differ).
SIGNING_KEY = "forestops-tests-model-signing-key-0123456789abcdef"


def read_rows(dataset: Path, rows: int) -> pd.DataFrame:
    """The first `rows` course-format rows, renamed to canonical columns."""
    frame = pd.read_csv(dataset, nrows=rows)
    return frame.rename(columns=contract.canonical_column)


def tiny_pipeline(frame: pd.DataFrame, n_estimators: int = 20, **params: Any) -> Pipeline:
    from lightgbm import LGBMClassifier

    pipeline = Pipeline(
        [
            ("encode", ContractEncoder()),
            ("model", LGBMClassifier(n_estimators=n_estimators, verbose=-1, **params)),
        ]
    )
    return pipeline.fit(frame[list(contract.FEATURE_NAMES)], frame[contract.LABEL])


class NaNEstimator(ClassifierMixin, BaseEstimator):
    """Loads fine, answers garbage: what the holder's smoke prediction exists to catch."""

    def fit(self, X: Any, y: Any) -> NaNEstimator:
        self.classes_ = np.asarray(contract.CLASS_IDS)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.full((len(X), len(contract.CLASS_IDS)), np.nan)


class Memoriser(ClassifierMixin, BaseEstimator):
    """Right on every row it was fitted on, `unseen_class` on any other: a model whose score on
    its own training rows says nothing (the champion gate must not score it on them)."""

    def __init__(self, unseen_class: int = 3) -> None:
        self.unseen_class = unseen_class

    def fit(self, X: Any, y: Any) -> Memoriser:
        self.classes_ = np.asarray(contract.CLASS_IDS)
        rows = np.asarray(X, dtype=np.float64)
        self.memory_ = {row.tobytes(): int(label) for row, label in zip(rows, y, strict=True)}
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        rows = np.asarray(X, dtype=np.float64)
        labels = [self.memory_.get(row.tobytes(), self.unseen_class) for row in rows]
        return np.eye(len(self.classes_))[labels]


def memorising_pipeline(frame: pd.DataFrame) -> Pipeline:
    pipeline = Pipeline([("encode", ContractEncoder()), ("model", Memoriser())])
    return pipeline.fit(frame[list(contract.FEATURE_NAMES)], frame[contract.LABEL].to_numpy())


def broken_pipeline() -> Pipeline:
    return Pipeline([("encode", ContractEncoder()), ("model", NaNEstimator().fit(None, None))])


def log_candidate(
    settings: Settings, pipeline: Pipeline, accuracy: float, *, champion: bool = True
) -> tuple[str, str | None]:
    """Log `pipeline` as a candidate run, signed as training signs; register it and move the
    champion alias when asked.

    Returns (run_id, registered version or None).
    """
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment_name)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(
            settings.mlflow_experiment_name,
            artifact_location=settings.mlflow_artifacts_dir.as_uri(),
        )
    )
    with mlflow_uris(settings.mlflow_tracking_uri):
        with mlflow.start_run(
            experiment_id=experiment_id, tags={TAG_KIND: "candidate", TAG_CANDIDATE: "lightgbm"}
        ) as run:
            mlflow.log_params({"estimator": type(pipeline[-1]).__name__})
            mlflow.log_metric(PRIMARY_METRIC, accuracy)
            info = log_forest_model(pipeline)
        sign_logged_model(settings, client, info.model_id)
        if not (champion and settings.mlflow_enable_model_registry):
            return run.info.run_id, None
        version = mlflow.register_model(info.model_uri, settings.model_name)
    client.set_registered_model_alias(settings.model_name, settings.champion_alias, version.version)
    return run.info.run_id, str(version.version)


@contextmanager
def serving(
    settings: Settings, model_name: str, encoder: ContractEncoder, estimator: Any, dataset: Path
) -> Iterator[Any]:
    """`estimator` behind `encoder`, fitted on the first 2,000 rows, as the champion of
    `model_name` (a name of its own: no other test's champion moves), served by the real app.
    Imported here: the Airflow tests import this module in a venv without the service's
    dependencies."""
    from fastapi.testclient import TestClient

    from forestops.serving.app import create_app
    from forestops.serving.holder import ModelHolder

    training = read_rows(dataset, 2000)
    pipeline = Pipeline([("encode", encoder), ("model", estimator)]).fit(
        training[list(contract.FEATURE_NAMES)], training[contract.LABEL]
    )
    settings = settings.model_copy(update={"model_name": model_name})
    log_candidate(settings, pipeline, 0.7)
    holder = ModelHolder(settings)
    holder.start()
    try:
        with TestClient(create_app(settings, holder)) as client:
            yield client
    finally:
        holder.stop()


def version_files(settings: Settings, version: str) -> Path:
    """The folder holding a registered version's files in a local (file) artifact store."""
    uri = MlflowClient(settings.mlflow_tracking_uri).get_model_version_download_uri(
        settings.model_name, version
    )
    return Path(uri.removeprefix("file://"))


@dataclass(frozen=True)
class ChampionStore:
    """A sqlite MLflow store with two logged tiny models; `a` is `settings.model_name@champion`.

    Tests that move aliases register these same runs under a model name of their own, so no test
    changes what another one sees.
    """

    settings: Settings
    run_a: str
    run_b: str

    def register(self, run_id: str, model_name: str, *, champion: bool = True) -> str:
        """Register `run_id`'s logged model as a new version of `model_name` (no retraining)."""
        client = MlflowClient(self.settings.mlflow_tracking_uri)
        try:
            client.create_registered_model(model_name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        model_id = client.get_run(run_id).outputs.model_outputs[0].model_id
        version = client.create_model_version(
            model_name,
            client.get_logged_model(model_id).artifact_location,
            run_id=run_id,
            model_id=model_id,
        )
        if champion:
            client.set_registered_model_alias(
                model_name, self.settings.champion_alias, version.version
            )
        return str(version.version)


@cache
def champion_store(root: Path, dataset: Path) -> ChampionStore:
    """Two logged candidates and a registered champion under `root`, built once per root in a
    test session (`cache`: a session fixture imported into a module is per module). Each module
    passes a root of its own, so the versions and aliases one module registers (test_serving_holder
    re-aliases the champion) are not what another module's counts of reloads start from."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        forestops_home=root,
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        api_keys=(),
        admin_api_key=None,
        model_signing_key=SIGNING_KEY,
        model_poll_interval_s=0,
        # The booster itself; tests/integration/test_serving_compiled.py covers the compiled runtime.
        inference_runtime="native",
    )
    frame = read_rows(dataset, 3000)
    run_a, _ = log_candidate(settings, tiny_pipeline(frame, 20), 0.9)
    run_b, _ = log_candidate(settings, tiny_pipeline(frame, 5, num_leaves=7), 0.8, champion=False)
    return ChampionStore(settings, run_a, run_b)
