"""harvest figures per batch; cheaper bulk loads on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 16:00:00.000000

Both dialects: four nullable columns on `ingestion_batches` with the running figures of a harvest
(see `pipeline.harvest`): calls made to the batch, distinct rows collected, estimated batch size
and estimated coverage.

PostgreSQL only, measured on 300k rows (benchmarks/RESULTS.md, Ingestion):
- `content_hash` compares bytewise (`COLLATE "C"`): it is hex, so the locale's rules only cost
  time in the unique index and the load's sort.
- The foreign key `forest_cover_samples.batch_id -> ingestion_batches.id` is checked once per
  statement instead of once per row: a declared foreign key runs a lookup and a row lock on the
  parent for every inserted row (~1 s of ~4 s of CPU per 300k rows), although a load references
  one batch. Statement-level triggers with transition tables keep the same guarantees (a sample
  needs an existing batch, locked FOR KEY SHARE like the declared key does; a referenced batch
  can be neither deleted nor renumbered) with one lookup per statement. TRUNCATE of
  `ingestion_batches` stays refused by the declared keys of `quarantined_rows` and `replay_of`.
SQLite keeps the declared foreign key: it has no statement-level triggers, and its check is cheap.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

HARVEST_COLUMNS = (
    ("harvest_calls", sa.Integer()),
    ("distinct_rows", sa.Integer()),
    ("estimated_batch_size", sa.Integer()),
    ("estimated_coverage", sa.Float()),
)
FOREIGN_KEY = "fk_forest_cover_samples_batch_id_ingestion_batches"

CHECK_SAMPLES = """
CREATE FUNCTION forestops_samples_reference_batches() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    fk constant text := 'fk_forest_cover_samples_batch_id_ingestion_batches';
    wanted bigint[];
    missing bigint[];
BEGIN
    SELECT array_agg(DISTINCT batch_id) INTO wanted FROM new_samples;
    IF wanted IS NULL THEN
        RETURN NULL;
    END IF;
    -- the lock a declared foreign key takes: the batch cannot go away before this commits
    PERFORM FROM ingestion_batches WHERE id = ANY (wanted) FOR KEY SHARE;
    SELECT array_agg(w.batch_id) INTO missing FROM unnest(wanted) AS w (batch_id)
    WHERE NOT EXISTS (SELECT FROM ingestion_batches b WHERE b.id = w.batch_id);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'insert or update on table "forest_cover_samples" violates foreign key constraint "%"', fk
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = fk,
                TABLE = 'forest_cover_samples',
                DETAIL = format('Key (batch_id)=(%s) is not present in table "ingestion_batches".',
                                array_to_string(missing, ', '));
    END IF;
    RETURN NULL;
END $$
"""

CHECK_BATCHES = """
CREATE FUNCTION forestops_batches_keep_samples() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    fk constant text := 'fk_forest_cover_samples_batch_id_ingestion_batches';
    orphaned bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT s.batch_id INTO orphaned FROM forest_cover_samples s
        WHERE s.batch_id IN (SELECT id FROM old_batches) LIMIT 1;
    ELSE
        SELECT s.batch_id INTO orphaned FROM forest_cover_samples s
        WHERE s.batch_id IN (
            SELECT o.id FROM old_batches o WHERE NOT EXISTS (SELECT FROM new_batches n WHERE n.id = o.id)
        ) LIMIT 1;
    END IF;
    IF orphaned IS NOT NULL THEN
        RAISE EXCEPTION 'update or delete on table "ingestion_batches" violates foreign key constraint "%" on table "forest_cover_samples"', fk
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = fk,
                TABLE = 'ingestion_batches',
                DETAIL = format('Key (id)=(%s) is still referenced from table "forest_cover_samples".',
                                orphaned);
    END IF;
    RETURN NULL;
END $$
"""

TRIGGERS = (
    ("forest_cover_samples", "INSERT", "NEW TABLE AS new_samples", "samples_reference_batches"),
    ("forest_cover_samples", "UPDATE", "NEW TABLE AS new_samples", "samples_reference_batches"),
    ("ingestion_batches", "DELETE", "OLD TABLE AS old_batches", "batches_keep_samples"),
    (
        "ingestion_batches",
        "UPDATE",
        "OLD TABLE AS old_batches NEW TABLE AS new_batches",
        "batches_keep_samples",
    ),
)


def _trigger_name(event: str, check: str) -> str:
    return f"forestops_{check}_on_{event.lower()}"


def upgrade() -> None:
    for name, type_ in HARVEST_COLUMNS:
        op.add_column("ingestion_batches", sa.Column(name, type_, nullable=True))
    if op.get_context().dialect.name != "postgresql":
        return
    op.alter_column(
        "forest_cover_samples",
        "content_hash",
        type_=sa.String(32, collation="C"),
        existing_type=sa.String(32),
        existing_nullable=False,
    )
    op.drop_constraint(FOREIGN_KEY, "forest_cover_samples", type_="foreignkey")
    op.execute(CHECK_SAMPLES)
    op.execute(CHECK_BATCHES)
    for table, event, transition, check in TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {_trigger_name(event, check)} AFTER {event} ON {table} "
            f"REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION forestops_{check}()"
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table, event, _, check in TRIGGERS:
            op.execute(f"DROP TRIGGER {_trigger_name(event, check)} ON {table}")
        op.execute("DROP FUNCTION forestops_samples_reference_batches()")
        op.execute("DROP FUNCTION forestops_batches_keep_samples()")
        op.create_foreign_key(
            FOREIGN_KEY, "forest_cover_samples", "ingestion_batches", ["batch_id"], ["id"]
        )
        op.alter_column(
            "forest_cover_samples",
            "content_hash",
            type_=sa.String(32),
            existing_type=sa.String(32, collation="C"),
            existing_nullable=False,
        )
    # In place (SQLite >= 3.35): a batch-mode copy of the table would trip the keys pointing at it.
    for name, _ in reversed(HARVEST_COLUMNS):
        op.drop_column("ingestion_batches", name)
