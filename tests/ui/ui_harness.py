"""What the UI tests share besides fixtures: the stack handle, page opening, clean-page check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
from streamlit.testing.v1 import AppTest

import forestops.ui
from forestops.config import Settings

APP = Path(forestops.ui.__file__).with_name("app.py")
SEEDED_ROWS = 3000
SEEDED_BATCHES = 3


@dataclass(frozen=True)
class UiStack:
    settings: Settings
    api_url: str
    quarantine_reasons: tuple[str, ...]

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
