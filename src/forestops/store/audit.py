"""The model audit trail: every operator action on the champion (promote, rollback, forced
training), refused ones included, written by `pipeline.model_ops` and read by the CLI and the UI."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, insert, inspect, select

from forestops.store.schema import model_audit


def record_action(engine: Engine, row: dict[str, Any]) -> int:
    """Insert one entry (keys: the table's columns but `id`); returns its id."""
    with engine.begin() as conn:
        result = conn.execute(insert(model_audit).values(**row))
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def recent_actions(engine: Engine, model_name: str, limit: int = 100) -> list[dict[str, Any]]:
    """The newest `limit` entries of `model_name`, newest first; empty before the first one
    (or before the migration that creates the table: a read needs no migration)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(model_audit.name):
            return []
        rows = conn.execute(
            select(model_audit)
            .where(model_audit.c.model_name == model_name)
            .order_by(model_audit.c.id.desc())
            .limit(limit)
        ).mappings()
        return [dict(row) for row in rows]
