"""Training against the full-stack backend for real: an `mlflow server` subprocess on MariaDB with
artifacts proxied to S3 (moto's server mode), as in the compose deployment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import LoggedModel
from mlflow.tracking import MlflowClient
from pydantic import SecretStr

from forestops import contract
from forestops.config import Settings
from forestops.modeling.integrity import load_verified
from forestops.modeling.tracking import TAG_DECISION, registered_ref, resolve_serving_model
from forestops.pipeline.retention import TAG_PRUNED, TAG_PRUNED_MODELS, logged_models
from forestops.pipeline.train import train
from support.champion import SIGNING_KEY
from support.mlflow_server import MlflowServer, mlflow_server
from support.training_data import course_rows, eval_split, seed_samples, tiny

pytestmark = pytest.mark.mariadb


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as running:
        yield running


def test_train_registers_gates_and_loads_through_a_tracking_server(
    server: MlflowServer, settings: Settings, dataset_path: Path
) -> None:
    settings = tiny(
        settings,
        mlflow_tracking_uri=server.url,
        model_signing_key=SecretStr(SIGNING_KEY),  # with a tracking server the key must be set
        train_candidates=("logistic_regression", "lightgbm"),
    )
    seed_samples(settings, course_rows(dataset_path, 2000))

    first = train(settings)

    assert (first.decision, first.model_version) == ("promoted", "1")
    client = MlflowClient(server.url)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment_name)
    assert experiment is not None
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server decided
    keys = server.s3_keys()
    assert any(key.endswith("/MLmodel") for key in keys), keys
    assert any(key.endswith("/confusion_matrix.png") for key in keys)
    assert not (settings.forestops_home / "mlruns").exists()  # nothing written locally

    serving = resolve_serving_model(settings, client)
    assert serving is not None and (serving.version, serving.run_id) == (
        "1",
        next(c.run_id for c in first.candidates if c.name == first.best),
    )
    model = load_verified(settings, client, serving)  # signed files, checked after the S3 trip
    features, labels = eval_split(settings)
    predicted = model.predict(features)[contract.LABEL].to_numpy()
    best = next(c for c in first.candidates if c.name == first.best)
    if best.name == "lightgbm":  # small data: fitted again with the evaluation rows once scored
        assert np.mean(predicted == labels) >= best.accuracy
    else:
        assert np.mean(predicted == labels) == pytest.approx(best.accuracy)

    # The gate through the server: the champion is loaded back from S3 and re-scored.
    weak = train(tiny(settings, train_candidates=("logistic_regression",), logreg_max_rows=100))
    assert (weak.decision, weak.model_version) == ("rejected", "2")
    assert client.get_model_version(settings.model_name, "2").tags[TAG_DECISION] == "rejected"
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    assert str(champion.version) == "1"


def test_old_candidates_lose_their_model_files_and_registered_versions_keep_theirs(
    server: MlflowServer, settings: Settings, dataset_path: Path
) -> None:
    """MODEL_RETENTION_JOBS=1 through the server: the second job deletes the first job's losing
    candidate's model (lifecycle and S3 objects) and tags its run; the first job's registered
    winner and everything of the second job stay, and version 1 still loads."""
    settings = tiny(
        settings,
        mlflow_tracking_uri=server.url,
        mlflow_experiment_name="retention",
        model_name="retention",
        model_signing_key=SecretStr(SIGNING_KEY),
        train_candidates=("logistic_regression", "svc"),
        model_retention_jobs=1,
    )
    seed_samples(settings, course_rows(dataset_path, 1500))
    client = MlflowClient(server.url)

    first = train(settings)
    loser = next(c for c in first.candidates if c.name != first.best)
    loser_model = _logged_model(client, loser.run_id)
    winner_model = _logged_model(
        client, next(c.run_id for c in first.candidates if c.name == first.best)
    )
    assert any(loser_model.model_id in key for key in server.s3_keys())
    assert client.get_run(first.run_id).data.tags[TAG_PRUNED_MODELS] == "0"  # nothing older

    second = train(settings)

    assert client.get_run(second.run_id).data.tags[TAG_PRUNED_MODELS] == "1"
    keys = server.s3_keys()
    assert not any(loser_model.model_id in key for key in keys)
    assert any(winner_model.model_id in key for key in keys)
    live = client.search_logged_models([loser_model.experiment_id])
    assert loser_model.model_id not in {model.model_id for model in live}
    assert winner_model.model_id in {model.model_id for model in live}
    pruned_run = client.get_run(loser.run_id)
    assert "older than the last 1 training jobs" in pruned_run.data.tags[TAG_PRUNED]
    assert pruned_run.data.metrics["accuracy"] == pytest.approx(loser.accuracy)  # history stays
    for candidate in second.candidates:  # the newest job keeps every model
        assert TAG_PRUNED not in client.get_run(candidate.run_id).data.tags
    version_one = registered_ref(settings, client, client.get_model_version("retention", "1"))
    model = load_verified(settings, client, version_one)
    assert len(model.predict(eval_split(settings)[0])) > 0


def _logged_model(client: MlflowClient, run_id: str) -> LoggedModel:
    (model,) = logged_models(client, client.get_run(run_id))
    return model
