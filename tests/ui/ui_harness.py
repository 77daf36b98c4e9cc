"""What the UI tests share besides fixtures: the stack handle, page opening, clean-page check."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, update
from streamlit.testing.v1 import AppTest

import forestops.ui
from forestops import contract
from forestops.config import Settings
from forestops.store.database import get_engine
from forestops.store.schema import ingestion_batches, quarantined_rows
from support.training_data import course_rows, seed_samples

APP = Path(forestops.ui.__file__).with_name("app.py")
SEEDED_ROWS = 3000
SEEDED_BATCHES = 3
UI_ENV_PREFIXES = (
    "FORESTOPS_", "MLFLOW_", "DATABASE_URL", "INFERENCE_API", "API_KEYS", "UI_", "ADMIN_API_KEY",
    "OPERATIONS_", "MODEL_NAME",
)  # fmt: skip


@dataclass(frozen=True)
class UiStack:
    settings: Settings
    api_url: str
    quarantine_reasons: tuple[str, ...]
    api: Any  # the inference FastAPI app, whose model holder a second service can share

    def env(self) -> dict[str, str]:
        return {
            "FORESTOPS_HOME": str(self.settings.forestops_home),
            "DATABASE_URL": self.settings.database_url,
            "MLFLOW_TRACKING_URI": self.settings.mlflow_tracking_uri,
            "INFERENCE_API_URL": self.api_url,
            "MLFLOW_URL": "http://127.0.0.1:5000",
        }

    def predict(self, records: list[dict[str, object]]) -> list[int]:
        """What the service itself answers: the truth the UI must show."""
        response = httpx.post(f"{self.api_url}/predict", json=records, timeout=30)
        response.raise_for_status()
        return [p["cover_type"] for p in response.json()["predictions"]]


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


def seed_store(settings: Settings, dataset: Path, rows: int, batches: int) -> tuple[str, ...]:
    """Rows of the shared data set in `batches` batches five minutes apart, and some quarantined
    rows in the last batch; returns the quarantine reasons."""
    batch_ids = seed_samples(settings, course_rows(dataset, rows), batches)
    _spread_in_time(settings, batch_ids)
    return _quarantine(settings, batch_ids[-1])


def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting of the developer's shell leaks into the UI under test."""
    for key in list(os.environ):
        if key.startswith(UI_ENV_PREFIXES):
            monkeypatch.delenv(key)


def open_page(page: str, language: str = "en") -> AppTest:
    """The entry app, switched to `page` (a file under views/), as a person opening it."""
    app = AppTest.from_file(str(APP), default_timeout=120)
    app.session_state["language"] = language
    app.run()
    if page != "home":
        app.switch_page(f"views/{page}.py").run()
    assert_clean(app)
    return app


def assert_clean(app: AppTest) -> None:
    """No exception element (a traceback box) anywhere on the page."""
    assert not app.exception, [e.value for e in app.exception]
