"""forest_monitoring_pipeline: hourly, check the champion against recent data; retrain on an alert.

monitor_drift -> trigger_retraining, a thin shell over `forestops.pipeline.monitor` (the same
call as `forestops monitor` and the embedded scheduler's monitor job).

- monitor_drift: compares the inputs served in the last MONITOR_WINDOW_S and the batches ingested
  since the champion's training with its training data (PSI per contract feature,
  predicted-class shift, live accuracy), stores the report in `monitoring_reports` (the
  inference service exposes it as gauges), notifies NOTIFY_WEBHOOK_URL on an alert, and
  short-circuits the run unless there is one.
- trigger_retraining: starts forest_training_pipeline now instead of at its next slot. That DAG
  still trains only when new rows exist: drift in served traffic with no new labelled data
  cannot be fixed by retraining on the same rows, and the alert has already been sent.

A failed task also notifies (on_failure_callback), after its retries.
No heavy import or I/O at parse time: forestops, MLflow and the model libraries load in the tasks.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, task

from forestops.orchestration.airflow_callbacks import notify_task_failure

log = logging.getLogger(__name__)


@dag(
    dag_id="forest_monitoring_pipeline",
    schedule="0 * * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    default_args={
        "owner": "forestops",
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
        "on_failure_callback": notify_task_failure,
    },
    tags=["forestops", "monitoring"],
    doc_md=__doc__,
)
def forest_monitoring_pipeline() -> None:
    @task.short_circuit(execution_timeout=timedelta(minutes=20))
    def monitor_drift() -> bool:
        from forestops.config import get_settings
        from forestops.pipeline.monitor import monitor

        report = monitor(get_settings())
        log.info(report.summary())
        return report.alert

    retrain = TriggerDagRunOperator(
        task_id="trigger_retraining",
        trigger_dag_id="forest_training_pipeline",
        conf={"reason": "monitoring alert"},
        wait_for_completion=False,
        execution_timeout=timedelta(minutes=5),
    )
    monitor_drift() >> retrain


forest_monitoring_pipeline()
