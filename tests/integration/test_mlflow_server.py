"""Training against the full-stack backend for real: an `mlflow server` subprocess on MariaDB with
artifacts proxied to S3 (moto's server mode), as in the compose deployment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from pydantic import SecretStr

from forestops import contract
from forestops.config import Settings
from forestops.modeling.integrity import load_verified
from forestops.modeling.tracking import TAG_DECISION, resolve_serving_model
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
