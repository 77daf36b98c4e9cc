"""Backup and restore in the full-stack shape: PostgreSQL app database, an MLflow tracking server
on MariaDB with its artifacts in S3 (moto), a trained champion served over HTTP. Everything is
restored into NEW stores (another PostgreSQL database, another MariaDB database, another S3
server), a tracking server and an inference service are started on them, and the restored
service must serve the same champion with the same answers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from forestops import contract
from forestops.cli import app
from forestops.config import Settings, get_settings
from forestops.pipeline.model_ops import promote_version
from forestops.pipeline.train import train
from forestops.serving.app import create_app
from forestops.store import dump
from forestops.store.database import get_engine
from forestops.webserver import BackgroundServer
from support.mlflow_server import S3_CREDENTIALS, MlflowServer, mlflow_server
from support.training_data import course_rows, seed_samples, tiny

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.mariadb]

SIGNING_KEY = "backup-tests-model-signing-key-0123456789abcdef"


def stack_env(server: MlflowServer, database_url: str) -> dict[str, str]:
    """The settings of a full stack on these stores, and where its MLflow keeps things."""
    return {
        "DATABASE_URL": database_url,
        "MLFLOW_TRACKING_URI": server.url,
        "MODEL_SIGNING_KEY": SIGNING_KEY,
        "MODEL_POLL_INTERVAL_S": "0",
        "INFERENCE_RUNTIME": "native",
        "MLFLOW_BACKEND_STORE_URI": server.backend_uri,
        "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{server.bucket}/mlflow",
        "MLFLOW_S3_ENDPOINT_URL": server.s3_endpoint_url,
        **S3_CREDENTIALS,
    }


def use(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return get_settings()


def answers(settings: Settings, records: list[dict[str, Any]]) -> tuple[str, list[Any]]:
    """(served version, the service's answer to `records`) from a fresh inference service."""
    with BackgroundServer(create_app(settings)) as service:
        version = httpx.get(f"{service.url}/metadata", timeout=30).json()["model_version"]
        response = httpx.post(f"{service.url}/predict", json=records, timeout=60)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    return version, [(p["cover_type"], p["probabilities"]) for p in predictions]


def test_a_restored_stack_serves_the_same_champion_with_the_same_answers(
    tmp_path: Path,
    home: Path,
    dataset_path: Path,
    pg_url: str,
    other_pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = course_rows(dataset_path, 200, skip=3000)[list(contract.FEATURE_NAMES)]
    records = records.to_dict("records")
    folder = tmp_path / "backup"
    with mlflow_server(tmp_path / "mlflow-a") as source:
        settings = use(stack_env(source, pg_url), monkeypatch)
        seed_samples(settings, course_rows(dataset_path, 3000), batches=3)
        assert train(tiny(settings, train_candidates=("lightgbm",))).decision == "promoted"
        promote_version(settings, "1", actor="dana", reason="an audit row to carry over")
        served = answers(settings, records)
        rows = dump.row_counts(get_engine(pg_url))

        made = CliRunner().invoke(app, ["backup", str(folder)])
        assert made.exit_code == 0, made.output
        assert "artifact files" in made.stdout

    assert served[0] == "1"
    with mlflow_server(tmp_path / "mlflow-b") as target:
        assert target.backend_uri != source.backend_uri
        settings = use(stack_env(target, other_pg_url), monkeypatch)

        restored = CliRunner().invoke(app, ["restore", str(folder)])

        assert restored.exit_code == 0, restored.output
        assert dump.row_counts(get_engine(other_pg_url)) == rows
        client = MlflowClient(settings.mlflow_tracking_uri)
        champion = client.get_model_version_by_alias(settings.model_name, "champion")
        assert champion.version == "1"
        assert answers(settings, records) == served
        # the restored store goes on: the next training registers version 2
        seed_samples(settings, course_rows(dataset_path, 500, skip=4000))
        assert train(tiny(settings, train_candidates=("lightgbm",))).model_version == "2"

        again = CliRunner().invoke(app, ["restore", str(folder)])
        assert again.exit_code == 1 and "not empty" in again.stderr


def test_backup_needs_mlflows_database_not_the_tracking_server(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.delenv("MLFLOW_BACKEND_STORE_URI", raising=False)
    outcome = CliRunner().invoke(app, ["backup", str(tmp_path / "b")])
    assert outcome.exit_code == 1
    assert "pass --mlflow-backend" in outcome.stderr
    assert not os.path.exists(tmp_path / "b")


def test_an_embedded_home_restored_into_another_home_serves_the_same_answers(
    tmp_path: Path, dataset_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite files and local artifact folders: the restored registry points at the new home's
    folder (the old home is gone when the new one serves)."""
    import shutil

    records = course_rows(dataset_path, 100, skip=2000)[list(contract.FEATURE_NAMES)]
    records = records.to_dict("records")
    old_home, new_home = tmp_path / "old", tmp_path / "new"
    settings = use({"FORESTOPS_HOME": str(old_home), "INFERENCE_RUNTIME": "native"}, monkeypatch)
    seed_samples(settings, course_rows(dataset_path, 2000))
    assert train(tiny(settings, train_candidates=("lightgbm",))).decision == "promoted"
    served = answers(settings, records)
    assert CliRunner().invoke(app, ["backup", str(tmp_path / "backup")]).exit_code == 0
    key = (old_home / "model-signing.key").read_text()  # the embedded key is part of the home
    shutil.rmtree(old_home)

    settings = use({"FORESTOPS_HOME": str(new_home), "MODEL_SIGNING_KEY": key}, monkeypatch)
    restored = CliRunner().invoke(app, ["restore", str(tmp_path / "backup")])

    assert restored.exit_code == 0, restored.output
    assert answers(settings, records) == served
    client = MlflowClient(settings.mlflow_tracking_uri)
    where = client.get_model_version_download_uri(settings.model_name, "1")
    assert where.startswith(new_home.as_uri())
