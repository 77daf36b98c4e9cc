"""What the store holds after an ingestion: the batch's committed lineage row and the totals.

Read back from the database, not taken from the ingesting process's memory, so the data DAG's
summary (and whoever reads its XCom) shows what PostgreSQL committed, including the batches the
scheduler's other runs or `forestops ingest` added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from forestops.config import Settings
from forestops.store.database import get_engine
from forestops.store.loader import read_batch
from forestops.store.schema import forest_cover_samples, ingestion_batches, quarantined_rows


@dataclass(frozen=True)
class StoreReport:
    batch: dict[str, Any] | None  # the committed ingestion_batches row; None: no batch recorded
    samples: int
    quarantined: int
    batches: int

    def summary(self) -> str:
        return (
            f"store: {self.samples:,} curated rows, {self.quarantined:,} quarantined, "
            f"{self.batches:,} batches"
        )


def store_report(settings: Settings, batch_id: int | None) -> StoreReport:
    """The batch row `batch_id` (JSON-ready) and the store's totals, in one transaction."""
    with get_engine(settings.database_url).connect() as conn, conn.begin():
        row = None if batch_id is None else read_batch(conn, batch_id)
        if batch_id is not None and row is None:
            where = make_url(settings.database_url).render_as_string(hide_password=True)
            raise LookupError(f"ingestion batch {batch_id} is not in {where}")
        totals = [
            conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (forest_cover_samples, quarantined_rows, ingestion_batches)
        ]
    batch = None if row is None else {key: _plain(value) for key, value in row.items()}
    return StoreReport(batch, *(int(total) for total in totals))


def _plain(value: Any) -> Any:
    """Timestamps as ISO text: the report travels as JSON (Airflow XCom, the CLI)."""
    return value.isoformat() if hasattr(value, "isoformat") else value
