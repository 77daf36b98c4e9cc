"""Training while the full-stack MLflow backend fails: a real `mlflow server` (MariaDB, artifacts
proxied to moto's S3) whose artifact bucket disappears, then which is killed mid-training.

Either way the job must fail with an exception (no hang, no half-success), the champion must stay
the version it was, and no newer version may carry the champion alias. The only stand-in is the
moment of the fault: a wrapper around `log_forest_model` triggers it right when the model is about
to be logged (the call itself then really goes to the broken backend). tests/integration/
test_promotion.py::test_a_job_killed_while_gating_leaves_a_pending_version_and_the_champion covers
the job itself dying between registration and the gate decision.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from pydantic import SecretStr

from forestops.config import Settings
from forestops.pipeline import train as train_module
from forestops.pipeline.train import train
from support.champion import SIGNING_KEY
from support.mlflow_server import MlflowServer, _s3, mlflow_server
from support.training_data import course_rows, seed_samples, tiny

pytestmark = pytest.mark.mariadb

WEAK = {"train_candidates": ("logistic_regression",), "logreg_max_rows": 200}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow-faults")) as running:
        yield running


@pytest.fixture
def fail_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's client retries a dead server for minutes by default; the test wants the verdict."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def versions(client: MlflowClient, settings: Settings) -> dict[str, list[str]]:
    """Each registered version and its aliases."""
    found = client.search_model_versions(f"name = '{settings.model_name}'")  # without aliases
    detailed = (client.get_model_version(settings.model_name, v.version) for v in found)
    return {str(v.version): list(v.aliases) for v in detailed}


def before_logging(monkeypatch: pytest.MonkeyPatch, fault: Callable[[], None]) -> None:
    real = train_module.log_forest_model

    def faulty(*args: Any, **kwargs: Any) -> Any:
        fault()
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "log_forest_model", faulty)


def server_pid(port: str) -> int:
    """The `mlflow server` listening on `port`, found by its command line."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"server" in argv and port.encode() in argv and any(b"mlflow" in a for a in argv):
            return int(entry.name)
    raise LookupError(f"no mlflow server on port {port}")


def test_artifact_store_then_tracking_server_failing_mid_training_keep_the_champion(
    server: MlflowServer,
    settings: Settings,
    dataset_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fail_fast: None,
) -> None:
    settings = tiny(
        settings, mlflow_tracking_uri=server.url, model_signing_key=SecretStr(SIGNING_KEY), **WEAK
    )
    seed_samples(settings, course_rows(dataset_path, 1500))
    assert train(settings).decision == "promoted"
    client = MlflowClient(server.url)
    assert versions(client, settings) == {"1": ["champion"]}

    def lose_the_bucket() -> None:
        s3 = _s3(server.s3_endpoint_url)
        for key in server.s3_keys():
            s3.delete_object(Bucket=server.bucket, Key=key)
        s3.delete_bucket(Bucket=server.bucket)

    before_logging(monkeypatch, lose_the_bucket)
    with pytest.raises(Exception) as s3_failure:
        train(settings)
    assert not isinstance(s3_failure.value, AssertionError)
    assert versions(client, settings) == {"1": ["champion"]}

    port = server.url.rsplit(":", 1)[1]

    def kill_tracking_server() -> None:
        os.killpg(os.getpgid(server_pid(port)), signal.SIGKILL)

    before_logging(monkeypatch, kill_tracking_server)
    with pytest.raises(Exception) as tracking_failure:
        train(settings)
    assert "Connection" in repr(tracking_failure.value) or "connect" in str(tracking_failure.value)
    # The server is gone: read the registry straight from its MariaDB backend.
    assert versions(MlflowClient(server.backend_uri), settings) == {"1": ["champion"]}
