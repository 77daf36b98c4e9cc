"""Every row of a database to files and back, through SQLAlchemy: the same code for SQLite,
PostgreSQL and MySQL, and no client binary (pg_dump, mysqldump) needed in any container.

A dump is one gzipped JSON-lines file per table (a header line of column names, then one line
per row in primary-key order) plus what `load` needs to check it is loading into the same schema.
The schema itself is never dumped: the restoring side creates it with the owner's own migrations
(Alembic for the app database, MLflow's for its store), so triggers, indexes and constraints are
exactly what that code makes. Values are typed by the target's columns on the way back in
(timestamps, binary, JSON).
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Connection, Engine, MetaData, Table, func, insert, select, text
from sqlalchemy.types import Date, DateTime, LargeBinary, TypeEngine

VERSION_TABLE = "alembic_version"  # the schema's revision: created by migrations, never loaded
_CHUNK = 5000


def dump(engine: Engine, folder: Path) -> dict[str, int]:
    """Write every table but the version table into `folder`; returns rows per table."""
    folder.mkdir(parents=True, exist_ok=True)
    metadata = MetaData()
    metadata.reflect(engine)
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for table in _tables(metadata):
            counts[table.name] = _dump_table(conn, table, folder / f"{table.name}.jsonl.gz")
    return counts


def schema_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, VERSION_TABLE):
            return None
        versions = Table(VERSION_TABLE, MetaData(), autoload_with=conn)
        revision: str | None = conn.execute(select(versions.c.version_num)).scalar()
        return revision


def load(
    engine: Engine,
    folder: Path,
    *,
    rewrite: Callable[[str], str] | None = None,
    order: Sequence[str] = (),
) -> int:
    """Insert the dumped rows into `engine`'s tables (created beforehand, and empty); returns the
    number of rows. `rewrite` maps every text value (e.g. moving an artifact root); `order`
    names tables to fill first, in that order, for keys the database enforces without declaring
    them (forestops' triggers on PostgreSQL)."""
    metadata = MetaData()
    metadata.reflect(engine)
    tables = _tables(metadata)
    rank = {name: index for index, name in enumerate(order)}
    tables.sort(key=lambda table: rank.get(table.name, len(rank)))  # stable: the rest by FKs
    loaded = 0
    with engine.begin() as conn:
        if engine.dialect.name == "mysql":
            conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))  # MLflow's tables refer in circles
            # an id of 0 (MLflow's default experiment) is a value, not "the next id"
            conn.execute(
                text("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')")
            )
        for table in tables:
            path = folder / f"{table.name}.jsonl.gz"
            if path.exists():
                loaded += _load_table(conn, table, path, rewrite)
        if engine.dialect.name == "postgresql":
            _advance_sequences(conn, metadata)
    return loaded


def row_counts(engine: Engine) -> dict[str, int]:
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        return {
            table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in _tables(metadata)
        }


def clear(engine: Engine, tables: list[str]) -> None:
    """Delete every row of `tables` (children first)."""
    metadata = MetaData()
    metadata.reflect(engine, only=tables)
    with engine.begin() as conn:
        if engine.dialect.name == "mysql":
            conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        for table in reversed(_tables(metadata)):
            conn.execute(table.delete())


def _tables(metadata: MetaData) -> list[Table]:
    return [t for t in metadata.sorted_tables if t.name != VERSION_TABLE]


def _dump_table(conn: Connection, table: Table, path: Path) -> int:
    order = list(table.primary_key.columns) or list(table.columns)
    rows = conn.execution_options(stream_results=True).execute(select(table).order_by(*order))
    count = 0
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write(json.dumps([column.name for column in table.columns]) + "\n")
        for row in rows:
            out.write(json.dumps([_encode(value) for value in row]) + "\n")
            count += 1
    return count


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return str(value)
    return value


def _load_table(
    conn: Connection, table: Table, path: Path, rewrite: Callable[[str], str] | None
) -> int:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        names = json.loads(next(lines))
        missing = [name for name in names if name not in table.columns]
        if missing:
            raise ValueError(f"{table.name}: the target has no column(s) {missing}")
        decoders = [_decoder(table.columns[name].type, rewrite) for name in names]
        count = 0
        for chunk in _chunks(lines):
            records = [
                {
                    name: decode(value)
                    for name, decode, value in zip(names, decoders, row, strict=True)
                }
                for row in chunk
            ]
            conn.execute(insert(table), records)
            count += len(records)
    return count


def _chunks(lines: Iterator[str]) -> Iterator[list[list[Any]]]:
    chunk: list[list[Any]] = []
    for line in lines:
        chunk.append(json.loads(line))
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _decoder(kind: TypeEngine[Any], rewrite: Callable[[str], str] | None) -> Callable[[Any], Any]:
    def decode(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(kind, DateTime):
            return datetime.fromisoformat(value)
        if isinstance(kind, Date):
            return date.fromisoformat(value)
        if isinstance(kind, LargeBinary):
            return base64.b64decode(value)
        if isinstance(kind, JSON):
            return value
        if rewrite is not None and isinstance(value, str):
            return rewrite(value)
        return value

    return decode


def _advance_sequences(conn: Connection, metadata: MetaData) -> None:
    """Rows came with their ids: move each serial column's sequence past the largest one."""
    for table in _tables(metadata):
        for column in table.primary_key.columns:
            sequence = conn.execute(
                select(func.pg_get_serial_sequence(table.name, column.name))
            ).scalar()
            if sequence:
                largest = select(func.max(column)).scalar_subquery()
                conn.execute(select(func.setval(sequence, func.coalesce(largest, 0) + 1, False)))
