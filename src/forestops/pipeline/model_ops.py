"""What the person on call does to the champion: list the versions, promote one, roll back,
train now.

Every action that can move the `champion` alias goes the same way: the target is smoke-loaded
through the pipeline's one load path (`promote.load_version`: whatever check loading makes applies
here too) and must answer as a forestops model with finite probabilities; then the version is
tagged with who, why and when, the alias moves, the action is written to the `model_audit` table,
people are notified and every inference replica is asked to reload (`reload_replicas`; one it
cannot reach loads the new champion at its next poll, MODEL_POLL_INTERVAL_S). A refused version leaves
the alias where it was, and the refusal is audited too.

Which champion a rollback returns to is recorded on each version as it becomes champion: by the
gate (`forestops.champion_version`, the champion it beat) or by a promotion here
(`forestops.previous_champion`). A rollback does not rewrite it, so a second rollback steps back
once more instead of undoing the first.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy import Engine

from forestops.config import Settings
from forestops.modeling.candidates import build_candidates
from forestops.modeling.package import ForestCoverModel, input_example
from forestops.modeling.tracking import (
    PRIMARY_METRIC,
    TAG_ACTION,
    TAG_ACTION_AT,
    TAG_ACTION_BY,
    TAG_ACTION_REASON,
    TAG_CHALLENGER_SCORE,
    TAG_CHAMPION_VERSION,
    TAG_DATA_HASH,
    TAG_DECISION,
    TAG_MAX_BATCH_ID,
    TAG_PREVIOUS_CHAMPION,
    mlflow_uris,
)
from forestops.pipeline.evaluate import predict_probabilities
from forestops.pipeline.freshness import check_new_data
from forestops.pipeline.notify import notify
from forestops.pipeline.notify_inference import ReloadRefused, reload_replicas
from forestops.pipeline.promote import PROMOTED, load_version
from forestops.pipeline.train import TrainResult, train
from forestops.store.audit import record_action
from forestops.store.database import get_engine, upgrade

log = logging.getLogger(__name__)

PROMOTE, ROLLBACK, TRAIN = "promote", "rollback", "train"
DONE, REFUSED = "done", "refused"


class ModelOpError(RuntimeError):
    """The action cannot start: no registry, no such version, nothing to roll back to."""


class UnknownVersion(ModelOpError):
    """The version asked for is not registered (the operations API answers 404 for it)."""


@dataclass(frozen=True)
class VersionInfo:
    version: str
    accuracy: float | None  # on its own job's evaluation rows
    evaluation: str  # which rows those were
    decision: str  # the gate's: promoted | rejected | pending ("" for versions made elsewhere)
    aliases: tuple[str, ...]
    created: datetime
    last_action: str  # e.g. "rollback by alice at 2026-12-02T12:00:00+00:00"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "created": self.created.isoformat()}


@dataclass(frozen=True)
class ActionOutcome:
    action: str  # promote | rollback | train
    done: bool  # False: refused, the champion did not move
    from_version: str | None  # the champion before
    to_version: str | None  # the version acted on
    detail: str
    reload: str = ""  # what the inference service said

    def summary(self) -> str:
        return "; ".join(part for part in (self.detail, self.reload) if part)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- reading -------------------------------------------------------------------------------------


def list_versions(settings: Settings) -> list[VersionInfo]:
    """Every version of MODEL_NAME, newest first."""
    client = _client(settings)
    versions = client.search_model_versions(f"name = '{settings.model_name}'")
    versions.sort(key=lambda v: int(v.version), reverse=True)
    if not versions:
        return []
    # A search leaves `aliases` empty; the registered model has them all.
    aliases: dict[str, list[str]] = {}
    for alias, number in client.get_registered_model(settings.model_name).aliases.items():
        aliases.setdefault(str(number), []).append(alias)
    return [_describe(client, v, tuple(sorted(aliases.get(str(v.version), [])))) for v in versions]


def _describe(client: MlflowClient, version: ModelVersion, aliases: tuple[str, ...]) -> VersionInfo:
    tags = version.tags
    run = _run(client, version.run_id)
    score = tags.get(TAG_CHALLENGER_SCORE)
    if score:
        accuracy: float | None = float(score)
    else:
        accuracy = run.data.metrics.get(PRIMARY_METRIC) if run else None
    action = tags.get(TAG_ACTION)
    return VersionInfo(
        version=str(version.version),
        accuracy=accuracy,
        evaluation=_evaluation(run, tags),
        decision=tags.get(TAG_DECISION, ""),
        aliases=aliases,
        created=datetime.fromtimestamp(version.creation_timestamp / 1000, UTC),
        last_action=(
            f"{action} by {tags.get(TAG_ACTION_BY, '?')} at {tags.get(TAG_ACTION_AT, '?')}"
            if action
            else ""
        ),
    )


def _run(client: MlflowClient, run_id: str | None) -> Run | None:
    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except MlflowException:  # a deleted run: the version still lists
        return None


def _evaluation(run: Run | None, tags: dict[str, str]) -> str:
    """The evaluation dataset MLflow recorded on the run (digest, rows) and the data lineage."""
    parts = []
    for item in run.inputs.dataset_inputs if run and run.inputs else []:
        if {t.key: t.value for t in item.tags}.get("mlflow.data.context") == "evaluation":
            rows = _json(item.dataset.profile).get("num_rows")
            parts.append(f"{item.dataset.digest}" + (f" ({rows:,} rows)" if rows else ""))
            break
    if tags.get(TAG_MAX_BATCH_ID):
        parts.append(f"batches <= {tags[TAG_MAX_BATCH_ID]}")
    if tags.get(TAG_DATA_HASH):
        parts.append(f"data {tags[TAG_DATA_HASH][:12]}")
    return ", ".join(parts)


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- moving the alias ----------------------------------------------------------------------------


def promote_version(
    settings: Settings, version: str, *, actor: str, reason: str | None = None
) -> ActionOutcome:
    """Make `version` the champion after a smoke load; its predecessor is remembered for rollback."""
    client = _client(settings)
    _version(client, settings, version)
    return _move_champion(settings, client, PROMOTE, version, actor, reason)


def rollback(settings: Settings, *, actor: str, reason: str | None = None) -> ActionOutcome:
    """Back to the champion the current one replaced."""
    client = _client(settings)
    current = _champion(client, settings)
    if current is None:
        raise ModelOpError(
            f"{settings.model_name} has no {settings.champion_alias}: nothing to roll back"
        )
    previous = _previous_champion(current)
    if not previous or previous == str(current.version):
        raise ModelOpError(
            f"{settings.model_name} v{current.version} has no previous champion on record"
        )
    return _move_champion(settings, client, ROLLBACK, previous, actor, reason)


def _previous_champion(version: ModelVersion) -> str | None:
    tags = version.tags
    if tags.get(TAG_PREVIOUS_CHAMPION):
        return tags[TAG_PREVIOUS_CHAMPION]
    if tags.get(TAG_DECISION) == PROMOTED:
        return tags.get(TAG_CHAMPION_VERSION) or None
    return None


def _move_champion(
    settings: Settings,
    client: MlflowClient,
    action: str,
    target: str,
    actor: str,
    reason: str | None,
) -> ActionOutcome:
    current = _champion(client, settings)
    before = None if current is None else str(current.version)
    if before == target:
        outcome = ActionOutcome(action, False, before, target, f"v{target} already is the champion")
        return _audited(settings, outcome, actor, reason)
    problem = smoke_load(settings, target)
    if problem:
        detail = f"v{target} refused: {problem}; the champion stays v{before}"
        return _audited(
            settings, ActionOutcome(action, False, before, target, detail), actor, reason
        )
    tags = _action_tags(action, actor, reason)
    if action == PROMOTE:
        tags[TAG_PREVIOUS_CHAMPION] = before or ""
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, target, key, value)
    client.set_registered_model_alias(settings.model_name, settings.champion_alias, target)
    detail = f"{settings.model_name} v{target} is the {settings.champion_alias} (was v{before})"
    outcome = _audited(settings, ActionOutcome(action, True, before, target, detail), actor, reason)
    return _announce(settings, outcome, actor, reason)


def smoke_load(settings: Settings, version: str) -> str | None:
    """Why `version` cannot be served, or None: it loads through the pipeline's load path, is a
    forestops model, and answers the contract's example with finite probabilities summing to 1."""
    try:
        with mlflow_uris(settings.mlflow_tracking_uri):
            model = load_version(settings, version)
        if not isinstance(model.unwrap_python_model(), ForestCoverModel):
            return f"is a {type(model.unwrap_python_model()).__name__}, not a forestops model"
        probabilities, _ = predict_probabilities(model.predict, input_example())
    except Exception as error:
        log.warning("smoke load of v%s failed", version, exc_info=True)
        return f"does not load or predict ({type(error).__name__}: {error})"
    if not np.isfinite(probabilities).all():
        return "its smoke prediction gave non-finite probabilities"
    if not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-6):
        return "its smoke prediction's probabilities do not sum to 1"
    return None


# --- training on request --------------------------------------------------------------------------


def train_on_request(
    settings: Settings, *, force: bool, actor: str, reason: str | None = None
) -> tuple[TrainResult, ActionOutcome | None]:
    """The CLI's training: only when data arrived since the last training (what the schedules do),
    or anyway with `force`. A forced training is an operator action (tagged, audited, notified,
    reloaded); the gate still decides whether its model becomes champion."""
    build_candidates(settings)  # a configuration error beats "nothing new"
    if not force:
        freshness = check_new_data(settings)
        if not freshness.has_new_data:
            message = f"{freshness.summary()} (--force trains anyway)"
            return TrainResult("skipped", message, max_batch_id=freshness.newest_batch_id), None
    client = _client(settings) if settings.mlflow_enable_model_registry else None
    before = _champion(client, settings) if client else None
    result = train(settings)
    if not force:
        return result, None
    to_version = result.model_version
    if client and to_version:
        for key, value in _action_tags(TRAIN, actor, reason).items():
            client.set_model_version_tag(settings.model_name, to_version, key, value)
    outcome = ActionOutcome(
        TRAIN,
        result.champion_changed,
        None if before is None else str(before.version),
        to_version,
        f"forced training: {result.summary()}",
    )
    outcome = _audited(settings, outcome, actor, reason, result.decision or result.status)
    return result, _announce(settings, outcome, actor, reason)


# --- the shared steps -----------------------------------------------------------------------------


def _client(settings: Settings) -> MlflowClient:
    if not settings.mlflow_enable_model_registry:
        raise ModelOpError("the model registry is disabled (MLFLOW_ENABLE_MODEL_REGISTRY=false)")
    return MlflowClient(settings.mlflow_tracking_uri)


def _version(client: MlflowClient, settings: Settings, version: str) -> ModelVersion:
    try:
        return client.get_model_version(settings.model_name, version)
    except MlflowException as error:
        if error.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            raise UnknownVersion(f"{settings.model_name} has no version {version!r}") from None
        raise


def _champion(client: MlflowClient, settings: Settings) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(settings.model_name, settings.champion_alias)
    except MlflowException as error:
        if error.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


def _action_tags(action: str, actor: str, reason: str | None) -> dict[str, str]:
    return {
        TAG_ACTION: action,
        TAG_ACTION_BY: actor,
        TAG_ACTION_AT: datetime.now(UTC).isoformat(timespec="seconds"),
        TAG_ACTION_REASON: reason or "",
    }


def _audited(
    settings: Settings,
    outcome: ActionOutcome,
    actor: str,
    reason: str | None,
    result: str | None = None,
) -> ActionOutcome:
    record_action(
        audit_engine(settings),
        {
            "created_at": datetime.now(UTC),
            "action": outcome.action,
            "model_name": settings.model_name,
            "from_version": outcome.from_version,
            "to_version": outcome.to_version,
            "outcome": result or (DONE if outcome.done else REFUSED),
            "actor": actor,
            "reason": reason,
            "detail": outcome.detail,
        },
    )
    log.info("%s by %s: %s", outcome.action, actor, outcome.detail)
    return outcome


def audit_engine(settings: Settings) -> Engine:
    """The app database; the embedded SQLite file is migrated here (no migration job runs there)."""
    if settings.database_url.startswith("sqlite"):
        upgrade(settings.database_url)
    return get_engine(settings.database_url)


def _announce(
    settings: Settings, outcome: ActionOutcome, actor: str, reason: str | None
) -> ActionOutcome:
    """Notify, and when the champion moved ask the inference service to serve it now."""
    why = f" ({reason})" if reason else ""
    notify(settings, f"{outcome.action} by {actor}{why}: {outcome.detail}")
    if not outcome.done:
        return outcome
    try:
        reload = "; ".join(reached.summary() for reached in reload_replicas(settings))
    except ReloadRefused as error:
        reload = f"inference refused the reload: {error}"
    return ActionOutcome(**{**asdict(outcome), "reload": reload})
