"""Security checks that no other test makes: how keys are compared, what the repository holds,
and that hostile strings reach the database only as data.

Already covered elsewhere (not repeated): missing/wrong/right keys and the admin-only /reload
(tests/integration/test_serving_api.py::test_api_keys, ::test_reload_refused_to_everyone_when_
keys_but_no_admin_key), compose taking every secret from .env (tests/integration/test_compose.py::
test_secrets_only_come_from_env_and_must_be_set, ::test_compose_refuses_to_start_without_the_secrets).
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import inspect, select
from typer.testing import CliRunner

from forestops.cli import app as cli
from forestops.config import Settings
from forestops.pipeline.ingest import ingest_batch
from forestops.serving import auth
from forestops.serving.app import create_app
from forestops.serving.holder import ModelHolder
from forestops.store.database import get_engine
from forestops.store.schema import forest_cover_samples, metadata, quarantined_rows
from support.faulty_source import Fault, FaultySource, payload

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]


def test_every_configured_key_is_compared_with_compare_digest(
    monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    """A `==` (or an early exit after the first match) would leak through timing which key, or
    how much of one, matched: every request must pay one compare_digest per configured key."""
    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    settings = Settings(
        api_keys=(SecretStr("client-one"), SecretStr("client-two")),
        admin_api_key=SecretStr("the-admin"),
        model_poll_interval_s=0,
    )
    holder = ModelHolder(settings)  # never started: auth runs before the model is needed
    with TestClient(create_app(settings, holder)) as client:
        for presented in ("wrong", "client-one", "the-admin"):
            calls.clear()
            client.get("/metadata", headers={"X-API-Key": presented})
            assert calls == [
                (presented.encode(), key) for key in (b"client-one", b"client-two", b"the-admin")
            ]


# Credentials as they appear when someone commits them; the documented local test services
# (postgres@127.0.0.1 with trust auth, moto's "testing" keys) carry no password to match.
CREDENTIAL_PATTERNS = {
    "AWS access key id": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
    "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "password in a URL": r"[a-z][a-z0-9+.-]*://[^/\s:@\"'{}$]+:[^/\s@\"'{}$]+@",
    "password literal": r"(?i)\b(password|passwd|pwd)\b[\"']?\s*[=:]\s*[\"'][^\"'\s$]{3,}[\"']",
    "AWS secret literal": r"(?i)aws_secret_access_key\s*[=:]\s*[\"'][A-Za-z0-9/+]{30,}[\"']",
    "generic secret": r"(?i)\b(secret|token|api_key)\b\s*[=:]\s*[\"'][A-Za-z0-9_\-/+]{24,}[\"']",
}


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    return [ROOT / name.decode() for name in names if name]


def test_the_patterns_catch_what_they_are_for() -> None:
    """The scan below is only worth something if these would have been found."""
    # Each sample is split in two so that this file itself stays clean for the scan below.
    samples = {
        "AWS access key id": "key = AKIA" + "IOSFODNN7EXAMPLE",
        "private key": "-----BEGIN OPENSSH PRIVATE" + " KEY-----",
        "password in a URL": "postgresql://forestops:s3cr3t" + "@db:5432/app",
        "password literal": "password=" + '"hunter22"',
        "AWS secret literal": "aws_secret_access_key="
        + '"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
        "generic secret": "api_key = " + '"sk_live_0123456789abcdefghijklmn"',
    }
    for name, pattern in CREDENTIAL_PATTERNS.items():
        assert re.search(pattern, samples[name]), name
    harmless = "postgresql+psycopg://postgres@127.0.0.1:5432/x ${APP_DB_PASSWORD:?set it}"
    assert not any(re.search(p, harmless) for p in CREDENTIAL_PATTERNS.values())


def test_no_credentials_in_tracked_files() -> None:
    found = []
    for path in tracked_text_files():
        if not path.is_file():
            continue  # deleted in the work tree, not yet committed
        text = path.read_bytes()
        if b"\0" in text[:8192]:
            continue  # binary
        for name, pattern in CREDENTIAL_PATTERNS.items():
            for match in re.finditer(pattern, text.decode("utf-8", "replace")):
                found.append(f"{path.relative_to(ROOT)}: {name}: {match.group(0)[:40]}")
    assert found == []
    assert ".env" not in [p.name for p in tracked_text_files()]


INJECTIONS = [
    "'; DROP TABLE forest_cover_samples; --",
    "1; DELETE FROM ingestion_batches",
    "Rawah' OR '1'='1",
    'C7745"); DROP TABLE quarantined_rows; --',
    "1 UNION SELECT password FROM pg_shadow",
    "$$; DROP SCHEMA public CASCADE; $$",
]
GOOD = ["2596", "51", "3", "258", "0", "510", "221", "232", "148", "6279", "Rawah", "C7745", "4"]


def hostile_rows() -> list[list[str]]:
    """Every injection string in every field of an otherwise good row."""
    return [
        [*GOOD[:column], injection, *GOOD[column + 1 :]]
        for injection in INJECTIONS
        for column in range(len(GOOD))
    ]


def test_injection_strings_in_any_field_are_quarantined_verbatim_and_execute_nothing(
    pg_url: str, home: Path
) -> None:
    rows = [GOOD, *hostile_rows()]
    with FaultySource([Fault.good(payload(rows))]) as source:
        settings = Settings(database_url=pg_url, source_api_base_url=source.url)
        result = ingest_batch(settings)
    assert (result.inserted, result.quarantined) == (1, len(rows) - 1)
    engine = get_engine(pg_url)
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        parked: list[Any] = (
            connection.execute(
                select(quarantined_rows.c.raw).order_by(quarantined_rows.c.row_number)
            )
            .scalars()
            .all()
        )
        assert len(connection.execute(select(forest_cover_samples)).all()) == 1
    assert parked == rows[1:]  # stored as data, byte for byte


def test_a_hostile_group_number_never_leaves_the_command_line(home: Path) -> None:
    result = CliRunner().invoke(cli, ["ingest", "--group", "1; DROP TABLE ingestion_batches"])
    assert result.exit_code == 2
    assert "--group" in result.output


SQL_CALLS = {"text", "exec_driver_sql", "execute", "exec"}


def test_no_sql_is_built_from_formatted_strings() -> None:
    """Queries go through SQLAlchemy Core with bound parameters (the UI's reads included): no
    f-string, `%` or `str.format()` ever reaches `text()` or `execute()` (psycopg's `sql.SQL`
    composition, which quotes identifiers, is how the PostgreSQL bulk load builds its COPY).
    Alembic migrations may format their own constant identifiers and are left out."""
    offenders = []
    for path in sorted((ROOT / "src/forestops").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            built = node.args[0]
            formatted = isinstance(built, ast.JoinedStr | ast.BinOp) or (
                isinstance(built, ast.Call)
                and isinstance(built.func, ast.Attribute)
                and built.func.attr == "format"
                and isinstance(built.func.value, ast.Constant)  # psycopg's sql.SQL().format is safe
            )
            if name in SQL_CALLS and formatted:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
