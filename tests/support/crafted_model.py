"""The crafted-model attack (issue 20): what someone who can write to MLflow, but does not hold
MODEL_SIGNING_KEY, can plant as the champion. Its `python_model.pkl` runs code the moment it is
unpickled (it writes a marker file), so a missing marker proves a loader refused it unloaded.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from forestops.config import Settings
from forestops.modeling.package import log_forest_model
from forestops.modeling.tracking import (
    PRIMARY_METRIC,
    TAG_CANDIDATE,
    TAG_KIND,
    TAG_MAX_BATCH_ID,
    TAG_SIGNATURE,
    mlflow_uris,
)
from support.champion import read_rows, tiny_pipeline


class RunsCode:
    """Unpickling this calls exec: what a crafted python_model.pkl does the moment it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


def plant_crafted_champion(
    settings: Settings, dataset: Path, marker: Path, *, signature: str | None = None
) -> tuple[str, Path]:
    """Do what a registry writer without the key can: log a forestops-looking model, swap its
    pickle for one that runs code, register it (with `signature` copied onto the version, if
    given) and alias it champion. Returns (version, the model's files)."""
    uri = settings.mlflow_tracking_uri
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment_name)
    assert experiment is not None
    frame = read_rows(dataset, 300)
    with mlflow_uris(uri):
        with mlflow.start_run(
            experiment_id=experiment.experiment_id,
            tags={TAG_KIND: "candidate", TAG_CANDIDATE: "lightgbm", TAG_MAX_BATCH_ID: "1"},
        ):
            mlflow.log_metric(PRIMARY_METRIC, 0.999)
            info = log_forest_model(tiny_pipeline(frame, 2))
        files = Path(
            client.get_logged_model(info.model_id).artifact_location.removeprefix("file://")
        )
        (files / "python_model.pkl").write_bytes(pickle.dumps(RunsCode(marker)))
        version = str(mlflow.register_model(info.model_uri, settings.model_name).version)
    if signature is not None:
        client.set_model_version_tag(settings.model_name, version, TAG_SIGNATURE, signature)
    client.set_registered_model_alias(settings.model_name, settings.champion_alias, version)
    return version, files
