"""A real full-stack MLflow for tests: `mlflow server` (a subprocess) on MariaDB, artifacts in S3.

The shape of the compose deployment, on loopback: a fresh MariaDB database as backend store and
moto's S3 server as the artifact bucket. Artifacts are PROXIED (`--serve-artifacts
--artifacts-destination s3://...`): clients speak only HTTP to the tracking server and need no S3
credentials, exactly as in the full stack where only the server talks to MinIO. (MLflow
experiments remember the mode they were created in, so the deployment uses the same one.)

    with mlflow_server(tmp_path) as server:
        settings = Settings(mlflow_tracking_uri=server.url)

Everything started here is stopped here: the server's process group, moto, the database.
Nothing is skipped: without MariaDB on 127.0.0.1:3306 the fixture fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pymysql
import pytest

from forestops.webserver import free_port
from support.training_data import TINY

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class MlflowServer:
    url: str  # tracking URI for clients
    backend_uri: str
    bucket: str
    s3_endpoint_url: str
    log_file: Path

    def s3_keys(self) -> list[str]:
        """Every object key in the artifact bucket (to prove artifacts really went to S3)."""
        keys: list[str] = []
        for page in (
            _s3(self.s3_endpoint_url).get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        ):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys


@contextmanager
def mlflow_server(workdir: Path, startup_timeout: float = 120.0) -> Iterator[MlflowServer]:
    with _moto() as s3_endpoint, _mariadb_database() as backend_uri:
        bucket = "mlflow-artifacts"
        _s3(s3_endpoint).create_bucket(Bucket=bucket)
        port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        log_file = workdir / "mlflow-server.log"
        command = [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            backend_uri,
            "--serve-artifacts",
            "--artifacts-destination",
            f"s3://{bucket}/mlflow",
        ]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
            **S3_CREDENTIALS,
            "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole below
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, process, log_file, startup_timeout)
            yield MlflowServer(url, backend_uri, bucket, s3_endpoint, log_file)
        finally:
            _stop(process)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"mlflow server not healthy within {timeout}s:\n{_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _s3(endpoint_url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    )


@contextmanager
def _moto() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextmanager
def _mariadb_database() -> Iterator[str]:
    name = f"mlflow_test_{uuid.uuid4().hex[:12]}"
    with pymysql.connect(**MARIADB, connect_timeout=5, autocommit=True) as conn:
        conn.cursor().execute(f"CREATE DATABASE `{name}`")
    try:
        yield f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    finally:
        with pymysql.connect(**MARIADB, connect_timeout=5, autocommit=True) as conn:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


def operator_environment(
    tracking_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch, **extra: str
) -> dict[str, str]:
    """What an operator's shell holds against the shared tracking server (the tests' tiny
    training settings, a model and experiment name of this test's own), set in the environment
    and returned; `extra` adds or replaces variables."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    env = {
        "MLFLOW_TRACKING_URI": tracking_url,
        "MODEL_NAME": name,
        "MLFLOW_EXPERIMENT_NAME": name,
        "INFERENCE_API_URL": "http://127.0.0.1:9",  # nothing listens: reload is best effort
        "INFERENCE_RUNTIME": "native",
        **{key.upper(): str(value) for key, value in TINY.items()},
        **extra,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
