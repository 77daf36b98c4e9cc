"""Settings derived from FORESTOPS_HOME when unset: kept unset (None), computed when read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from forestops.config import Settings, describe_invalid

POSTGRES = "postgresql+psycopg://forestops@db.example/forestops"


def test_unset_stores_live_in_the_home(home: Path) -> None:
    settings = Settings()
    assert settings.forestops_home == home
    assert settings.database_url == f"sqlite:///{home / 'forestops.db'}"
    assert settings.mlflow_tracking_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert settings.artifact_store_uri == str(home / "artifacts")
    assert settings.configured_database_url is None  # unset stays unset


def test_the_environment_sets_them_and_an_empty_value_means_the_default(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", POSTGRES)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.setenv("ARTIFACT_STORE_URI", "s3://raw/forestops")
    settings = Settings()
    assert settings.database_url == POSTGRES
    assert settings.mlflow_tracking_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert settings.artifact_store_uri == "s3://raw/forestops"


def test_a_copy_with_another_home_moves_what_was_not_set(home: Path, tmp_path: Path) -> None:
    settings = Settings(mlflow_tracking_uri="http://127.0.0.1:5000")
    moved = settings.model_copy(update={"forestops_home": tmp_path / "elsewhere"})
    assert moved.database_url == f"sqlite:///{tmp_path / 'elsewhere' / 'forestops.db'}"
    assert moved.mlflow_tracking_uri == "http://127.0.0.1:5000"


def test_a_copy_sets_a_derived_setting_by_its_public_name(home: Path) -> None:
    copied = Settings().model_copy(update={"database_url": POSTGRES})
    assert copied.database_url == POSTGRES
    assert copied.mlflow_tracking_uri == f"sqlite:///{home / 'mlflow.db'}"


def test_a_bad_url_is_named_by_its_variable(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://host:port/db")
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert describe_invalid(raised.value).startswith(
        "bad setting DATABASE_URL: not a SQLAlchemy URL"
    )
