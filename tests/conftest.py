"""Shared fixtures: real services on loopback, the shared data set, an isolated FORESTOPS_HOME.

A test that needs PostgreSQL fails (never skips) when the server is down: CI starts it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from forestops.config import Settings
from support.mlflow_server import MlflowServer, mlflow_server

ROOT = Path(__file__).resolve().parents[1]
DATASET = Path(os.environ.get("FORESTOPS_DATASET", ROOT.parent / "shared/data/covertype.csv.gz"))
PG_ADMIN = os.environ.get("FORESTOPS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def dataset_path() -> Path:
    assert DATASET.exists(), f"shared data set missing: {DATASET}"
    return DATASET


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty FORESTOPS_HOME, with every env override of the developer's shell removed."""
    for key in list(os.environ):
        if key.startswith(("FORESTOPS_", "MLFLOW_", "DATABASE_URL", "SOURCE_API", "API_KEYS")):
            monkeypatch.delenv(key, raising=False)
    path = tmp_path / "home"
    monkeypatch.setenv("FORESTOPS_HOME", str(path))
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings()


def _new_pg_database(prefix: str) -> tuple[str, str]:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    return name, f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)


def _drop_pg_database(name: str) -> None:
    from forestops.store.roles import drop_throwaway_roles

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        drop_throwaway_roles(conn, name)  # migration 0007's groups outlive the database


def _fresh_pg_database() -> Iterator[str]:
    from forestops.store.database import get_engine

    name, url = _new_pg_database("forestops_test")
    yield url
    get_engine(url).dispose()
    _drop_pg_database(name)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the real server; dropped afterwards."""
    yield from _fresh_pg_database()


@pytest.fixture
def other_pg_url() -> Iterator[str]:
    """A second fresh database, for tests that move data from one to another (restore)."""
    yield from _fresh_pg_database()


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server (MariaDB backend, S3 artifacts) shared by a module's tests."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server
