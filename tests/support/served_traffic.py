"""Real traffic for monitoring tests: records sent to a running inference service, logged."""

from __future__ import annotations

import httpx
import pandas as pd

from forestops import contract
from forestops.config import Settings
from forestops.serving.app import create_app
from forestops.webserver import BackgroundServer


def serve_frame(settings: Settings, frame: pd.DataFrame, chunk: int = 50) -> str:
    """Send `frame`'s records to a running service in requests of `chunk`, wait until its
    prediction log holds them all, and return its /metrics text."""
    records = frame[list(contract.FEATURE_NAMES)].to_dict(orient="records")
    app = create_app(settings)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url) as client:
        for start in range(0, len(records), chunk):
            response = client.post("/predict", json=records[start : start + chunk])
            assert response.status_code == 200, response.text
        assert app.state.prediction_logger.flush(30)
        return client.get("/metrics").text
