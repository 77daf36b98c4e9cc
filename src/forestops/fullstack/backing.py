"""The stateful services of the compose file, provided by this machine for one harness run.

Each compose database becomes a fresh database on the loopback server of its kind (named after
the run, dropped at the end); Redis gets a database number of its own; MinIO is replaced by
moto's S3 server (a real S3-protocol HTTP server) in this process, with the buckets minio-init
would create. A URL that names one of these services (`...://user:pw@app-db:5432/forestops`)
is rewritten to the local one: the compose credentials are dropped, because the local servers
trust loopback (PostgreSQL trust auth, MariaDB root without a password, Redis without AUTH).
Except a PostgreSQL user named after its database (`forestops_ui` of `forestops`): a service's
least-privilege login (store/roles.py), which `forestops db roles` makes; it is renamed after
the run's database (roles are cluster-wide: two runs never share one), and dropped with it.
"""

from __future__ import annotations

import random
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from sqlalchemy import create_engine
from sqlalchemy.schema import CreateSchema, DropSchema

from forestops.fullstack import local
from forestops.store.roles import drop_throwaway_roles
from forestops.webserver import free_port

# scheme://[userinfo@]host:port[/path]
URL = re.compile(
    r"(?P<scheme>[a-z][\w+.-]*)://(?:(?P<userinfo>[^@/\s]*)@)?(?P<host>[\w.-]+):(?P<port>\d+)"
    r"(?P<path>/[^\s,]*)?"
)


@dataclass
class Backing:
    """The local stand-ins of one run: `rewrite(url_match)` for each replaced service name."""

    run_id: str
    s3_endpoint_url: str = ""
    buckets: list[str] = field(default_factory=list)
    databases: dict[str, str] = field(default_factory=dict)  # compose service -> local URL base
    _rewriters: dict[str, Callable[[re.Match[str]], str]] = field(default_factory=dict)

    def replaces(self, host: str) -> bool:
        return host in self._rewriters

    def rewrite(self, match: re.Match[str]) -> str:
        return self._rewriters[match["host"]](match)


@contextmanager
def provision(compose_env: dict[str, str], services: set[str]) -> Iterator[Backing]:
    """Fresh databases, a Redis db number and an S3 server for the services in `services`."""
    backing = Backing(run_id=uuid.uuid4().hex[:10])
    backends = local.Backends()
    with ExitStack() as stack:
        for service in sorted(services & local.POSTGRES_SERVICES):
            stack.enter_context(_database(backing, service, partial(_postgres, backends)))
        for service in sorted(services & local.MARIADB_SERVICES):
            stack.enter_context(_database(backing, service, partial(_mariadb, backends)))
        for service in sorted(services & local.REDIS_SERVICES):
            number = stack.enter_context(_redis_database(backends.redis_url, backing.run_id))
            backing._rewriters[service] = _constant(f"{backends.redis_url.rstrip('/')}/{number}")
        for service in sorted(services & local.S3_SERVICES):
            stack.enter_context(_s3(backing, service, compose_env))
        yield backing


_REDIS_CLAIM = "forestops:fullstack:claimed-by"


@contextmanager
def _redis_database(redis_url: str, run_id: str) -> Iterator[int]:
    """A Redis database number no other harness holds: two stacks sharing one Celery broker take
    each other's tasks (a worker then runs a task of the other stack's Airflow, whose API refuses
    its token, and the run stays queued). Claimed with SET NX, emptied and released at the end."""
    address = urlsplit(redis_url)
    host, port = address.hostname or "127.0.0.1", address.port or 6379
    for number in random.sample(range(1, 16), 15):
        if _redis(host, port, number, "SET", _REDIS_CLAIM, run_id, "NX", "EX", "86400") == b"+OK":
            break
    else:
        raise RuntimeError(f"every Redis database of {host}:{port} is claimed by another stack")
    try:
        yield number
    finally:
        _redis(host, port, number, "FLUSHDB")


def _redis(host: str, port: int, database: int, *command: str) -> bytes:
    """One command in database `database` (RESP over a socket: the app environment has no Redis
    client library, and this needs two commands)."""

    def encode(*words: str) -> bytes:
        parts = [f"*{len(words)}\r\n".encode()]
        for word in words:
            data = word.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(parts)

    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(encode("SELECT", str(database)) + encode(*command))
        reader = conn.makefile("rb")
        selected = reader.readline().strip()
        if selected != b"+OK":
            raise RuntimeError(f"Redis {host}:{port} SELECT {database}: {selected!r}")
        return reader.readline().strip()


def _constant(url: str) -> Callable[[re.Match[str]], str]:
    return lambda match: url


def _database_name(backing: Backing, service: str) -> str:
    return f"fullstack_{backing.run_id}_{service.replace('-', '_')}"


@dataclass(frozen=True)
class _Database:
    """A database made for the run on a loopback server: its SQLAlchemy URL, how a compose URL
    naming its service becomes a URL to it, and how it is dropped again."""

    url: str
    rewrite: Callable[[re.Match[str]], str]
    drop: Callable[[], None]


@contextmanager
def _database(backing: Backing, service: str, create: Callable[[str], _Database]) -> Iterator[None]:
    """`service`'s database for the run, made by `create(name)`, in use until the run ends."""
    database = create(_database_name(backing, service))
    backing._rewriters[service] = database.rewrite
    backing.databases[service] = database.url
    try:
        yield
    finally:
        database.drop()


def _postgres(backends: local.Backends, name: str) -> _Database:
    admin = backends.postgres_admin
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    server = admin.rsplit("/", 1)[0].split("://", 1)[1]  # user@host:port
    address = server.rsplit("@", 1)[-1]

    def rewrite(match: re.Match[str]) -> str:
        user, _, password = (match["userinfo"] or "").partition(":")
        database = (match["path"] or "/")[1:].split("?")[0]
        if user.startswith(f"{database}_"):  # a service's login (store/roles.py), kept
            login = f"{name}_{user.removeprefix(f'{database}_')}"
            return f"{match['scheme']}://{login}:{password}@{address}/{name}"
        return f"{match['scheme']}://{server}/{name}"

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(statement.format(sql.Identifier(name)))
            drop_throwaway_roles(conn, name)  # the database's groups and logins outlive it

    return _Database(f"postgresql+psycopg://{server}/{name}", rewrite, drop)


def _mariadb(backends: local.Backends, name: str) -> _Database:
    server = f"root@{backends.mariadb_host}:{backends.mariadb_port}"
    # a MySQL database is a schema: SQLAlchemy's DDL quotes the name for the dialect
    engine = create_engine(f"mysql+pymysql://{server}", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(CreateSchema(name))

    def rewrite(match: re.Match[str]) -> str:
        return f"{match['scheme']}://{server}/{name}"

    def drop() -> None:
        with engine.connect() as conn:
            conn.execute(DropSchema(name, if_exists=True))
        engine.dispose()

    return _Database(f"mysql+pymysql://{server}/{name}", rewrite, drop)


@contextmanager
def _s3(backing: Backing, service: str, compose_env: dict[str, str]) -> Iterator[None]:
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    backing.s3_endpoint_url = endpoint
    backing._rewriters[service] = lambda m: f"{m['scheme']}://127.0.0.1:{port}{m['path'] or ''}"
    # minio-init's buckets, made as it makes them (the root account; moto takes any key): the
    # names come from the same variables and defaults
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=compose_env.get("MINIO_ROOT_USER", "fullstack"),
        aws_secret_access_key=compose_env.get("MINIO_ROOT_PASSWORD", "fullstack"),
        region_name="us-east-1",
    )
    backing.buckets = [
        compose_env.get("MLFLOW_BUCKET") or "mlflow",
        compose_env.get("RAW_BUCKET") or "forestops-raw",
    ]
    for bucket in backing.buckets:
        s3.create_bucket(Bucket=bucket)
    try:
        yield
    finally:
        server.stop()
