"""Airflow tests: run by `make airflow-test` with .venv-airflow's pytest (Airflow pins FastAPI below
the inference service, so it cannot share .venv; see the Makefile).

Airflow reads its configuration when it is first imported, so its environment is set in
`pytest_configure`, before any test module is collected: a fresh AIRFLOW_HOME and a fresh, real
PostgreSQL metadata database (psycopg 3 for both the sync and the async engine), both removed at
the end. The DAG folder is the project's dags/.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
PG_ADMIN = os.environ.get("FORESTOPS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
_state: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    home = tempfile.mkdtemp(prefix="forestops-airflow-home-")
    name = f"airflow_meta_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].split("://", 1)[1]
    _state.update(home=home, database=name)
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://{base}/{name}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"postgresql+psycopg_async://{base}/{name}",
            # the compose stack's auth manager, so its CLI commands (users create) exist here too
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
            ),
        }
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _state:
        return
    try:
        from airflow import settings

        settings.dispose_orm()
    except ImportError:
        pass
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{_state["database"]}" WITH (FORCE)')
    shutil.rmtree(_state["home"], ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The metadata schema, created the way `airflow db migrate` does (the compose init job)."""
    from airflow.utils.db import upgradedb

    upgradedb()
