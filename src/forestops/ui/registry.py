"""Read-only views of MLflow for the UI: the champion, the last training's candidates, the
registry's version history with promotion decisions, the champion's confusion matrix and its
global explanation (what it relies on).

The tag names come from `modeling.tracking` (the one place training and serving agree on).
Reads are cached briefly; a tracking server that is down is detected with one short HTTP probe
first, because MLflow's own client retries for minutes before it gives up.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pandas as pd
import streamlit as st
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from sqlalchemy.engine import make_url

from forestops.config import Settings
from forestops.modeling.tracking import (
    PRIMARY_METRIC,
    TAG_CANDIDATE,
    TAG_CHALLENGER_SCORE,
    TAG_CHAMPION_SCORE,
    TAG_DECISION,
    TAG_KIND,
    ServingModelRef,
    latest_training_job,
    resolve_serving_model,
)
from forestops.pipeline.explanation import DEPENDENCE, logged_importance
from forestops.redact import redact_text, redact_uri
from forestops.ui.errors import MlflowNotReady, MlflowUnreachable

TTL_S = 30
CANDIDATE_METRICS = (PRIMARY_METRIC, "macro_f1", "fit_seconds")


def _key(settings: Settings) -> tuple[object, ...]:
    return (
        settings.mlflow_tracking_uri,
        settings.mlflow_enable_model_registry,
        settings.model_name,
        settings.champion_alias,
        settings.mlflow_experiment_name,
    )


_cached = st.cache_data(ttl=TTL_S, show_spinner=False, hash_funcs={Settings: _key})


def client(settings: Settings) -> MlflowClient:
    """A client for a store known to exist (never creates a local store as a side effect)."""
    uri = settings.mlflow_tracking_uri
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        try:
            response = httpx.get(uri.rstrip("/") + "/health", timeout=5.0)
        except httpx.TransportError as error:
            shown = f"{redact_uri(uri)} ({type(error).__name__}: {redact_text(str(error))})"
            raise MlflowUnreachable(shown) from error
        if response.status_code != 200:
            raise MlflowUnreachable(f"{redact_uri(uri)}/health: HTTP {response.status_code}")
    elif scheme.startswith("sqlite"):
        path = make_url(uri).database
        if path and not Path(path).exists():
            raise MlflowNotReady(f"no MLflow store at {path}")
    elif scheme in ("", "file"):
        path = urlparse(uri).path if scheme else uri
        if not Path(path).exists():
            raise MlflowNotReady(f"no MLflow store at {path}")
    return MlflowClient(tracking_uri=uri)


@_cached
def champion(settings: Settings) -> ServingModelRef | None:
    return resolve_serving_model(settings, client(settings))


@dataclass(frozen=True)
class Training:
    run_id: str
    run_name: str
    started_at: pd.Timestamp
    status: str
    candidates: pd.DataFrame


def _candidate_row(run: Run) -> dict[str, Any]:
    metrics = run.data.metrics
    return {
        "candidate": run.data.tags.get(TAG_CANDIDATE, run.info.run_name),
        **{name: metrics.get(name) for name in CANDIDATE_METRICS},
        "status": run.info.status,
        "run_id": run.info.run_id,
    }


@_cached
def last_training(settings: Settings) -> Training | None:
    """The newest training job and its candidate runs, best first."""
    mlflow = client(settings)
    job = latest_training_job(mlflow, settings)
    if job is None:
        return None
    children = mlflow.search_runs(
        [job.info.experiment_id],
        filter_string=(
            f"tags.`mlflow.parentRunId` = '{job.info.run_id}' and tags.`{TAG_KIND}` = 'candidate'"
        ),
        max_results=100,
    )
    candidates = pd.DataFrame(
        [_candidate_row(run) for run in children],
        columns=["candidate", *CANDIDATE_METRICS, "status", "run_id"],
    ).sort_values(PRIMARY_METRIC, ascending=False, na_position="last")
    return Training(
        run_id=job.info.run_id,
        run_name=job.info.run_name or job.info.run_id,
        started_at=pd.Timestamp(job.info.start_time, unit="ms", tz="UTC"),
        status=job.info.status,
        candidates=candidates.reset_index(drop=True),
    )


def _score(tags: dict[str, str], key: str) -> float | None:
    try:
        return float(tags[key])
    except (KeyError, ValueError):
        return None


@_cached
def version_history(settings: Settings) -> pd.DataFrame:
    """Every registered version, newest first, with the promotion decision taken on it."""
    mlflow = client(settings)
    versions = mlflow.search_model_versions(f"name = '{settings.model_name}'")
    aliases: dict[str, list[str]] = {}
    if versions:  # search results leave aliases out; the registered model has them all
        for alias, number in mlflow.get_registered_model(settings.model_name).aliases.items():
            aliases.setdefault(str(number), []).append(alias)
    rows = [
        {
            "version": int(version.version),
            "created": pd.Timestamp(version.creation_timestamp, unit="ms", tz="UTC"),
            "decision": version.tags.get(TAG_DECISION, ""),
            "challenger_accuracy": _score(version.tags, TAG_CHALLENGER_SCORE),
            "champion_accuracy": _score(version.tags, TAG_CHAMPION_SCORE),
            "aliases": ", ".join(aliases.get(str(version.version), [])),
            "run_id": version.run_id,
        }
        for version in versions
    ]
    columns = [
        "version",
        "created",
        "decision",
        "challenger_accuracy",
        "champion_accuracy",
        "aliases",
        "run_id",
    ]
    return pd.DataFrame(rows, columns=columns).sort_values("version", ascending=False)


@dataclass(frozen=True)
class ConfusionMatrix:
    """Either a matrix (rows: true class, columns: predicted) or a figure the training drew."""

    matrix: list[list[float]] | None = None
    image: bytes | None = None
    source: str = ""


def _artifact_paths(mlflow: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    found: list[str] = []
    for info in mlflow.list_artifacts(run_id, path):
        if info.is_dir:
            if info.path.count("/") < 2:  # models are directories too: do not walk them
                found.extend(_artifact_paths(mlflow, run_id, info.path))
        else:
            found.append(info.path)
    return found


@st.cache_data(ttl=300, show_spinner=False, hash_funcs={Settings: _key})
def confusion_matrix(settings: Settings, run_ids: tuple[str, ...]) -> ConfusionMatrix | None:
    """The first confusion matrix artifact of the given runs (JSON matrix preferred over PNG)."""
    mlflow = client(settings)
    for run_id in run_ids:
        paths = [p for p in _artifact_paths(mlflow, run_id) if "confusion" in p.lower()]
        for suffix in (".json", ".png"):
            for path in (p for p in paths if p.lower().endswith(suffix)):
                with tempfile.TemporaryDirectory() as folder:
                    local = Path(mlflow.download_artifacts(run_id, path, folder))
                    if suffix == ".png":
                        return ConfusionMatrix(image=local.read_bytes(), source=path)
                    matrix = _matrix_from_json(json.loads(local.read_text()))
                    if matrix is not None:
                        return ConfusionMatrix(matrix=matrix, source=path)
    return None


@dataclass(frozen=True)
class GlobalExplanation:
    table: pd.DataFrame  # feature, mean_abs_contribution, class_<id>...; largest first
    dependence: bytes | None  # the dependence plots' PNG
    run_id: str


@st.cache_data(ttl=300, show_spinner=False, hash_funcs={Settings: _key})
def global_explanation(settings: Settings, run_ids: tuple[str, ...]) -> GlobalExplanation | None:
    """The global explanation training logged for the first of `run_ids` that has one."""
    mlflow = client(settings)
    for run_id in run_ids:
        table = logged_importance(mlflow, run_id)
        if table is None:
            continue
        image = None
        if DEPENDENCE in {info.path for info in mlflow.list_artifacts(run_id, "explanation")}:
            with tempfile.TemporaryDirectory() as folder:
                image = Path(mlflow.download_artifacts(run_id, DEPENDENCE, folder)).read_bytes()
        return GlobalExplanation(table, image, run_id)
    return None


def _matrix_from_json(body: Any) -> list[list[float]] | None:
    if isinstance(body, dict):
        body = body.get("matrix") or body.get("confusion_matrix")
    if isinstance(body, list) and body and all(isinstance(row, list) for row in body):
        return [[float(value) for value in row] for row in body]
    return None


def connectivity(settings: Settings) -> tuple[int, int]:
    """The uncached check behind the status page: (runs in the experiment, registered versions)."""
    mlflow = client(settings)
    experiment = mlflow.get_experiment_by_name(settings.mlflow_experiment_name)
    runs = 0
    if experiment is not None:
        runs = len(mlflow.search_runs([experiment.experiment_id], max_results=1000))
    versions = (
        len(mlflow.search_model_versions(f"name = '{settings.model_name}'"))
        if settings.mlflow_enable_model_registry
        else 0
    )
    return runs, versions
