"""The DAG files: they import cleanly, define what the README promises, and stay cheap to parse."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.configuration import conf
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import DAG

from forestops.orchestration.airflow_callbacks import notify_task_failure

DAGS = Path(__file__).resolve().parents[2] / "dags"
EXPECTED = {
    "forest_cover_data_pipeline": {
        "schedule": "*/5 * * * *",
        "edges": {
            ("fetch_data", "load_postgres"),
            ("fetch_data", "log_summary"),
            ("load_postgres", "log_summary"),
        },
    },
    "forest_training_pipeline": {
        "schedule": "*/15 * * * *",
        "edges": {
            ("check_new_data", "train_forest_models"),
            ("train_forest_models", "reload_inference"),
        },
    },
    "forest_monitoring_pipeline": {
        "schedule": "0 * * * *",
        "edges": {("monitor_drift", "trigger_retraining")},
    },
}


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=DAGS)


def _edges(dag: DAG) -> set[tuple[str, str]]:
    return {(task.task_id, down) for task in dag.tasks for down in task.downstream_task_ids}


def test_dags_import_without_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == set(EXPECTED)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_schedule_and_task_graph(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.timetable.expression == EXPECTED[dag_id]["schedule"]
    assert _edges(dag) == EXPECTED[dag_id]["edges"]


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_runs_never_pile_up_and_tasks_retry_with_backoff(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert dag.dagrun_timeout is not None and dag.dagrun_timeout <= timedelta(hours=1)
    for task in dag.tasks:
        # retries: Airflow's [core] default_task_retries (compose: AIRFLOW_TASK_RETRIES, default 2)
        assert task.retries == conf.getint("core", "default_task_retries"), task.task_id
        callbacks = task.on_failure_callback
        assert notify_task_failure in (callbacks if isinstance(callbacks, list) else [callbacks])
        assert task.retry_exponential_backoff >= 2, task.task_id
        assert task.max_retry_delay is not None, task.task_id
        assert task.execution_timeout is not None, task.task_id
        assert task.execution_timeout < dag.dagrun_timeout, task.task_id


def test_parsing_imports_no_heavy_library() -> None:
    """The DAG processor parses these files every few seconds: no MLflow, sklearn, LightGBM,
    pandas or forestops at parse time (they load inside the tasks)."""
    heavy = ["mlflow", "sklearn", "lightgbm", "pandas", "forestops.pipeline", "forestops.store"]
    script = (
        "import runpy, sys\n"
        f"for path in {sorted(str(p) for p in DAGS.glob('*.py'))!r}:\n"
        "    runpy.run_path(path)\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
