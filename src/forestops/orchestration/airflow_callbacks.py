"""Callbacks the Airflow DAGs attach to their tasks.

Its own module, outside `forestops.pipeline`, because the DAG files import it at parse time, which
the dag-processor repeats every few seconds: importing it loads nothing; the pipeline and the
settings load when a task has actually failed, on the worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def notify_task_failure(context: Mapping[str, Any]) -> None:
    """`on_failure_callback` for every DAG task: runs on the worker after the last retry.

    Takes Airflow's task context (a mapping), so this module needs no Airflow import either.
    """
    from forestops.config import get_settings
    from forestops.pipeline.notify import notify

    instance = context["task_instance"]
    notify(
        get_settings(),
        f"Airflow task {instance.dag_id}.{instance.task_id} failed "
        f"(run {instance.run_id}, try {instance.try_number}): {context.get('exception')}",
    )
