"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 14:50:37.873508
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingestion_batches",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.Column("group_number", sa.Integer(), nullable=False),
        sa.Column("batch_number", sa.Integer(), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.Column("payload_sha256", sa.String(length=64), nullable=True),
        sa.Column("payload_uri", sa.String(length=1024), nullable=True),
        sa.Column("replay_of", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["replay_of"],
            ["ingestion_batches.id"],
            name=op.f("fk_ingestion_batches_replay_of_ingestion_batches"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingestion_batches")),
    )
    with op.batch_alter_table("ingestion_batches", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ingestion_batches_fetched_at"), ["fetched_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ingestion_batches_payload_sha256"), ["payload_sha256"], unique=False
        )

    op.create_table(
        "prediction_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("prediction", sa.SmallInteger(), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction_log")),
    )
    with op.batch_alter_table("prediction_log", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_prediction_log_logged_at"), ["logged_at"], unique=False
        )

    op.create_table(
        "forest_cover_samples",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("content_hash", sa.String(length=32), nullable=False),
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("elevation", sa.Integer(), nullable=False),
        sa.Column("aspect", sa.Integer(), nullable=False),
        sa.Column("slope", sa.Integer(), nullable=False),
        sa.Column("horizontal_distance_to_hydrology", sa.Integer(), nullable=False),
        sa.Column("vertical_distance_to_hydrology", sa.Integer(), nullable=False),
        sa.Column("horizontal_distance_to_roadways", sa.Integer(), nullable=False),
        sa.Column("hillshade_9am", sa.Integer(), nullable=False),
        sa.Column("hillshade_noon", sa.Integer(), nullable=False),
        sa.Column("hillshade_3pm", sa.Integer(), nullable=False),
        sa.Column("horizontal_distance_to_fire_points", sa.Integer(), nullable=False),
        sa.Column("wilderness_area", sa.String(length=16), nullable=False),
        sa.Column("soil_type", sa.String(length=8), nullable=False),
        sa.Column("cover_type", sa.SmallInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["ingestion_batches.id"],
            name=op.f("fk_forest_cover_samples_batch_id_ingestion_batches"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forest_cover_samples")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_forest_cover_samples_content_hash")),
    )
    with op.batch_alter_table("forest_cover_samples", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_forest_cover_samples_batch_id"), ["batch_id"], unique=False
        )

    op.create_table(
        "quarantined_rows",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["ingestion_batches.id"],
            name=op.f("fk_quarantined_rows_batch_id_ingestion_batches"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_rows")),
    )
    with op.batch_alter_table("quarantined_rows", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_quarantined_rows_batch_id"), ["batch_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("quarantined_rows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantined_rows_batch_id"))

    op.drop_table("quarantined_rows")
    with op.batch_alter_table("forest_cover_samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_forest_cover_samples_batch_id"))

    op.drop_table("forest_cover_samples")
    with op.batch_alter_table("prediction_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prediction_log_logged_at"))

    op.drop_table("prediction_log")
    with op.batch_alter_table("ingestion_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingestion_batches_payload_sha256"))
        batch_op.drop_index(batch_op.f("ix_ingestion_batches_fetched_at"))

    op.drop_table("ingestion_batches")
