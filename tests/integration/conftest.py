"""Fixtures of the integration tests that run against both database shapes."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, home: Path) -> str:
    """The embedded shape's SQLite file in the test's home, then a fresh real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{home / 'forestops.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url
