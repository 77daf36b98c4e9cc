"""Least privilege in the app database (issue 17, item 3), on the real PostgreSQL server.

Migration 0007 makes the reader and inference groups, `forestops db roles` the services' logins
(forestops.store.roles); each test connects as those logins and tries what the service may and
may not do. The full-stack harness makes the same logins for its own database (last test).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from alembic import command
from prometheus_client import CollectorRegistry
from psycopg import errors, sql
from sqlalchemy import Engine, create_engine, func, insert, select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from forestops import contract
from forestops.cli import app
from forestops.serving.monitoring_gauges import MonitoringCollector
from forestops.serving.prediction_log import PredictionLogger
from forestops.store.database import alembic_config, get_engine, upgrade
from forestops.store.monitoring import save_report
from forestops.store.roles import (
    RolesError,
    drop_throwaway_roles,
    ensure_logins,
    group_roles,
    libpq_url,
    scram_verifier,
)
from forestops.store.schema import ingestion_batches, metadata, prediction_log

pytestmark = pytest.mark.postgres

# What the inference service may not read: the training data and everything but its gauges'.
NOT_FOR_INFERENCE = (
    "forest_cover_samples",
    "quarantined_rows",
    "prediction_log",
    "model_signatures",
    "model_audit",
    "alembic_version",
)
PG_ADMIN = os.environ.get("FORESTOPS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _login(url: str, user: str, password: str) -> str:
    return make_url(url).set(username=user, password=password).render_as_string(False)


@pytest.fixture
def logins(pg_url: str) -> dict[str, str]:
    """The migrated database's URLs: owner, UI (reader) and inference, each a login of its own."""
    upgrade(pg_url)
    database = str(make_url(pg_url).database)
    urls = {
        "owner": pg_url,
        "reader": _login(pg_url, f"{database}_ui", "ui-secret"),
        "inference": _login(pg_url, f"{database}_serving", "serving-secret"),
    }
    ensure_logins(pg_url, {"reader": urls["reader"], "inference": urls["inference"]})
    return urls


@pytest.fixture
def engines(logins: dict[str, str]) -> Iterator[dict[str, Engine]]:
    made = {name: create_engine(url) for name, url in logins.items()}
    yield made
    for engine in made.values():
        engine.dispose()


def _on(template: str, table: str) -> sql.Composed:
    """`template` with `{}` the quoted table name."""
    return sql.SQL(template).format(sql.Identifier(table))


def _run(url: str, statement: str | sql.Composed) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(statement)


def _denied(url: str, statement: str | sql.Composed) -> bool:
    try:
        _run(url, statement)
    except errors.InsufficientPrivilege:
        return True
    return False


def _add_batch(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(ingestion_batches).values(
                source="test", group_number=1, batch_number=0, fetched_at=func.now(), status="ok"
            )
        )


def test_group_names_are_per_database_and_fit_postgresql() -> None:
    assert group_roles("forestops") == group_roles("forestops")
    assert group_roles("forestops").reader == "forestops_reader"
    long_a, long_b = "x" * 60 + "a", "x" * 60 + "b"
    for database in (long_a, long_b):
        roles = group_roles(database)
        assert max(len(roles.reader.encode()), len(roles.inference.encode())) <= 63
    assert group_roles(long_a).reader != group_roles(long_b).reader


def test_the_reader_reads_every_table_and_changes_nothing(logins: dict[str, str]) -> None:
    reader = logins["reader"]
    tables = [table.name for table in metadata.sorted_tables]
    assert "prediction_log" in tables and "forest_cover_samples" in tables
    for table in tables:
        _run(reader, _on("SELECT count(*) FROM {}", table))
        for template in (
            "INSERT INTO {} DEFAULT VALUES",
            "UPDATE {} SET id = id",
            "DELETE FROM {}",
            "TRUNCATE {}",
        ):
            assert _denied(reader, _on(template, table)), (template, table)
    assert _denied(reader, "CREATE TABLE mine (id int)")


def test_a_table_of_a_later_migration_is_readable_by_the_reader_alone(
    logins: dict[str, str],
) -> None:
    """Default privileges: the reader needs no grant in each new migration, inference gets none."""
    _run(logins["owner"], "CREATE TABLE later_table (id int)")
    _run(logins["reader"], "SELECT * FROM later_table")
    assert _denied(logins["inference"], "SELECT * FROM later_table")
    assert _denied(logins["inference"], "INSERT INTO later_table VALUES (1)")


def test_inference_logs_predictions_and_reads_only_what_its_gauges_show(
    logins: dict[str, str], engines: dict[str, Engine]
) -> None:
    registry = CollectorRegistry()
    writer = PredictionLogger(engines["inference"], registry, capacity=100)
    writer.start()
    try:
        rows = 3
        numeric = np.arange(rows * len(contract.NUMERIC_NAMES)).reshape(rows, -1)
        codes = np.zeros(rows, dtype=np.int64)
        writer.record(
            "request-1", "7", (numeric, codes, codes), np.array([1, 2, 3]), np.full(3, 0.9), 1.5
        )
        assert writer.flush(timeout_s=30)
    finally:
        writer.stop()
    assert registry.get_sample_value("forestops_prediction_log_write_errors_total") == 0
    assert registry.get_sample_value("forestops_prediction_log_written_total") == rows
    with engines["owner"].connect() as conn:
        logged = conn.execute(select(prediction_log.c.request_id, prediction_log.c.id)).all()
    assert [request for request, _ in logged] == ["request-1"] * rows

    inference = logins["inference"]
    for table in NOT_FOR_INFERENCE:
        assert _denied(inference, _on("SELECT count(*) FROM {}", table)), table
    assert _denied(inference, "DELETE FROM prediction_log")
    assert _denied(inference, "UPDATE prediction_log SET prediction = 0")
    assert _denied(inference, "TRUNCATE prediction_log")
    assert _denied(inference, "INSERT INTO ingestion_batches DEFAULT VALUES")
    assert _denied(inference, "DELETE FROM monitoring_reports")
    assert _denied(inference, "CREATE TABLE mine (id int)")

    # the /metrics gauges: the newest monitoring report and ingestion batch
    _add_batch(engines["owner"])
    save_report(
        engines["owner"],
        {
            "created_at": func.now(),
            "window_start": func.now(),
            "window_end": func.now(),
            "rows": {},
            "feature_drift": {},
            "alert": False,
            "reasons": [],
        },
    )
    report, batch = MonitoringCollector(engines["inference"]).snapshot()
    assert report is not None and batch is not None and batch["source"] == "test"


def test_the_owner_does_everything(logins: dict[str, str], engines: dict[str, Engine]) -> None:
    owner = logins["owner"]
    _add_batch(engines["owner"])
    for statement in (
        "UPDATE ingestion_batches SET status = 'replayed'",
        "DELETE FROM prediction_log",
        "TRUNCATE quarantined_rows",
        "CREATE TABLE owned (id int)",
        "DROP TABLE owned",
    ):
        _run(owner, statement)


def test_migrations_go_down_and_up_again(logins: dict[str, str], pg_url: str) -> None:
    groups = group_roles(str(make_url(pg_url).database))
    config = alembic_config(pg_url)
    command.downgrade(config, "-1")
    assert _roles(groups.reader, groups.inference) == set()
    assert _denied(logins["reader"], "SELECT count(*) FROM forest_cover_samples")
    command.downgrade(config, "base")
    upgrade(pg_url)
    assert _roles(groups.reader, groups.inference) == {groups.reader, groups.inference}
    # the logins joined the old groups: `forestops db roles` again gives them the new ones
    assert _denied(logins["reader"], "SELECT count(*) FROM forest_cover_samples")
    ensure_logins(pg_url, {"reader": logins["reader"], "inference": logins["inference"]})
    _run(logins["reader"], "SELECT count(*) FROM forest_cover_samples")


def _roles(*names: str) -> set[str]:
    with psycopg.connect(PG_ADMIN) as conn:
        found = conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(names),))
        return {str(row[0]) for row in found}


def _password_hash(user: str) -> str:
    with psycopg.connect(PG_ADMIN) as conn:
        row = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (user,)
        ).fetchone()
        assert row is not None, user
        return str(row[0])


def test_db_roles_command_takes_passwords_from_the_settings_and_rotates_them(
    pg_url: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = str(make_url(pg_url).database)
    ui_user = f"{database}_ui"
    runner = CliRunner()
    monkeypatch.setenv("DATABASE_URL", pg_url)
    result = runner.invoke(app, ["db", "roles"])
    assert result.exit_code == 2
    assert "UI_DATABASE_URL" in result.output and "INFERENCE_DATABASE_URL" in result.output

    monkeypatch.setenv("UI_DATABASE_URL", _login(pg_url, ui_user, "first"))
    monkeypatch.setenv("INFERENCE_DATABASE_URL", _login(pg_url, f"{database}_serving", "other"))
    result = runner.invoke(app, ["db", "roles"])
    assert result.exit_code == 1 and "forestops db upgrade" in result.output  # no groups yet

    upgrade(pg_url)
    result = runner.invoke(app, ["db", "roles"])
    assert result.exit_code == 0, result.output
    assert f"created {ui_user} in {group_roles(database).reader}" in result.output
    first = _password_hash(ui_user)
    assert first.startswith("SCRAM-SHA-256$")  # the server hashed it; no plain text kept

    monkeypatch.setenv("UI_DATABASE_URL", _login(pg_url, ui_user, "second"))
    result = runner.invoke(app, ["db", "roles"])
    assert result.exit_code == 0 and f"updated {ui_user}" in result.output
    assert _password_hash(ui_user) != first


def test_the_password_is_sent_as_the_verifier_postgresql_itself_makes() -> None:
    """The same salt and iterations give the server's own verifier, byte for byte: the server
    accepts ours as the password's, and the plain text is never in a statement."""
    role = f"forestops_scram_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(sql.SQL("CREATE ROLE {} PASSWORD 'pa55-word'").format(sql.Identifier(role)))
        try:
            theirs = _password_hash(role)
        finally:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    iterations, salt = theirs.removeprefix("SCRAM-SHA-256$").split("$")[0].split(":")
    assert scram_verifier("pa55-word", base64.b64decode(salt), int(iterations)) == theirs
    assert scram_verifier("pa55-word") != scram_verifier("pa55-word")  # a fresh salt each time


@pytest.mark.parametrize(
    ("reader", "inference", "reason"),
    [
        ("postgres:x", "{db}_serving:y", "names the owner"),
        ("{db}_ui:x", "{db}_ui:y", "the same user"),
        ("{db}_ui", "{db}_serving:y", "a user and a password"),
        ("{db}_reader:x", "{db}_serving:y", "names the group"),
        ("{db}_ui:x@127.0.0.1/elsewhere", "{db}_serving:y", "another database"),
    ],
)
def test_logins_that_would_undo_the_separation_are_refused(
    pg_url: str, reader: str, inference: str, reason: str
) -> None:
    database = str(make_url(pg_url).database)

    def url(userinfo: str) -> str:
        userinfo = userinfo.format(db=database)
        if "@" in userinfo:
            return f"postgresql+psycopg://{userinfo}"
        return f"postgresql+psycopg://{userinfo}@127.0.0.1:5432/{database}"

    with pytest.raises(RolesError, match=reason):
        ensure_logins(pg_url, {"reader": url(reader), "inference": url(inference)})


def test_the_fullstack_harness_gives_the_ui_and_inference_their_own_logins(
    tmp_path: Path,
) -> None:
    """`make fullstack` reads compose: the app database's service logins are renamed after the
    run's database, made by the `app-db-roles` job's command, and dropped with the database."""
    from forestops.fullstack.backing import URL, provision
    from forestops.fullstack.compose import generated_env, interpolate, load_compose

    env = generated_env(tmp_path)
    services = interpolate(load_compose(), env)["services"]
    with provision(env, {"app-db"}) as backing:

        def local(text: str) -> str:
            return URL.sub(
                lambda m: backing.rewrite(m) if backing.replaces(m["host"]) else m[0], text
            )

        roles_job = {
            key: local(value) for key, value in services["app-db-roles"]["environment"].items()
        }
        ui = local(services["streamlit"]["environment"]["DATABASE_URL"])
        inference = local(services["inference"]["environment"]["DATABASE_URL"])
        assert roles_job["UI_DATABASE_URL"] == ui
        database = str(make_url(ui).database)
        assert make_url(ui).username == f"{database}_ui"
        assert make_url(inference).username == f"{database}_serving"
        upgrade(roles_job["DATABASE_URL"])
        ensure_logins(roles_job["DATABASE_URL"], {"reader": ui, "inference": inference})
        _run(ui, "SELECT count(*) FROM forest_cover_samples")
        assert _denied(ui, "DELETE FROM forest_cover_samples")
        assert _denied(inference, "SELECT count(*) FROM forest_cover_samples")
        get_engine(roles_job["DATABASE_URL"]).dispose()
    assert (
        _roles(f"{database}_ui", f"{database}_serving", *vars(group_roles(database)).values())
        == set()
    )


def test_dropping_a_throwaway_database_drops_its_roles(logins: dict[str, str]) -> None:
    database = str(make_url(logins["owner"]).database)
    users = [str(make_url(logins[kind]).username) for kind in ("reader", "inference")]
    get_engine(logins["owner"]).dispose()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
        dropped = drop_throwaway_roles(conn, database)
    groups = group_roles(database)
    assert set(dropped) == {*users, groups.reader, groups.inference}
    assert _roles(*dropped) == set()
