"""`/predict` mounted alone on a bare FastAPI app: the router needs nothing but the state that
`serving.dependencies.set_state` puts on the app (no `create_app`, no lifespan, no middleware).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from forestops import contract
from forestops.config import Settings
from forestops.modeling.package import PROBABILITY_COLUMNS
from forestops.serving.dependencies import set_state
from forestops.serving.holder import ModelHolder
from forestops.serving.metrics import ServiceMetrics
from forestops.serving.routes.predict import predict_router
from support.champion import ChampionStore, champion_store, read_rows


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> ChampionStore:
    return champion_store(tmp_path_factory.getbasetemp() / "serving-store", dataset_path)


@pytest.fixture(scope="module")
def holder(store: ChampionStore) -> Iterator[ModelHolder]:
    model_holder = ModelHolder(store.settings)
    model_holder.start()
    yield model_holder
    model_holder.stop()


@pytest.fixture(scope="module")
def rows(dataset_path: Path) -> list[dict[str, Any]]:
    frame = read_rows(dataset_path, 3010).iloc[3000:]
    return frame[list(contract.FEATURE_NAMES)].to_dict(orient="records")


def bare_app(settings: Settings, holder: ModelHolder) -> tuple[FastAPI, ServiceMetrics]:
    app = FastAPI()
    metrics = ServiceMetrics(holder)
    set_state(app, settings, holder, metrics, None)
    app.include_router(predict_router(settings.max_batch_rows))
    return app, metrics


def test_predict_router_alone_answers_with_the_held_model(
    store: ChampionStore, holder: ModelHolder, rows: list[dict[str, Any]]
) -> None:
    app, metrics = bare_app(store.settings, holder)
    client = TestClient(app)
    response = client.post("/predict", json=rows)
    assert response.status_code == 200
    served = holder.current
    assert served is not None
    expected = served.model.predict(None, pd.DataFrame(rows))
    got = np.array([p["probabilities"] for p in response.json()["predictions"]])
    np.testing.assert_allclose(got, expected[list(PROBABILITY_COLUMNS)].to_numpy(), atol=1e-12)
    counted = metrics.registry.get_sample_value
    total = sum(
        counted("forestops_predictions_total", {"cover_type": str(c.id), "cover_type_name": c.name})
        or 0
        for c in contract.COVER_TYPES
    )
    assert total == len(rows)  # the metrics on app.state, not some other app's
    assert client.get("/health").status_code == 404  # only the predict router is mounted


def test_predict_router_reads_its_limits_from_the_settings_on_app_state(
    store: ChampionStore, holder: ModelHolder, rows: list[dict[str, Any]]
) -> None:
    settings = store.settings.model_copy(update={"max_batch_rows": 2})
    client = TestClient(bare_app(settings, holder)[0])
    response = client.post("/predict", json=rows[:3])
    assert response.status_code == 413
    assert response.json()["detail"] == "3 records, more than MAX_BATCH_ROWS=2"
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["oneOf"][1]["maxItems"] == 2


def test_predict_router_alone_answers_503_until_a_model_is_held(
    store: ChampionStore, rows: list[dict[str, Any]]
) -> None:
    empty = ModelHolder(store.settings)  # never started: nothing loaded
    client = TestClient(bare_app(store.settings, empty)[0])
    response = client.post("/predict", json=rows[0])
    assert response.status_code == 503
    assert response.json()["detail"].startswith("no model loaded: no model loaded yet")
