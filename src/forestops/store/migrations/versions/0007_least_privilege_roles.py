"""least privilege: reader and inference group roles (PostgreSQL only)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 16:00:00.000000

The groups of forestops.store.roles, NOLOGIN, named after the database, with their grants; the
role that runs the migrations stays the owner of everything. The reader's SELECT reaches tables
later migrations create through default privileges (of the role running them, in this schema);
the inference group's grants are explicit, so a new table is never writable or readable by it
unless a migration says so. Login users are not made here (their passwords are not the
migration's business): `forestops db roles` makes them. SQLite has no roles: nothing to do.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from forestops.store.roles import INFERENCE_READS, INFERENCE_WRITES, GroupRoles, group_roles

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _quote(name: str) -> str:
    return str(op.get_bind().dialect.identifier_preparer.quote(name))


def _where() -> tuple[str, str, str, GroupRoles]:
    """(database, schema, prediction_log's id sequence, the groups): the first two quoted, the
    sequence as PostgreSQL names it (quoted and schema-qualified), the groups unquoted."""
    database, schema, sequence = (
        op.get_bind()
        .execute(
            text(
                "SELECT current_database(), current_schema(), "
                f"pg_get_serial_sequence('{INFERENCE_WRITES}', 'id')"
            )
        )
        .one()
    )
    return _quote(database), _quote(schema), sequence, group_roles(database)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    database, schema, sequence, groups = _where()
    reader, inference = _quote(groups.reader), _quote(groups.inference)
    for role in (groups.reader, groups.inference):
        # CREATE ROLE has no IF NOT EXISTS; a role left by an earlier run is taken as it is
        literal = "'" + role.replace("'", "''") + "'"
        op.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {literal}) "
            f"THEN CREATE ROLE {_quote(role)} NOLOGIN; END IF; END $$"
        )
    for role in (reader, inference):
        op.execute(f"GRANT CONNECT ON DATABASE {database} TO {role}")
        op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {reader}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {reader}")
    op.execute(f"GRANT INSERT ON {INFERENCE_WRITES} TO {inference}")
    op.execute(f"GRANT USAGE ON SEQUENCE {sequence} TO {inference}")
    op.execute(f"GRANT SELECT ON {', '.join(INFERENCE_READS)} TO {inference}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    database, schema, _sequence, groups = _where()
    reader, inference = _quote(groups.reader), _quote(groups.inference)
    # identifiers quoted by the dialect, no values: not the injection S608 looks for
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE SELECT ON TABLES FROM {reader}")  # noqa: S608
    for role in (reader, inference):
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}")
        op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}")
        op.execute(f"REVOKE ALL ON SCHEMA {schema} FROM {role}")
        op.execute(f"REVOKE ALL ON DATABASE {database} FROM {role}")
        # its login members (forestops db roles) stay, without the group's privileges
        op.execute(f"DROP ROLE {role}")
