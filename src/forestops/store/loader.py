"""Writing one ingestion batch: its lineage row, its samples (bulk, deduplicated), its quarantine.

Every function takes the caller's connection and never commits: the caller wraps a whole batch
in one transaction, so a batch is stored entirely or not at all.

Deduplication is by `content_hash`: the MD5 of the canonical values, label included, joined by
`|` in contract order (e.g. `2596|51|3|258|0|510|221|232|148|6279|Rawah|C7745|4`). MD5 because
it fits the 32-character column, is fast, and PostgreSQL and MySQL can recompute it in SQL
(`md5(concat_ws('|', ...))`) for ad-hoc checks; it is a dedup key, not a security measure.
Rows already stored and rows repeated inside one payload are both skipped.

PostgreSQL (measured on 300k rows, benchmarks/RESULTS.md): the canonical text of each row is
built once (arrow formats the integers) and serves both the hash and the COPY: the line
`<hash>|<canonical text>` is a row in COPY's text format with `|` as delimiter (no value of the
contract holds a `|`, a backslash or a line break). It goes in one write into a temporary
table, then one `INSERT ... SELECT DISTINCT ON (content_hash) ... WHERE NOT EXISTS (...)
ORDER BY content_hash` moves the rows not stored yet: an anti-join instead of `ON CONFLICT`,
whose speculative insertion costs about as much again per row (~0.4 s per 300k rows; and ~6x
more when most rows are duplicates, as in a harvest). Key order fills the unique index page by
page. Concurrent loaders are serialised by a SHARE ROW EXCLUSIVE lock on the samples table,
taken just before that INSERT (readers are not blocked), so no two can insert the same row.
SQLite: one executemany with `ON CONFLICT DO NOTHING` (one writer at a time anyway).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, RowMapping, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from forestops import contract
from forestops.store.schema import forest_cover_samples, ingestion_batches, quarantined_rows

LOADED: Final = "loaded"
REJECTED: Final = "rejected"
"""The payload was not the course's shape: archived and recorded, no rows."""
FAILED: Final = "failed"
"""Loading failed and was rolled back: archived and recorded, no rows; replayable."""

_LOAD_COLUMNS: Final = ("content_hash", *contract.COLUMNS)


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """Where a batch came from: the lineage part of its `ingestion_batches` row."""

    source: str
    group_number: int
    batch_number: int | None
    fetched_at: datetime
    payload_sha256: str | None
    payload_uri: str | None
    replay_of: int | None = None


@dataclass(frozen=True, slots=True)
class BatchCounts:
    received: int
    inserted: int
    duplicates: int
    quarantined: int


@dataclass(frozen=True, slots=True)
class HarvestFigures:
    """A harvest's running figures for its source batch, as of the sample being written
    (pipeline.harvest); stored on that sample's `ingestion_batches` row."""

    calls: int
    distinct_rows: int
    estimated_batch_size: int | None
    estimated_coverage: float | None

    def columns(self) -> dict[str, Any]:
        return {
            "harvest_calls": self.calls,
            "distinct_rows": self.distinct_rows,
            "estimated_batch_size": self.estimated_batch_size,
            "estimated_coverage": self.estimated_coverage,
        }


def content_hashes(samples: pd.DataFrame) -> list[str]:
    """The dedup key of each canonical row (see the module docstring for the definition)."""
    return [_md5(line) for line in _canonical_text(samples)]


def _canonical_text(samples: pd.DataFrame) -> list[str]:
    """Each row's values in contract order joined by `|`: what the content hash is taken of."""
    columns = [pc.cast(pa.array(samples[name]), pa.string()) for name in contract.COLUMNS]
    lines: list[str] = pc.binary_join_element_wise(*columns, "|").to_pylist()
    return lines


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def write_batch(
    connection: Connection,
    header: BatchHeader,
    samples: pd.DataFrame,
    quarantined: Sequence[tuple[int, Any, Sequence[str]]],
    harvest: HarvestFigures | None = None,
) -> tuple[int, BatchCounts]:
    """Record a loaded batch: lineage row, new samples, quarantined rows (and the harvest's
    figures, if it is part of one); (batch id, counts)."""
    batch_id = _insert_header(connection, header, LOADED, message=None)
    _insert_quarantine(connection, batch_id, quarantined)
    inserted = _insert_samples(connection, batch_id, samples)
    counts = BatchCounts(
        received=len(samples) + len(quarantined),
        inserted=inserted,
        duplicates=len(samples) - inserted,
        quarantined=len(quarantined),
    )
    connection.execute(
        update(ingestion_batches)
        .where(ingestion_batches.c.id == batch_id)
        .values(
            received=counts.received,
            inserted=counts.inserted,
            duplicates=counts.duplicates,
            quarantined=counts.quarantined,
            **(harvest.columns() if harvest else {}),
        )
    )
    return batch_id, counts


def write_unloaded(connection: Connection, header: BatchHeader, status: str, message: str) -> int:
    """Record a fetch whose rows were not loaded (REJECTED or FAILED): lineage, zero counts."""
    return _insert_header(connection, header, status, message)


def read_batch(connection: Connection, batch_id: int) -> RowMapping | None:
    query = select(ingestion_batches).where(ingestion_batches.c.id == batch_id)
    return connection.execute(query).mappings().first()


def _insert_header(
    connection: Connection, header: BatchHeader, status: str, message: str | None
) -> int:
    statement = (
        insert(ingestion_batches)
        .values(
            source=header.source,
            group_number=header.group_number,
            batch_number=header.batch_number,
            fetched_at=header.fetched_at,
            status=status,
            received=0,
            inserted=0,
            duplicates=0,
            quarantined=0,
            payload_sha256=header.payload_sha256,
            payload_uri=header.payload_uri,
            replay_of=header.replay_of,
            message=message,
        )
        .returning(ingestion_batches.c.id)
    )
    batch_id: int = connection.execute(statement).scalar_one()
    return batch_id


def _insert_quarantine(
    connection: Connection, batch_id: int, rows: Iterable[tuple[int, Any, Sequence[str]]]
) -> None:
    records = [
        {"batch_id": batch_id, "row_number": number, "raw": raw, "reasons": list(reasons)}
        for number, raw, reasons in rows
    ]
    if records:
        connection.execute(insert(quarantined_rows), records)


def _insert_samples(connection: Connection, batch_id: int, samples: pd.DataFrame) -> int:
    """Insert the rows not stored yet; how many were inserted. Repeats inside `samples` are
    skipped by the same ON CONFLICT clause as rows stored earlier."""
    if samples.empty:
        return 0
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return _copy_postgresql(connection, batch_id, _canonical_text(samples))
    if dialect == "sqlite":
        statement = sqlite_insert(forest_cover_samples).on_conflict_do_nothing(
            index_elements=["content_hash"]
        )
        columns = [samples[name].tolist() for name in contract.COLUMNS]
        rows = zip(content_hashes(samples), *columns, strict=True)
        records = [dict(zip(_LOAD_COLUMNS, row, strict=True), batch_id=batch_id) for row in rows]
        return int(connection.execute(statement, records).rowcount)
    raise NotImplementedError(f"bulk loading into {dialect} is not supported (SQLite, PostgreSQL)")


def _copy_postgresql(connection: Connection, batch_id: int, canonical: list[str]) -> int:
    from psycopg import sql

    target = sql.Identifier(forest_cover_samples.name)
    staging = sql.Identifier("forestops_load")
    columns = sql.SQL(", ").join(map(sql.Identifier, _LOAD_COLUMNS))
    payload = "".join(f"{_md5(line)}|{line}\n" for line in canonical).encode()
    # The same psycopg connection, so the same transaction as everything else in the batch.
    driver = connection.connection.driver_connection
    assert driver is not None
    with _sqlalchemy_errors(connection), driver.cursor() as cursor:
        cursor.execute(
            sql.SQL("CREATE TEMP TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
                staging, columns, target
            )
        )
        copy_from = sql.SQL("COPY {} ({}) FROM STDIN (DELIMITER '|')")
        with cursor.copy(copy_from.format(staging, columns)) as copy:
            copy.write(payload)
        cursor.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target))
        cursor.execute(
            sql.SQL(
                "INSERT INTO {target} (batch_id, {columns}) "
                "SELECT DISTINCT ON (content_hash) %s, {columns} FROM {staging} AS s "
                "WHERE NOT EXISTS (SELECT FROM {target} AS t WHERE t.content_hash = s.content_hash) "
                "ORDER BY content_hash"
            ).format(target=target, columns=columns, staging=staging),
            (batch_id,),
        )
        inserted = cursor.rowcount
        cursor.execute(sql.SQL("DROP TABLE {}").format(staging))
    return inserted


@contextmanager
def _sqlalchemy_errors(connection: Connection) -> Iterator[None]:
    """Raise what SQLAlchemy raises for its own statements, not psycopg's errors, and drop a
    dead connection from the pool (SQLAlchemy does both itself only for statements it runs)."""
    import psycopg

    try:
        yield
    except psycopg.Error as error:
        driver = connection.connection.dbapi_connection
        invalidated = connection.dialect.is_disconnect(error, driver, None)  # type: ignore[arg-type]
        if invalidated:
            connection.invalidate(error)
        raise DBAPIError.instance(
            None,
            None,
            error,
            psycopg.Error,
            connection_invalidated=invalidated,
            dialect=connection.dialect,
        ) from error
