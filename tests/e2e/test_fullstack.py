"""The full stack for real: `make fullstack`'s harness, driven the way a team drives compose.

One story on one stack (starting it costs about a minute and a half on 2 cores):
the Airflow scheduler queues, a Celery worker runs (its results are in Celery's result backend),
the data DAG harvests a batch into PostgreSQL with lineage and archives the raw payload in S3,
the training DAG registers a champion in the MariaDB-backed tracking server with artifacts in S3,
both inference replicas serve that version, a prediction goes through the load balancer (plain
HTTP and TLS), the monitoring DAG runs; a second training with no new rows is skipped and
`{"force": true}` trains anyway. Last, the app database disappears (an outage): every DAG's
failed task notifies the webhook. SIGTERM then stops the stack and leaves no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pandas as pd
import psycopg
import pytest
from mlflow.tracking import MlflowClient
from sqlalchemy import create_engine, text

from support.airflow_rest import AirflowRest
from support.process_tree import TreeRecorder

DATA, TRAINING, MONITORING = (
    "forest_cover_data_pipeline",
    "forest_training_pipeline",
    "forest_monitoring_pipeline",
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.mariadb,
    pytest.mark.timeout(1800),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    run_dir = tmp_path_factory.mktemp("fullstack")
    overrides = run_dir / "overrides.env"
    # a failure notifies at once (last step); the quickest candidate and batch window keep the
    # four trainings and the harvests short: what is tested here is the stack, not the model
    overrides.write_text(
        "AIRFLOW_TASK_RETRIES=0\nTRAIN_CANDIDATES=logistic_regression\nDATA_API_MIN_UPDATE_TIME_S=30\n"
    )
    log = (run_dir / "stack.log").open("wb")
    harness = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "forestops.fullstack",
            "--run-dir",
            str(run_dir / "run"),
            "--env-file",
            str(overrides),
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        start_new_session=True,  # the tree recorder needs its own session
        env={k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AIRFLOW"))},
    )
    assert harness.stdout is not None
    with TreeRecorder(harness.pid, interval_s=2.0) as tree:
        try:
            line = harness.stdout.readline()
            assert line, f"the harness ended before printing its endpoints:\n{_tail(run_dir)}"
            endpoints: dict[str, Any] = json.loads(line)
            endpoints["test_dir"] = run_dir
            yield endpoints
        finally:
            harness.send_signal(signal.SIGTERM)
            code = harness.wait(timeout=180)
    assert code == 0, _tail(run_dir)
    assert tree.matching("celery worker"), "the harness never ran a Celery worker"
    assert not tree.survivors(), tree.survivors()


def _tail(where: Path | dict[str, Any], lines: int = 80) -> str:
    """The end of the harness's log (every service's output), for a failure message."""
    run_dir = where["test_dir"] if isinstance(where, dict) else where
    return "\n".join((run_dir / "stack.log").read_text(errors="replace").splitlines()[-lines:])


def test_the_dags_run_on_celery_and_every_replica_serves_the_champion(
    stack: dict[str, Any], dataset_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the tracking server runs MLflow's basic-auth app: anonymous requests are refused; the
    # printed mlflow_url carries the read-only account, so a plain client reads the registry
    parts = urlsplit(stack["mlflow_url"])
    assert parts.username == "reader"
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert httpx.get(f"{parts.scheme}://{parts.hostname}:{parts.port}{search}").status_code == 401
    assert httpx.get(f"{stack['mlflow_url']}{search}").status_code == 200
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    airflow = AirflowRest(stack["airflow_url"], stack["airflow_user"], stack["airflow_password"])
    for dag_id in (DATA, TRAINING, MONITORING):
        airflow.wait_for_dag(dag_id)
        airflow.unpause(dag_id)

    # --- data: harvested by a Celery worker into PostgreSQL, raw payloads in S3 ----------------
    run = airflow.trigger(DATA)
    assert airflow.wait(DATA, run, timeout_s=600) == "success", _tail(stack)
    fetch = airflow.task_instances(DATA, run)["fetch_data"]
    assert fetch["state"] == "success" and fetch["queue"] == "default" and fetch["hostname"]
    with psycopg.connect(stack["airflow_database_url"].replace("+psycopg", "")) as conn:
        celery = conn.execute("SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")
        assert celery.fetchone()[0] >= 3  # this run's three tasks went through Celery
    engine = create_engine(stack["database_url"])
    with engine.connect() as conn:
        batch = conn.execute(
            text(
                "SELECT b.id, b.source, b.group_number, b.batch_number, b.payload_uri, count(s.id)"
                " FROM ingestion_batches b JOIN forest_cover_samples s ON s.batch_id = b.id"
                " GROUP BY b.id ORDER BY b.id LIMIT 1"
            )
        ).one()
    assert batch.source.startswith(stack["data_api_url"]) and batch.group_number == 1
    assert batch.batch_number == 1 and batch[5] > 1000
    s3 = boto3.client(
        "s3",
        endpoint_url=stack["s3_endpoint_url"],
        aws_access_key_id="fullstack",
        aws_secret_access_key="fullstack",
        region_name="us-east-1",
    )
    raw_bucket = stack["buckets"][1]
    raw_keys = [o["Key"] for o in s3.list_objects_v2(Bucket=raw_bucket).get("Contents", [])]
    assert batch.payload_uri.removeprefix(f"s3://{raw_bucket}/") in raw_keys

    # --- training: a champion in the tracking server, artifacts in S3, on every replica ---------
    # (the scheduler may have trained a first champion already, from its own data run: then this
    # run's model must beat it, or it stays, and the reload is skipped; either way every replica
    # must end up serving the registry's champion)
    run = airflow.trigger(TRAINING)
    assert airflow.wait(TRAINING, run, timeout_s=900) == "success", _tail(stack)
    tasks = airflow.task_instances(TRAINING, run)
    assert tasks["train_forest_models"]["state"] == "success"
    assert tasks["reload_inference"]["state"] in {"success", "skipped"}
    champion = MlflowClient(stack["mlflow_url"]).get_model_version_by_alias(
        "forest-cover", "champion"
    )
    artifacts = s3.list_objects_v2(Bucket=stack["buckets"][0]).get("Contents", [])
    assert any(o["Key"].endswith("MLmodel") for o in artifacts)
    headers = {"X-API-Key": stack["api_key"]}
    for replica in stack["replica_urls"]:
        metadata = httpx.get(f"{replica}/metadata", headers=headers, timeout=10).json()
        assert metadata.get("model_version") == champion.version, (replica, metadata)
    record = _one_record(dataset_path)
    answer = httpx.post(f"{stack['inference_url']}/predict", json=record, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == champion.version
    with httpx.Client(verify=stack["tls_certificate"]) as tls:
        answer = tls.post(f"{stack['inference_tls_url']}/predict", json=record, headers=headers)
    assert answer.status_code == 200, answer.text

    # --- monitoring, then the training gate: skipped without new rows, forced on demand ---------
    run = airflow.trigger(MONITORING)
    assert airflow.wait(MONITORING, run, timeout_s=600) == "success", _tail(stack)
    airflow.pause_when_idle(DATA, timeout_s=600)  # no data run may bring new rows in between
    run = airflow.trigger(TRAINING)  # learns whatever arrived since the training above
    assert airflow.wait(TRAINING, run, timeout_s=900) == "success", _tail(stack)
    run = airflow.trigger(TRAINING)
    assert airflow.wait(TRAINING, run, timeout_s=300) == "success", _tail(stack)
    assert airflow.task_instances(TRAINING, run)["train_forest_models"]["state"] == "skipped"
    run = airflow.trigger(TRAINING, {"force": True})
    assert airflow.wait(TRAINING, run, timeout_s=900) == "success", _tail(stack)
    assert airflow.task_instances(TRAINING, run)["train_forest_models"]["state"] == "success"

    # --- the operator's actions (the UI's): the operations service moves the alias with the
    # tracking server's trainer account and every replica follows; without the key, nothing ----
    operations, admin = (
        stack["operations_url"],
        {"Authorization": f"Bearer {stack['admin_api_key']}"},
    )
    versions = httpx.get(f"{operations}/versions", headers=admin, timeout=60).json()
    current = next(v["version"] for v in versions if "champion" in v["aliases"])
    other = next(v["version"] for v in versions if "champion" not in v["aliases"])
    promote = {"version": other, "reason": "full-stack check", "actor": "e2e"}
    assert httpx.post(f"{operations}/champion/promote", json=promote).status_code == 401
    answer = httpx.post(f"{operations}/champion/promote", json=promote, headers=admin, timeout=300)
    assert answer.status_code == 200, answer.text
    for replica in stack["replica_urls"]:
        metadata = httpx.get(f"{replica}/metadata", headers=headers, timeout=10).json()
        assert metadata.get("model_version") == other, (replica, metadata)
    back = {"reason": "full-stack check done", "actor": "e2e"}
    answer = httpx.post(f"{operations}/champion/rollback", json=back, headers=admin, timeout=300)
    assert answer.status_code == 200 and answer.json()["to_version"] == current, answer.text

    # --- an outage: the app database is gone; every DAG's failure reaches the webhook ----------
    database = stack["database_url"].rsplit("/", 1)[1]
    admin = os.environ.get("FORESTOPS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    engine.dispose()
    airflow.unpause(DATA)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    runs = {
        DATA: airflow.trigger(DATA),
        TRAINING: airflow.trigger(TRAINING, {"force": True}),
        MONITORING: airflow.trigger(MONITORING),
    }
    for dag_id, run in runs.items():
        assert airflow.wait(dag_id, run, timeout_s=600) == "failed", (dag_id, _tail(stack))
    posts = [json.loads(line) for line in Path(stack["webhook_log"]).read_text().splitlines()]
    notified = " ".join(post["body"]["text"] for post in posts)
    for dag_id, run in runs.items():
        assert f"Airflow task {dag_id}." in notified and run in notified, (dag_id, notified)


def _one_record(dataset: Path) -> dict[str, object]:
    frame = pd.read_csv(dataset, skiprows=range(1, 290_000), nrows=1)
    record: dict[str, object] = json.loads(frame.drop(columns="Cover_Type").iloc[0].to_json())
    return record
