"""Named locks across processes, held for a run and released even when their holder dies.

PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock(name, key)`) on a connection
kept for the run, so every process using the same database sees it, on whatever machine it runs
(Airflow workers, `forestops up`, someone at the CLI); the server releases it if that connection
drops. SQLite: an exclusive `flock` on a file beside the database file (which is on this machine
anyway); the kernel releases it if the process dies. Neither leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from forestops.store.database import get_engine, normalise_url

log = logging.getLogger(__name__)


@contextmanager
def try_lock(url: str, name: str, key: int) -> Iterator[bool]:
    """Hold the lock (`name`, `key`) for the database at `url` if nobody else does: yields
    whether it was acquired, and never waits."""
    backend = make_url(normalise_url(url)).get_backend_name()
    if backend == "postgresql":
        with _advisory_lock(url, _int4(name), key) as acquired:
            yield acquired
    elif backend == "sqlite":
        with _file_lock(_lock_path(url, name, key)) as acquired:
            yield acquired
    else:
        raise NotImplementedError(f"no lock for {backend} (SQLite, PostgreSQL)")


@contextmanager
def _advisory_lock(url: str, name: int, key: int) -> Iterator[bool]:
    # Autocommit: the lock belongs to the session, and no transaction should stay open meanwhile.
    with get_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        arguments = {"name": name, "key": key}
        acquired = bool(
            connection.execute(
                text("SELECT pg_try_advisory_lock(:name, :key)"), arguments
            ).scalar_one()
        )
        try:
            yield acquired
        finally:
            if acquired:
                _unlock(connection, arguments)


def _unlock(connection: Connection, arguments: dict[str, int]) -> None:
    try:
        connection.execute(text("SELECT pg_advisory_unlock(:name, :key)"), arguments)
    except DBAPIError as error:  # a dead session holds no lock any more
        log.warning("advisory lock %s not released explicitly: %s", arguments, error.orig)


@contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _lock_path(url: str, name: str, key: int) -> Path:
    database = make_url(normalise_url(url)).database
    if database and database != ":memory:":
        return Path(database).with_name(f"{Path(database).name}.{name}-{key}.lock")
    return Path(tempfile.gettempdir()) / f"forestops-memory.{name}-{key}.lock"


def _int4(name: str) -> int:
    """A stable signed 32-bit number for `name` (advisory locks take two int4 keys)."""
    value = zlib.crc32(name.encode())
    return value - (1 << 32) if value >= 1 << 31 else value
