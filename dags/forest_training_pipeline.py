"""forest_training_pipeline: every 15 minutes, train when new data arrived and serve the winner.

check_new_data -> train_forest_models -> reload_inference, a thin shell over `forestops.pipeline`
(the same calls as `forestops train` and the embedded scheduler of `forestops up`).

- check_new_data: short-circuits the run (both other tasks skipped) unless curated rows arrived
  after the newest batch the last finished training learned from (`pipeline.freshness`), or the
  run was triggered with config `{"force": true}` ("retrain now").
- train_forest_models: `pipeline.train.train`: every candidate, tracked in MLflow, the best one
  registered and promoted to `champion` only if it beats the current one on the same data.
- reload_inference: POST /reload to every inference replica so all of them serve a new champion
  now (skipped when the champion did not change). A replica that is down is a warning, not a
  failed run: it loads the champion by itself at its next poll or start.

A failed task notifies NOTIFY_WEBHOOK_URL after its last retry (`[core] default_task_retries`).

No heavy import or I/O at parse time: forestops, MLflow and the model libraries load in the tasks.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from forestops.orchestration.airflow_callbacks import notify_task_failure

log = logging.getLogger(__name__)


@dag(
    dag_id="forest_training_pipeline",
    schedule="*/15 * * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    default_args={
        "owner": "forestops",
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
        "on_failure_callback": notify_task_failure,
    },
    params={
        "force": Param(False, type="boolean", description="Train even without new data"),
    },
    tags=["forestops", "training"],
    doc_md=__doc__,
)
def forest_training_pipeline() -> None:
    @task.short_circuit(execution_timeout=timedelta(minutes=2))
    def check_new_data() -> bool:
        from forestops.config import get_settings
        from forestops.pipeline.freshness import check_new_data

        freshness = check_new_data(get_settings())
        log.info(freshness.summary())
        if get_current_context()["params"].get("force"):
            log.info("forced: training whatever the data")
            return True
        return freshness.has_new_data

    @task(execution_timeout=timedelta(minutes=45))
    def train_forest_models() -> dict[str, Any]:
        from forestops.config import get_settings
        from forestops.pipeline.train import train

        return train(get_settings()).to_dict()

    @task(execution_timeout=timedelta(minutes=5))
    def reload_inference(training: dict[str, Any]) -> dict[str, Any]:
        from dataclasses import asdict

        from forestops.config import get_settings
        from forestops.pipeline.notify_inference import reload_replicas

        if not training["champion_changed"]:
            raise AirflowSkipException(f"champion unchanged: {training['message']}")
        return {"replicas": [asdict(outcome) for outcome in reload_replicas(get_settings())]}

    trained = train_forest_models()
    check_new_data() >> trained
    reload_inference(trained)


forest_training_pipeline()
