"""Alembic environment: runs migrations against the URL that forestops passes in."""

from __future__ import annotations

from alembic import context

from forestops.store.database import get_engine
from forestops.store.schema import metadata

url = context.config.get_main_option("sqlalchemy.url")
assert url, "forestops.store.database.alembic_config sets sqlalchemy.url"

with get_engine(url).connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
