"""model audit trail

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_audit",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("model_name", sa.String(length=256), nullable=False),
        sa.Column("from_version", sa.String(length=64), nullable=True),
        sa.Column("to_version", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_audit")),
    )
    with op.batch_alter_table("model_audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_audit_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("model_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_audit_created_at"))
    op.drop_table("model_audit")
