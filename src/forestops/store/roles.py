"""Least privilege in the app database (PostgreSQL): who may do what, and the services' logins.

Three kinds of access (issue 17, item 3):
- the owner (ingestion, training, the monitor, migrations: the Airflow worker and the migration
  job) owns the tables and may do anything;
- the reader group (the UI) may SELECT every table, those of later migrations included (default
  privileges of the role that runs the migrations);
- the inference group may INSERT into `prediction_log` (and draw its ids), and SELECT the two
  tables the /metrics gauges read (serving/monitoring_gauges.py: the newest monitoring report and
  ingestion batch); nothing else: not the training data, not a DELETE.

Migration 0007 creates the two groups (NOLOGIN) and their grants. Roles are cluster-wide while
grants are per database, so the group names are derived from the database's name (`forestops`:
`forestops_reader`, `forestops_inference`): several databases on one server (tests, the
full-stack harness) never share a group. The services' login users are made by
`forestops db roles` (`ensure_logins`) from the URLs the services use (UI_DATABASE_URL,
INFERENCE_DATABASE_URL): the user and password in each URL become a login member of its group,
so the URL a service is given is the only place its password is written. SQLite (the embedded
shape) has no users: nothing here applies to it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

_MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1: longer names are cut, so could collide
_SUFFIXES = {"reader": "_reader", "inference": "_inference"}
# The tables the inference service reads for its /metrics gauges (serving/monitoring_gauges.py).
INFERENCE_READS = ("monitoring_reports", "ingestion_batches")
INFERENCE_WRITES = "prediction_log"


class RolesError(RuntimeError):
    """The logins cannot be made as configured (the message says what to change)."""


@dataclass(frozen=True)
class GroupRoles:
    """The NOLOGIN group roles of one database."""

    reader: str
    inference: str


def group_roles(database: str) -> GroupRoles:
    """The groups of `database`: its name plus a suffix, shortened with a digest of the full name
    when that would pass PostgreSQL's 63-byte identifier limit."""
    longest = max(len(suffix) for suffix in _SUFFIXES.values())
    stem = database
    if len(database.encode()) + longest > _MAX_IDENTIFIER:
        digest = hashlib.sha256(database.encode()).hexdigest()[:8]
        stem = (
            f"{database.encode()[: _MAX_IDENTIFIER - longest - 9].decode(errors='ignore')}_{digest}"
        )
    return GroupRoles(reader=stem + _SUFFIXES["reader"], inference=stem + _SUFFIXES["inference"])


def libpq_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as libpq takes it (`postgresql+psycopg://` -> `postgresql://`)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_logins(owner_url: str, logins: dict[str, str]) -> list[str]:
    """Create or update one login user per group kind (`reader`, `inference`) from the URL that
    service connects with: its user, with its password, a member of that group only.

    Connects with the owner's URL (who ran the migrations, so may grant the groups). Idempotent:
    an existing user gets the password it is given (rotate by changing the URL's password and
    running again). Returns what was done, one line per login.
    """
    owner = make_url(owner_url)
    if owner.get_backend_name() != "postgresql":
        raise RolesError("database users exist on PostgreSQL only (DATABASE_URL is not)")
    groups = group_roles(str(owner.database))
    wanted = {kind: make_url(url) for kind, url in logins.items()}
    _check(owner.username, str(owner.database), wanted)
    done: list[str] = []
    with psycopg.connect(libpq_url(owner_url), autocommit=True, connect_timeout=10) as conn:
        for kind, url in wanted.items():
            group = getattr(groups, kind)
            if not _exists(conn, group):
                raise RolesError(
                    f"no role {group}: run `forestops db upgrade` first (migration 0007 makes it)"
                )
            user = sql.Identifier(str(url.username))
            secret = str(url.password)  # _check: every URL has one
            password = sql.Literal(scram_verifier(secret) if secret.isascii() else secret)
            created = not _exists(conn, str(url.username))
            verb = sql.SQL("CREATE ROLE" if created else "ALTER ROLE")
            conn.execute(
                sql.SQL("{} {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                    verb, user, password
                )
            )
            for other in (getattr(groups, k) for k in _SUFFIXES if k != kind):
                if _exists(conn, other):  # a user moved from one group to the other: one only
                    conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(other), user))
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), user))
            done.append(f"{'created' if created else 'updated'} {url.username} in {group}")
    return done


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL would store for `password` (RFC 5802/7677, its
    `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` form): sent instead of the
    password, the server keeps it as it is, so the plain text never reaches its statement log.
    For ASCII passwords only: PostgreSQL's SASLprep leaves those unchanged (others are sent as
    they are and hashed by the server)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    encoded = [base64.b64encode(part).decode() for part in (salt, stored_key, server_key)]
    return f"SCRAM-SHA-256${iterations}:{encoded[0]}${encoded[1]}:{encoded[2]}"


def _check(owner: str | None, database: str, wanted: dict[str, URL]) -> None:
    users: dict[str, str] = {}
    groups = group_roles(database)
    for kind, url in wanted.items():
        if url.username in (groups.reader, groups.inference):
            raise RolesError(f"the {kind} URL names the group {url.username}: name a login")
        if kind not in _SUFFIXES:
            raise RolesError(f"no group for {kind!r}: one of {', '.join(_SUFFIXES)}")
        if not url.username or not url.password:
            raise RolesError(f"the {kind} URL must name a user and a password")
        if url.username == owner:
            raise RolesError(f"the {kind} URL names the owner {owner}: give it a user of its own")
        if url.database != database:
            raise RolesError(f"the {kind} URL names another database than DATABASE_URL")
        if url.username in users:
            raise RolesError(f"the {users[url.username]} and {kind} URLs name the same user")
        users[url.username] = kind


def _exists(conn: psycopg.Connection[Any], role: str) -> bool:
    found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    return found is not None


def drop_throwaway_roles(admin: psycopg.Connection[Any], database: str) -> list[str]:
    """After `DROP DATABASE` of a throwaway database (tests, the full-stack harness, benchmarks):
    drop its groups and their login members, which outlive it (roles are cluster-wide). Never for
    a database whose logins serve elsewhere. Returns the roles dropped."""
    groups = group_roles(database)
    names = [groups.reader, groups.inference]
    members = admin.execute(
        "SELECT DISTINCT m.rolname FROM pg_auth_members a"
        " JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member"
        " WHERE g.rolname = ANY(%s) AND NOT m.rolsuper AND m.rolname <> current_user",
        (names,),
    ).fetchall()
    dropped = []
    for role in [*(str(row[0]) for row in members), *names]:
        if _exists(admin, role):
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
            dropped.append(role)
    return dropped
