"""The training job's ledger of signed models (`model_signatures`, see `modeling.integrity`)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, insert, update

from forestops.store.schema import model_signatures


def record_signature(
    engine: Engine, *, model_name: str, run_id: str, manifest_digest: str, signature: str
) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(model_signatures).values(
                created_at=datetime.now(UTC),
                model_name=model_name,
                run_id=run_id,
                manifest_digest=manifest_digest,
                signature=signature,
            )
        )


def record_version(engine: Engine, *, model_name: str, run_id: str, version: str) -> None:
    """The registered version of a signed run (its row is written when the model is logged)."""
    table = model_signatures.c
    with engine.begin() as conn:
        conn.execute(
            update(model_signatures)
            .where(table.model_name == model_name, table.run_id == run_id)
            .values(model_version=version)
        )
