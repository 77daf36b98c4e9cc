"""monitoring reports

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 16:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitoring_reports",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("rows", sa.JSON(), nullable=False),
        sa.Column("feature_drift", sa.JSON(), nullable=False),
        sa.Column("prediction_shift", sa.Float(), nullable=True),
        sa.Column("live_accuracy", sa.Float(), nullable=True),
        sa.Column("reference_accuracy", sa.Float(), nullable=True),
        sa.Column("alert", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitoring_reports")),
    )
    with op.batch_alter_table("monitoring_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_monitoring_reports_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("monitoring_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_monitoring_reports_created_at"))
    op.drop_table("monitoring_reports")
