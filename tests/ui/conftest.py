"""A real stack for the UI tests, built once per session: a SQLite store seeded with rows of the
shared data set (three batches and some quarantined rows), a real training job (two cheap
candidates, LightGBM the winner) that registers and promotes a champion in a SQLite MLflow, and
the real inference service on a free loopback port serving that champion.

The UI under test reads all of it through its settings, i.e. the environment: `ui_env` points
the environment at this stack for one test; `offline_env` at a stack where nothing runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_harness import SEEDED_BATCHES, SEEDED_ROWS, UiStack, clean_env, seed_store

from forestops.config import Settings
from forestops.webserver import BackgroundServer, free_port


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
        train_candidates=("random_forest", "lightgbm"),
        random_forest_trees=10,
        lightgbm_max_rounds=150,  # 30 rounds at the small-data rate lost to the forest
        lightgbm_num_leaves=15,
        model_poll_interval_s=0,
    )
    reasons = seed_store(settings, dataset_path, SEEDED_ROWS, SEEDED_BATCHES)
    result = train(settings)
    assert result.decision == "promoted", result
    assert result.best == "lightgbm", result  # the pages' assertions are written for this champion
    api = create_app(settings)
    with BackgroundServer(api) as server:
        yield UiStack(settings, server.url, reasons, api)


@pytest.fixture
def ui_env(ui_stack: UiStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> UiStack:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)  # no stray .env
    for key, value in ui_stack.env().items():
        monkeypatch.setenv(key, value)
    return ui_stack


@pytest.fixture
def offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Nothing runs: no API on the configured port, no database file, no MLflow store."""
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    monkeypatch.setenv("FORESTOPS_HOME", str(home))
    monkeypatch.setenv("INFERENCE_API_URL", f"http://127.0.0.1:{free_port()}")
    return home
