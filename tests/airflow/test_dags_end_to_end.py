"""Both DAGs end to end with `dag.test()`: real PostgreSQL, the built-in data API and the inference
service as real processes (from the project's .venv, as in the compose stack), real MLflow.

One story, in order: ingest a batch, train and promote a champion, the inference service reloads
it and answers a real prediction; a second training run with nothing new skips; a new batch
reopens the gate. Training is kept tiny through the settings (one LightGBM with a few rounds).
Then the crafted-model attack (issue 20) against the same stack: a code-running champion planted
in the registry is refused unloaded by the running service and by the training DAG's gate.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import DAG
from airflow.utils.state import DagRunState, TaskInstanceState
from mlflow.tracking import MlflowClient

from forestops.config import Settings, get_settings
from forestops.modeling.tracking import TAG_DECISION_REASON
from forestops.pipeline.freshness import check_new_data
from forestops.store.database import get_engine
from forestops.webserver import free_port
from support.crafted_model import plant_crafted_champion

ROOT = Path(__file__).resolve().parents[2]
FORESTOPS = ROOT / ".venv/bin/forestops"  # the app environment: FastAPI newer than Airflow allows
ROWS = 2_000  # 10 batches of 200 rows in the data API
ADMIN_KEY = "airflow-test-admin-key"
pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Stack:
    settings: Settings
    inference_url: str
    dags: dict[str, DAG]


@contextmanager
def _process(argv: list[str], env: dict[str, str], log: Path, ready: str) -> Iterator[None]:
    """A server subprocess, up once `ready` answers any HTTP status; stopped afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while True:
                assert process.poll() is None, f"{argv[1]} exited:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"{argv[1]} not up:\n{log.read_text()}"
                try:
                    httpx.get(ready, timeout=2)
                    break
                except httpx.TransportError:
                    time.sleep(0.3)
            yield
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture
def stack(
    home: Path,
    pg_url: str,
    dataset_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    airflow_db: None,
) -> Iterator[Stack]:
    subset = tmp_path / "covertype-subset.csv"  # never committed: written from the shared data
    pd.read_csv(dataset_path, nrows=ROWS).to_csv(subset, index=False)
    data_port, api_port = free_port(), free_port()
    settings_env = {
        "DATABASE_URL": pg_url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "SOURCE_API_BASE_URL": f"http://127.0.0.1:{data_port}",
        "GROUP_NUMBER": "1",
        "TRAIN_CANDIDATES": "lightgbm",
        "LIGHTGBM_MAX_ROUNDS": "15",
        "LIGHTGBM_NUM_LEAVES": "15",
        "TRAIN_MIN_ROWS": "100",
        "TRAIN_N_JOBS": "1",
        "INFERENCE_API_URL": f"http://127.0.0.1:{api_port}",
        "ADMIN_API_KEY": ADMIN_KEY,
        "MODEL_POLL_INTERVAL_S": "0",  # only /reload (or a restart) changes the served model
        "MODEL_STARTUP_WAIT_S": "0",
        "HARVEST_MIN_INTERVAL_S": "0",
    }
    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)
    # Create the MLflow store once, before the service's first refresh and a DAG task race to
    # (sqlite: "table ... already exists"), as `forestops up` does (orchestration.stack).
    MlflowClient(settings_env["MLFLOW_TRACKING_URI"]).search_experiments(max_results=1)
    data_api_env = {
        **os.environ,
        "FORESTOPS_HOME": str(tmp_path / "data-api"),
        "FORESTOPS_DATASET": str(subset),
    }
    data_api = [str(FORESTOPS), "data-api", "--port", str(data_port)]
    data_api += ["--min-update-time", "0", "--sample-fraction", "1"]
    serve = [str(FORESTOPS), "serve", "--port", str(api_port)]
    dagbag = DagBag(dag_folder=ROOT / "dags")
    with (
        _process(
            data_api, data_api_env, tmp_path / "data-api.log", f"http://127.0.0.1:{data_port}/"
        ),
        _process(
            serve, dict(os.environ), tmp_path / "serve.log", f"http://127.0.0.1:{api_port}/health"
        ),
    ):
        yield Stack(get_settings(), f"http://127.0.0.1:{api_port}", dagbag.dags)


def _run(dag: DAG) -> dict[str, str | None]:
    """One `dag.test()` run; the state of each of its tasks."""
    run = dag.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == DagRunState.SUCCESS, states
    return states


def _count(settings: Settings, table: str) -> int:
    with get_engine(settings.database_url).connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())  # noqa: S608


def _predict(stack: Stack, record: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{stack.inference_url}/predict", json=record, timeout=30)


def _family(name: str) -> str:
    return re.sub(r"_(total|bucket|sum|count|created)$", "", name)


def _check_dashboard_metrics(stack: Stack) -> None:
    """The Grafana dashboard (deploy/grafana) queries only metrics the service really exports."""
    exposition = httpx.get(f"{stack.inference_url}/metrics", timeout=10).text
    exported = {
        _family(line.split()[2]) for line in exposition.splitlines() if line.startswith("# TYPE ")
    }
    dashboard = json.loads(
        (ROOT / "deploy/grafana/dashboards/forestops-inference.json").read_text()
    )
    queried = {
        _family(name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"forestops_\w+", target["expr"])
    }
    assert queried and queried <= exported, queried - exported


def test_ingest_train_serve_then_skip_until_new_data(stack: Stack, dataset_path: Path) -> None:
    data_dag, training_dag = (
        stack.dags["forest_cover_data_pipeline"],
        stack.dags["forest_training_pipeline"],
    )
    first = pd.read_csv(dataset_path, nrows=1).drop(columns=["Cover_Type"])
    record = json.loads(first.to_json(orient="records"))[0]  # course CamelCase names
    assert _predict(stack, record).status_code == 503  # no champion yet

    # 1. a harvest of the current batch into PostgreSQL: the API's window is 0, so its second call
    # already brings the next batch, which ends the harvest (that sample is stored too)
    assert set(_run(data_dag).values()) == {TaskInstanceState.SUCCESS}
    assert _count(stack.settings, "ingestion_batches") == 2
    assert _count(stack.settings, "forest_cover_samples") > 100

    # 2. new data: train, promote, and the inference service serves the champion after /reload
    states = _run(training_dag)
    assert set(states.values()) == {TaskInstanceState.SUCCESS}, states
    health = httpx.get(f"{stack.inference_url}/health", timeout=10).json()
    assert health["model_loaded"] and health["model_version"] == "1", health
    answer = _predict(stack, record)
    assert answer.status_code == 200, answer.text
    prediction = answer.json()["predictions"][0]
    assert 0 <= prediction["cover_type"] <= 6
    assert abs(sum(prediction["probabilities"]) - 1) < 1e-6
    _check_dashboard_metrics(stack)

    # 3. nothing new since that training: the gate short-circuits, the run still succeeds
    states = _run(training_dag)
    assert states == {
        "check_new_data": TaskInstanceState.SUCCESS,
        "train_forest_models": TaskInstanceState.SKIPPED,
        "reload_inference": TaskInstanceState.SKIPPED,
    }

    # 4. a new batch reopens it
    assert not check_new_data(stack.settings).has_new_data
    _run(data_dag)
    assert _count(stack.settings, "ingestion_batches") == 4
    assert check_new_data(stack.settings).has_new_data


def test_a_crafted_champion_is_refused_by_the_service_and_the_training_dags_gate(
    stack: Stack, dataset_path: Path, tmp_path: Path
) -> None:
    data_dag, training_dag = (
        stack.dags["forest_cover_data_pipeline"],
        stack.dags["forest_training_pipeline"],
    )
    _run(data_dag)
    _run(training_dag)  # version 1, signed by the DAG's training task, served
    marker = tmp_path / "code-ran"
    crafted, _ = plant_crafted_champion(stack.settings, dataset_path, marker)

    reload = httpx.post(
        f"{stack.inference_url}/reload", headers={"X-API-Key": ADMIN_KEY}, timeout=60
    )
    assert reload.status_code == 409, reload.text
    assert f"refused version {crafted}" in reload.json()["detail"]
    assert httpx.get(f"{stack.inference_url}/health", timeout=10).json()["model_version"] == "1"

    _run(data_dag)  # new rows: the training DAG trains and gates against the planted champion
    states = _run(training_dag)

    assert set(states.values()) == {TaskInstanceState.SUCCESS}, states
    assert not marker.exists()
    client = MlflowClient(stack.settings.mlflow_tracking_uri)
    champion = client.get_model_version_by_alias(stack.settings.model_name, "champion")
    assert int(champion.version) == int(crafted) + 1
    reason = champion.tags[TAG_DECISION_REASON]
    assert f"current champion v{crafted} was refused without being loaded" in reason
    health = httpx.get(f"{stack.inference_url}/health", timeout=10).json()
    assert health["model_version"] == str(champion.version)  # the DAG's reload swapped it in
