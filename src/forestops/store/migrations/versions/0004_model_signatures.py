"""model signatures

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_signatures",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(length=256), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("manifest_digest", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_signatures")),
    )
    with op.batch_alter_table("model_signatures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_signatures_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("model_signatures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_signatures_run_id"))
    op.drop_table("model_signatures")
