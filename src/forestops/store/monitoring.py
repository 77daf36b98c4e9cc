"""Monitoring reports in and out of the store: the monitor writes them, the UI and the
inference service's gauges read them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, insert, inspect, select

from forestops.store.schema import ingestion_batches, monitoring_reports


def save_report(engine: Engine, report: dict[str, Any]) -> int:
    """Insert one report (keys: the table's columns but `id`); returns its id."""
    with engine.begin() as conn:
        result = conn.execute(insert(monitoring_reports).values(**report))
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def recent_reports(engine: Engine, limit: int = 500) -> list[dict[str, Any]]:
    """The newest `limit` reports, oldest first (a time axis); empty before the first one."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(monitoring_reports.name):
            return []
        rows = conn.execute(
            select(monitoring_reports).order_by(monitoring_reports.c.id.desc()).limit(limit)
        ).mappings()
        return [dict(row) for row in reversed(list(rows))]


def latest_batch(engine: Engine) -> dict[str, Any] | None:
    """The newest ingestion batch (its row counts feed the rows-per-batch gauge)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(ingestion_batches.name):
            return None
        row = conn.execute(
            select(ingestion_batches).order_by(ingestion_batches.c.id.desc()).limit(1)
        ).mappings()
        found = row.first()
        return dict(found) if found else None
