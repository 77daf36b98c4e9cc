"""The conventions training writes into MLflow and serving reads back: one place for both sides.

Training tags every candidate run and every registered version with the keys below; serving
resolves "the model to serve" with `resolve_serving_model` (the `champion` alias, or the best
candidate run when the registry is disabled). Neither side imports the other.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from forestops.config import Settings

TAG_KIND = "forestops.kind"  # "training_job" (parent run) | "candidate" (child run)
TAG_CANDIDATE = "forestops.candidate"  # candidate name, e.g. "lightgbm"
TAG_DECISION = "forestops.decision"  # on a model version: "promoted" | "rejected"
TAG_CHALLENGER_SCORE = "forestops.challenger_accuracy"
TAG_CHAMPION_SCORE = "forestops.champion_accuracy"
TAG_DATA_HASH = "forestops.data_hash"
TAG_ROWS = "forestops.rows"
TAG_MIN_BATCH_ID = "forestops.min_batch_id"
TAG_MAX_BATCH_ID = "forestops.max_batch_id"  # newest batch that contributed rows
# On a candidate run: the rows its logged model never trained on, what the gate may score it on.
# UNSEEN_EVAL_SHARE: the content-hash evaluation share (`candidates.evaluation_split`) of any
# store; UNSEEN_NEWER_BATCHES (and a run without the tag): only batches newer than its max batch id.
TAG_UNSEEN_ROWS = "forestops.unseen_rows"
UNSEEN_EVAL_SHARE, UNSEEN_NEWER_BATCHES = "eval_share", "newer_batches"
TAG_COMPARED_ROWS = "forestops.compared_rows"  # on a version: rows the gate compared it on
TAG_LATEST_BATCH_ID = "forestops.latest_batch_id"  # newest ingestion batch of any outcome
TAG_BATCH_IDS = "forestops.batch_ids"  # compact ranges, e.g. "1-10,12"
TAG_BEST = "forestops.best_candidate"
TAG_MODEL_VERSION = "forestops.model_version"
TAG_CHAMPION_VERSION = "forestops.champion_version"  # the version the challenger was compared with
TAG_DECISION_REASON = "forestops.decision_reason"
TAG_PREVIOUS_CHAMPION = "forestops.previous_champion"
TAG_ACTION = "forestops.action"  # the last operator action on the version
TAG_ACTION_BY = "forestops.action_by"
TAG_ACTION_AT = "forestops.action_at"
TAG_ACTION_REASON = "forestops.action_reason"
TAG_SIGNATURE = "forestops.model_signature"
TAG_EXPLANATION = "forestops.explanation"  # why a candidate has no global explanation
# + a platform key (serving.shipped_forest): the signature of the compiled forest shipped for it
TAG_COMPILED_FOREST = "forestops.compiled_forest."
PRIMARY_METRIC = "accuracy"
MODEL_ARTIFACT = "model"
_TRACKING_ENV = "MLFLOW_TRACKING_URI"  # also how forestops Settings are configured


@contextmanager
def mlflow_uris(uri: str) -> Iterator[None]:
    """Point MLflow's process-global tracking URI at `uri` for the block, then put back exactly
    what was there (including "unset", which `mlflow.get_tracking_uri()` cannot express: asked
    through the public `mlflow.is_tracking_uri_set`).

    The fluent API (`mlflow.start_run`, `register_model`, `pyfunc.load_model("models:/...")`)
    reads this global, and MLflow also exports it as MLFLOW_TRACKING_URI; leaving it set would
    send the next caller in the same process (a scheduler, a test) to the wrong store. The
    registry URI is never set: unset, MLflow derives it from the tracking URI.
    """
    import mlflow

    previous_env = os.environ.get(_TRACKING_ENV)  # set_tracking_uri writes (or deletes) it too
    # Unset stays unset: the public getter alone would resolve (and then pin) a default. A global
    # equal to the environment's value is restored as "unset" too: the same URI either way.
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    if previous == previous_env:
        previous = None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None unsets, as MLflow's own helper does
        if previous_env is None:
            os.environ.pop(_TRACKING_ENV, None)
        else:
            os.environ[_TRACKING_ENV] = previous_env


@dataclass(frozen=True)
class ServingModelRef:
    """What to load and how to describe it (/metadata, the UI)."""

    uri: str
    run_id: str
    version: str | None
    alias: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    trained_at_ms: int | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "run_id": self.run_id,
            "version": self.version,
            "alias": self.alias,
            "metrics": self.metrics,
            "params": self.params,
            "tags": self.tags,
            "trained_at_ms": self.trained_at_ms,
        }


def latest_training_job(
    client: MlflowClient, settings: Settings, *, finished_only: bool = False
) -> Run | None:
    """The newest training job's parent run (optionally only a FINISHED one), or None."""
    experiment = client.get_experiment_by_name(settings.mlflow_experiment_name)
    if experiment is None:
        return None
    status = " and attributes.status = 'FINISHED'" if finished_only else ""
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = 'training_job'{status}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def registered_ref(
    settings: Settings, client: MlflowClient, version: ModelVersion, alias: str | None = None
) -> ServingModelRef:
    """A registered version as a reference (tags: the run's, overridden by the version's)."""
    assert version.run_id is not None
    run = client.get_run(version.run_id)
    number = str(version.version)
    return ServingModelRef(
        uri=f"models:/{settings.model_name}@{alias}"
        if alias
        else f"models:/{settings.model_name}/{number}",
        run_id=version.run_id,
        version=number,
        alias=alias,
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        tags={**run.data.tags, **version.tags},
        trained_at_ms=run.info.end_time or run.info.start_time,
    )


def resolve_serving_model(
    settings: Settings, client: MlflowClient | None = None
) -> ServingModelRef | None:
    """The model that should be served now, or None when there is none yet.

    Network or server errors propagate: the caller decides whether to fall back to its cache.
    """
    client = client or MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    if settings.mlflow_enable_model_registry:
        from mlflow.exceptions import MlflowException

        try:
            version = client.get_model_version_by_alias(
                settings.model_name, settings.champion_alias
            )
        except MlflowException as error:
            if error.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
                return None
            raise
        return registered_ref(settings, client, version, settings.champion_alias)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = 'candidate' and attributes.status = 'FINISHED'",
        order_by=[f"metrics.{PRIMARY_METRIC} DESC", "attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None
    run = runs[0]
    return ServingModelRef(
        uri=f"runs:/{run.info.run_id}/{MODEL_ARTIFACT}",
        run_id=run.info.run_id,
        version=None,
        alias=None,
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        tags=dict(run.data.tags),
        trained_at_ms=run.info.end_time or run.info.start_time,
    )
