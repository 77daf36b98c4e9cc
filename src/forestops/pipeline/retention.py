"""Candidate models that can no longer serve, deleted once `MODEL_RETENTION_JOBS` newer training
jobs have run.

Why: every training job logs each candidate's model, and a full-depth forest is 130-180 MB (the
random forest on 150k rows, the extra trees on 40k). A daily job grows the artifact store by
~350 MB a day, nearly all of it models nobody will load again. What can still serve is kept
whatever its age: the model of every registered version (an operator may promote or roll back
to any of them) and, without the registry, the run that serves. What goes is a losing
candidate's model files (and a compiled forest training shipped with it); its run stays, with
its metrics, parameters, charts and reports, tagged with what was deleted and why, so comparisons
in the MLflow UI keep their history.

How: the logged model is deleted through the tracking server (lifecycle `deleted`), then its
files through the artifact repository, in that order, so a model whose files are half gone is
never one MLflow lists as live; if the files cannot be deleted, `mlflow gc` finds the model
later. (`mlflow gc` itself needs the backend store's database, which the trainer does not get:
least privilege.)
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.utils import get_results_from_paginated_fn

from forestops.modeling.tracking import TAG_KIND, resolve_serving_model
from forestops.serving.shipped_forest import ARTIFACT_ROOT as SHIPPED_LIBRARIES

if TYPE_CHECKING:
    from mlflow.entities import LoggedModel, Run
    from mlflow.tracking import MlflowClient

    from forestops.config import Settings

TAG_PRUNED = "forestops.model_pruned"  # on a candidate run whose model files were deleted
TAG_PRUNED_MODELS = "forestops.pruned_models"  # on a training job: how many it deleted, or why not
_PARENT = "mlflow.parentRunId"
log = logging.getLogger(__name__)


def prune(settings: Settings) -> int:
    """`forestops model prune`: the same deletion as at the end of each training job, now (after
    lowering MODEL_RETENTION_JOBS, say)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment_name)
    return (
        0
        if experiment is None
        else prune_candidate_models(settings, client, experiment.experiment_id)
    )


def prune_candidate_models(settings: Settings, client: MlflowClient, experiment_id: str) -> int:
    """Delete the models of candidates older than the newest MODEL_RETENTION_JOBS training jobs
    that neither a registered version nor the serving run uses; how many were deleted."""
    keep = settings.model_retention_jobs
    if keep == 0:
        return 0
    jobs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = 'training_job'",
        order_by=["attributes.start_time DESC"],
        max_results=keep,
    )
    if len(jobs) < keep:
        return 0
    kept_jobs = {job.info.run_id for job in jobs}
    runs, models = _in_use(settings, client)
    deleted = 0
    for run in _candidates_before(client, experiment_id, min(j.info.start_time for j in jobs)):
        tags = run.data.tags
        if run.info.run_id in runs or tags.get(_PARENT) in kept_jobs or TAG_PRUNED in tags:
            continue
        doomed = [model for model in logged_models(client, run) if model.model_id not in models]
        for model in doomed:
            client.delete_logged_model(model.model_id)
            _delete_files(settings, model.artifact_location)
        if client.list_artifacts(run.info.run_id, SHIPPED_LIBRARIES):  # useless without the model
            _delete_files(settings, run.info.artifact_uri, SHIPPED_LIBRARIES)
        client.set_tag(
            run.info.run_id,
            TAG_PRUNED,
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {len(doomed)} model(s) deleted, older than "
            f"the last {keep} training jobs, neither registered nor serving",
        )
        deleted += len(doomed)
    if deleted:
        log.info(
            "deleted %d candidate model(s) older than the last %d training jobs", deleted, keep
        )
    return deleted


def logged_models(client: MlflowClient, run: Run) -> list[LoggedModel]:
    """The models `run` logged (MLflow 3 keeps them apart from the run's own artifacts)."""
    return list(
        client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        )
    )


def _delete_files(settings: Settings, location: str, path: str | None = None) -> None:
    repository = get_artifact_repository(location, tracking_uri=settings.mlflow_tracking_uri)
    repository.delete_artifacts(path)


def _in_use(settings: Settings, client: MlflowClient) -> tuple[set[str], set[str]]:
    """The run ids and logged-model ids that serve or may serve."""
    if not settings.mlflow_enable_model_registry:  # the champion is a version otherwise
        serving = resolve_serving_model(settings, client)
        return ({serving.run_id} if serving and serving.run_id else set()), set()
    versions = get_results_from_paginated_fn(
        lambda size, token: client.search_model_versions(
            f"name = '{settings.model_name}'", max_results=size, page_token=token
        ),
        1000,
    )
    return (
        {version.run_id for version in versions if version.run_id},
        {version.model_id for version in versions if version.model_id},
    )


def _candidates_before(client: MlflowClient, experiment_id: str, started_ms: int) -> list[Run]:
    return get_results_from_paginated_fn(
        lambda size, token: client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{TAG_KIND}` = 'candidate' and attributes.start_time < {started_ms}",
            max_results=size,
            page_token=token,
        ),
        500,
    )
