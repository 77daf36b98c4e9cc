"""Has curated data arrived since the last training? The gate in front of every scheduled training.

Batch ids only grow, and every training job tags its MLflow parent run with the newest batch that
contributed rows (`forestops.max_batch_id`, see `pipeline.train`). So the answer is one indexed
query and one run lookup, with no state of its own: the Airflow worker, the embedded scheduler and
a person at the CLI all get the same answer. A batch of only duplicates or rejects adds no rows,
so it is not new data.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.tracking import MlflowClient
from sqlalchemy import func, inspect, select

from forestops.config import Settings
from forestops.modeling.tracking import TAG_MAX_BATCH_ID, latest_training_job
from forestops.store.database import get_engine
from forestops.store.schema import forest_cover_samples


@dataclass(frozen=True)
class Freshness:
    newest_batch_id: int | None  # newest batch with curated rows in the store
    trained_batch_id: int | None  # newest batch the last finished training job learned from

    @property
    def has_new_data(self) -> bool:
        if self.newest_batch_id is None:
            return False
        return self.trained_batch_id is None or self.newest_batch_id > self.trained_batch_id

    def summary(self) -> str:
        if self.newest_batch_id is None:
            return "no curated data yet"
        if self.trained_batch_id is None:
            return f"never trained; curated data up to batch {self.newest_batch_id}"
        if self.has_new_data:
            return (
                f"new data: batches up to {self.newest_batch_id}, "
                f"last training saw up to {self.trained_batch_id}"
            )
        return f"nothing new since the last training (batch {self.trained_batch_id})"


def check_new_data(settings: Settings) -> Freshness:
    return Freshness(newest_curated_batch_id(settings), last_trained_batch_id(settings))


def newest_curated_batch_id(settings: Settings) -> int | None:
    """None also before the first ingestion created the schema (a read needs no migration)."""
    with get_engine(settings.database_url).connect() as conn:
        if not inspect(conn).has_table(forest_cover_samples.name):
            return None
        newest = conn.execute(select(func.max(forest_cover_samples.c.batch_id))).scalar()
    return None if newest is None else int(newest)


def last_trained_batch_id(settings: Settings) -> int | None:
    """The batch lineage of the newest finished training job (a failed one trained nothing)."""
    job = latest_training_job(
        MlflowClient(settings.mlflow_tracking_uri), settings, finished_only=True
    )
    if job is None:
        return None
    tag = job.data.tags.get(TAG_MAX_BATCH_ID, "")
    return int(tag) if tag.isdigit() else None
