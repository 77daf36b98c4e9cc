"""forest_cover_data_pipeline: every 5 minutes, the current batch of the data API into PostgreSQL.

fetch_data -> load_postgres -> log_summary, a thin shell over `forestops.pipeline` (the same calls
as `forestops ingest [--harvest]` and the embedded scheduler of `forestops up`).

- fetch_data: `harvest_batch` (INGEST_HARVEST, the default; `ingest_batch` otherwise): fetch the
  batch again and again until calls stop bringing new rows, the batch changes or the time budget
  (0.9 x MIN_UPDATE_TIME_S, inside the task's 8-minute timeout) is spent; every sample is
  archived (MinIO), validated, deduplicated, quarantined and loaded in ONE database transaction,
  with the batch's estimated coverage on its lineage row. Fetch and load are one call on
  purpose: the payload is archived before the transaction, and a failed load is recorded as a
  replayable batch (`forestops ingest --replay ID`), so nothing is lost and nothing half-loaded.
- load_postgres: what PostgreSQL committed: the batch's lineage row and the store's totals.
- log_summary: one line in the task log.

Trigger with config `{"group_number": N}` to ingest another group once. Retries: Airflow's
`[core] default_task_retries` (AIRFLOW_TASK_RETRIES in compose); after the last one a failed task
notifies NOTIFY_WEBHOOK_URL. No heavy import or I/O at parse time: the pipeline is imported
inside the tasks (the failure callback's module imports only httpx and the settings).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from forestops.orchestration.airflow_callbacks import notify_task_failure

log = logging.getLogger(__name__)


@dag(
    dag_id="forest_cover_data_pipeline",
    schedule="*/5 * * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=15),
    default_args={
        "owner": "forestops",
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=3),
        "on_failure_callback": notify_task_failure,
    },
    params={
        "group_number": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=10,
            description="Data API group; empty: GROUP_NUMBER",
        )
    },
    tags=["forestops", "ingestion"],
    doc_md=__doc__,
)
def forest_cover_data_pipeline() -> None:
    # a harvest (up to 0.9 x the 300 s window) plus one call's retry budget (SOURCE_RETRY_BUDGET_S)
    @task(execution_timeout=timedelta(minutes=8))
    def fetch_data() -> dict[str, Any]:
        from dataclasses import asdict

        from forestops.config import get_settings
        from forestops.pipeline.harvest import harvest_batch
        from forestops.pipeline.ingest import ingest_batch

        settings = get_settings()
        group = get_current_context()["params"].get("group_number")
        harvest = settings.ingest_harvest
        result = harvest_batch(settings, group) if harvest else ingest_batch(settings, group)
        log.info(result.summary())
        return {"batch_id": result.batch_id, "summary": result.summary(), "result": asdict(result)}

    @task(execution_timeout=timedelta(minutes=2))
    def load_postgres(ingested: dict[str, Any]) -> dict[str, Any]:
        from dataclasses import asdict

        from forestops.config import get_settings
        from forestops.pipeline.store_report import store_report

        return asdict(store_report(get_settings(), ingested["batch_id"]))

    @task(execution_timeout=timedelta(minutes=1))
    def log_summary(ingested: dict[str, Any], stored: dict[str, Any]) -> str:
        from forestops.pipeline.store_report import StoreReport

        summary = f"{ingested['summary']}; {StoreReport(**stored).summary()}"
        log.info(summary)
        return summary

    ingested = fetch_data()
    log_summary(ingested, load_postgres(ingested))


forest_cover_data_pipeline()
