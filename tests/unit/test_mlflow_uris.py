"""`mlflow_uris` must leave MLflow's globals and the environment exactly as it found them.

MLflow's `set_tracking_uri` also writes MLFLOW_TRACKING_URI into the environment, which is where
forestops' own Settings come from: a leak here sent a second training job to another store.
"""

from __future__ import annotations

import os

import mlflow
import pytest
from mlflow.tracking._tracking_service import utils as tracking_utils

from forestops.modeling.tracking import mlflow_uris


@pytest.mark.parametrize("configured", [None, "sqlite:////tmp/configured.db"])
def test_the_environment_and_the_global_uri_are_restored(
    monkeypatch: pytest.MonkeyPatch, configured: str | None
) -> None:
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    if configured is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", configured)

    with mlflow_uris("sqlite:////tmp/inside.db"):
        assert mlflow.get_tracking_uri() == "sqlite:////tmp/inside.db"

    assert os.environ.get("MLFLOW_TRACKING_URI") == configured
    assert tracking_utils._tracking_uri is None
    assert mlflow.get_registry_uri() != "sqlite:////tmp/inside.db"
