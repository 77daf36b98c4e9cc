"""A real stack for the UI tests, built once per session: a SQLite store seeded with rows of the
shared data set (three batches and some quarantined rows), a real training job (two cheap
candidates) that registers and promotes a champion in a SQLite MLflow, and the real inference
service on a free loopback port serving that champion.

The UI under test reads all of it through its settings, i.e. the environment: `ui_env` points
the environment at this stack for one test; `offline_env` at a stack where nothing runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, update
from ui_harness import SEEDED_BATCHES, SEEDED_ROWS, UiStack

from forestops import contract
from forestops.config import Settings
from forestops.store.database import get_engine
from forestops.store.schema import ingestion_batches, quarantined_rows
from forestops.webserver import BackgroundServer, free_port
from support.training_data import course_rows, seed_samples

_ENV_PREFIXES = ("FORESTOPS_", "MLFLOW_", "DATABASE_URL", "INFERENCE_API", "API_KEYS", "UI_")


def _quarantine(settings: Settings, batch_id: int) -> tuple[str, ...]:
    """Rows rejected the way ingestion rejects them: the contract's own messages as reasons."""
    problems = []
    for feature, value in (("elevation", 99_999), ("slope", 91), ("elevation", -5)):
        try:
            contract.parse_int(feature, value)
        except ValueError as error:
            problems.append(str(error))
    try:
        contract.category_code("soil_type", "C9999")
    except ValueError as error:
        problems.append(str(error))
    with get_engine(settings.database_url).begin() as conn:
        conn.execute(
            insert(quarantined_rows),
            [
                {"batch_id": batch_id, "row_number": n, "raw": ["..."], "reasons": [reason]}
                for n, reason in enumerate(problems)
            ],
        )
        conn.execute(
            update(ingestion_batches)
            .where(ingestion_batches.c.id == batch_id)
            .values(quarantined=len(problems))
        )
    return tuple(problems)


def _spread_in_time(settings: Settings, batch_ids: list[int]) -> None:
    start = datetime.now(UTC) - timedelta(minutes=5 * len(batch_ids))
    with get_engine(settings.database_url).begin() as conn:
        for step, batch_id in enumerate(batch_ids):
            conn.execute(
                update(ingestion_batches)
                .where(ingestion_batches.c.id == batch_id)
                .values(fetched_at=start + timedelta(minutes=5 * step))
            )


@pytest.fixture(scope="session")
def ui_stack(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> Iterator[UiStack]:
    from forestops.pipeline.train import train
    from forestops.serving.app import create_app

    home = tmp_path_factory.mktemp("ui-stack") / "home"
    settings = Settings(
        forestops_home=home,
        database_url=f"sqlite:///{home / 'forestops.db'}",
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        mlflow_enable_model_registry=True,
        api_keys=(),
        train_candidates=("logistic_regression", "random_forest"),
        random_forest_trees=10,
        model_poll_interval_s=0,
    )
    batch_ids = seed_samples(settings, course_rows(dataset_path, SEEDED_ROWS), SEEDED_BATCHES)
    _spread_in_time(settings, batch_ids)
    reasons = _quarantine(settings, batch_ids[-1])
    result = train(settings)
    assert result.decision == "promoted", result
    with BackgroundServer(create_app(settings)) as server:
        yield UiStack(settings, server.url, reasons)


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(key)


@pytest.fixture
def ui_env(ui_stack: UiStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> UiStack:
    _clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)  # no stray .env
    for key, value in ui_stack.env().items():
        monkeypatch.setenv(key, value)
    return ui_stack


@pytest.fixture
def offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Nothing runs: no API on the configured port, no database file, no MLflow store."""
    _clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    monkeypatch.setenv("FORESTOPS_HOME", str(home))
    monkeypatch.setenv("INFERENCE_API_URL", f"http://127.0.0.1:{free_port()}")
    return home
