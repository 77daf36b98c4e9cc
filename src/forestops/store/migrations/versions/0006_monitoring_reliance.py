"""monitoring reports: reliance shift

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 16:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("monitoring_reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reliance", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("monitoring_reports", schema=None) as batch_op:
        batch_op.drop_column("reliance")
