"""The promotion gate: a new model version becomes `champion` only if it beats the current one.

"Beats" is measured on the SAME rows, and only on rows NEITHER model trained on. The challenger's
score is its scored model's (before any refit) on this job's evaluation rows, which it never saw.
Evaluation rows are chosen by content hash (`candidates.evaluation_split`), so a champion whose
run is tagged UNSEEN_EVAL_SHARE never trained on any of them either: all are compared. A champion
refitted on every row (small data) or of unknown split (UNSEEN_NEWER_BATCHES, or no tag) has seen
every row up to its run's max batch id; only the evaluation rows of newer batches are fair (batch
ids only grow), and both models are scored on exactly those. Fewer than GATE_MIN_ROWS of them: the
champion stays and the reason says how many there were. A run without a max batch id (planted by
hand) is compared on every evaluation row. The champion is scored through the same pyfunc call
serving makes; the version's tags record the two scores and on how many rows they were taken.

Ordering makes a half-registered champion impossible: the version is created (tagged
`pending`), confirmed READY, both models scored, the decision tagged, and only then is the
alias moved. A job that dies anywhere before that leaves a `pending` version no alias points at.
The champion is loaded only after its files pass `modeling.integrity`'s check (`load_version`).
A champion that fails it is refused unloaded and counts as no champion at all: nothing
trustworthy to beat, so the challenger (signed by this very job) is promoted, replacing a model
nobody should serve, with the refusal as the recorded reason.

Right before moving the alias the gate re-reads it; if another job promoted meanwhile, that
new champion is scored too (the registry has no compare-and-set, so a race is narrowed to the
instant between that read and the write).

With the registry disabled there is no version and no alias: the experiment's best finished
candidate run serves (`tracking.resolve_serving_model`), so `choose_run` only reports whether
this job's run is now that run, or a better earlier one stays. Nothing is re-scored there: each
run's logged accuracy is its scored model's on rows it never saw, but not the same rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.entities.model_registry.model_version_status import ModelVersionStatus
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel
from mlflow.tracking import MlflowClient

from forestops.config import Settings
from forestops.modeling.integrity import ModelIntegrityError, load_verified
from forestops.modeling.tracking import (
    TAG_CHALLENGER_SCORE,
    TAG_CHAMPION_SCORE,
    TAG_CHAMPION_VERSION,
    TAG_COMPARED_ROWS,
    TAG_DECISION,
    TAG_DECISION_REASON,
    TAG_MAX_BATCH_ID,
    TAG_UNSEEN_ROWS,
    UNSEEN_EVAL_SHARE,
    ServingModelRef,
    registered_ref,
    resolve_serving_model,
)
from forestops.pipeline.evaluate import accuracy, predict_probabilities

log = logging.getLogger(__name__)

PROMOTED, REJECTED, PENDING = "promoted", "rejected", "pending"
UNREGISTERED = "unregistered"  # the registry is disabled: a run serves, nothing is registered
_ALIAS_RACE_ATTEMPTS = 3


@dataclass(frozen=True)
class Promotion:
    version: str
    decision: str  # PROMOTED | REJECTED
    challenger_accuracy: float
    champion_version: str | None  # the champion it was compared with (None: there was none)
    champion_accuracy: float | None
    reason: str
    compared_rows: int | None = None  # rows both scores were taken on (None: no comparison)

    @property
    def promoted(self) -> bool:
        return self.decision == PROMOTED


def register_and_gate(
    settings: Settings,
    client: MlflowClient,
    *,
    model_uri: str,
    challenger_correct: np.ndarray,
    eval_features: pd.DataFrame,
    eval_labels: np.ndarray,
    eval_batch_ids: np.ndarray,
    tags: dict[str, str],
) -> Promotion:
    """Register `model_uri` as a new version of MODEL_NAME and promote it if it wins.

    `challenger_correct` says, per evaluation row, whether the challenger's scored model (before
    any refit) got it right; `eval_batch_ids` is each row's batch."""
    version = _register(settings, client, model_uri, {**tags, TAG_DECISION: PENDING})
    rows = _EvalRows(eval_features, eval_labels, eval_batch_ids, challenger_correct)
    scored: dict[str, _Comparison | str] = {}
    for _ in range(_ALIAS_RACE_ATTEMPTS):
        champion = _alias_target(settings, client)
        if champion is not None and champion not in scored:
            scored[champion] = _compare(settings, client, champion, rows)
        promotion = _decide(settings, str(version.version), rows, champion, scored)
        if not promotion.promoted:
            break
        if _alias_target(settings, client) == promotion.champion_version:
            break
        log.warning(
            "the champion moved while version %s was scored; scoring again", version.version
        )
    else:
        raise RuntimeError(
            f"the {settings.champion_alias} alias kept moving while version {version.version} was "
            "gated; it stays unpromoted"
        )
    _record(settings, client, promotion)
    if promotion.promoted:
        client.set_registered_model_alias(
            settings.model_name, settings.champion_alias, promotion.version
        )
    log.info(
        "model %s v%s %s: %s",
        settings.model_name,
        version.version,
        promotion.decision,
        promotion.reason,
    )
    return promotion


@dataclass(frozen=True)
class RunChoice:
    """The registry-off gate's answer: what serves after this job, and whether it is this job's run."""

    run_id: str  # this job's best candidate run
    served: ServingModelRef | None  # the run serving now (None: the experiment has none)

    @property
    def chosen(self) -> bool:
        return self.served is not None and self.served.run_id == self.run_id

    @property
    def reason(self) -> str:
        served = "it is now the served run" if self.chosen else "a better earlier run stays served"
        return f"registry disabled, nothing registered, {served}"


def choose_run(settings: Settings, client: MlflowClient, run_id: str) -> RunChoice:
    """Registry off: `run_id` serves if it is the experiment's best finished candidate, the same
    rule serving resolves by, so the gate and the server cannot disagree."""
    return RunChoice(run_id, resolve_serving_model(settings, client))


def _register(
    settings: Settings, client: MlflowClient, model_uri: str, tags: dict[str, str]
) -> ModelVersion:
    version = mlflow.register_model(model_uri, settings.model_name, tags=tags)
    version = client.get_model_version(settings.model_name, version.version)
    status = ModelVersionStatus.from_string(version.status)
    if status != ModelVersionStatus.READY:
        raise RuntimeError(
            f"model version {settings.model_name} v{version.version} is {version.status}, "
            "not READY; it is not promoted"
        )
    return version


def _current_champion(settings: Settings, client: MlflowClient) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(settings.model_name, settings.champion_alias)
    except MlflowException as error:
        if error.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


def _alias_target(settings: Settings, client: MlflowClient) -> str | None:
    champion = _current_champion(settings, client)
    return None if champion is None else str(champion.version)


def load_version(settings: Settings, version: str) -> PyFuncModel:
    """Load a registered version: the one load path of the pipeline (the gate's scoring here,
    `model_ops`' smoke load before an operator's promotion), so a check added to loading covers both.

    Its files are downloaded and must pass the integrity check before they are deserialised;
    ModelIntegrityError otherwise.
    """
    client = MlflowClient(settings.mlflow_tracking_uri)
    model_version = client.get_model_version(settings.model_name, version)
    return load_verified(settings, client, registered_ref(settings, client, model_version))


@dataclass(frozen=True)
class _EvalRows:
    features: pd.DataFrame
    labels: np.ndarray
    batch_ids: np.ndarray
    challenger_correct: np.ndarray


@dataclass(frozen=True)
class _Comparison:
    """Both models' accuracy on the evaluation rows neither trained on (`which` says which)."""

    challenger: float
    champion: float
    rows: int
    which: str


def _fair_rows(
    settings: Settings, client: MlflowClient, version: str, batch_ids: np.ndarray
) -> tuple[np.ndarray, str]:
    """Which evaluation rows the champion `version` never trained on, and how to say so."""
    everything = np.ones(len(batch_ids), dtype=bool)
    run_id = client.get_model_version(settings.model_name, version).run_id
    try:
        run = client.get_run(run_id or "")
    except MlflowException:
        return everything, "every evaluation row: the champion's run is gone"
    if run.data.tags.get(TAG_UNSEEN_ROWS) == UNSEEN_EVAL_SHARE:  # set only on runs not refitted
        return (
            everything,
            "every evaluation row: the champion never trained on the evaluation share",
        )
    max_batch_id = run.data.tags.get(TAG_MAX_BATCH_ID)
    if max_batch_id is None:
        return everything, "every evaluation row: the champion's lineage is unknown"
    return (
        batch_ids > int(max_batch_id),
        f"evaluation rows of batches after {max_batch_id}: the champion trained on every row "
        "up to it",
    )


def _compare(
    settings: Settings, client: MlflowClient, version: str, rows: _EvalRows
) -> _Comparison | str:
    """Challenger and champion `version` on the rows neither saw, or why the champion has no score."""
    fair, which = _fair_rows(settings, client, version, rows.batch_ids)
    count = int(fair.sum())
    try:  # loaded even with too few rows to compare: a champion refused or broken is replaced
        model = load_version(settings, version)
        if count < settings.gate_min_rows:
            return _Comparison(float("nan"), float("nan"), count, which)
        probabilities, _ = predict_probabilities(model.predict, rows.features[fair])
    except ModelIntegrityError as error:
        log.error("the current champion %s v%s is refused: %s", settings.model_name, version, error)
        return f"was refused without being loaded: {error}"
    except Exception as error:
        log.exception("could not score the current champion %s v%s", settings.model_name, version)
        return f"could not be loaded or scored ({type(error).__name__}: {str(error)[:300]})"
    challenger = float(np.mean(rows.challenger_correct[fair]))
    return _Comparison(challenger, accuracy(rows.labels[fair], probabilities), count, which)


def _decide(
    settings: Settings,
    version: str,
    rows: _EvalRows,
    champion: str | None,
    scored: dict[str, _Comparison | str],
) -> Promotion:
    overall = float(np.mean(rows.challenger_correct))
    if champion is None:
        return Promotion(version, PROMOTED, overall, None, None, "first champion")
    score = scored[champion]
    if isinstance(score, str):
        reason = f"current champion v{champion} {score}"
        return Promotion(version, PROMOTED, overall, champion, None, reason)
    if score.rows < settings.gate_min_rows:
        reason = (
            f"{score.rows} evaluation rows unseen by champion v{champion}, at least "
            f"{settings.gate_min_rows} needed (GATE_MIN_ROWS) to compare; the champion stays "
            f"({score.which})"
        )
        return Promotion(version, REJECTED, overall, champion, None, reason, score.rows)
    on = f"on {score.rows} rows ({score.which})"
    if score.challenger > score.champion:
        reason = f"accuracy {score.challenger:.4f} > champion v{champion} {score.champion:.4f} {on}"
        decision = PROMOTED
    else:
        reason = (
            f"accuracy {score.challenger:.4f} <= champion v{champion} {score.champion:.4f} {on}"
        )
        decision = REJECTED
    return Promotion(
        version, decision, score.challenger, champion, score.champion, reason, score.rows
    )


def _record(settings: Settings, client: MlflowClient, promotion: Promotion) -> None:
    tags: dict[str, Any] = {
        TAG_DECISION: promotion.decision,
        TAG_DECISION_REASON: promotion.reason,
        TAG_CHALLENGER_SCORE: f"{promotion.challenger_accuracy:.6f}",
        TAG_CHAMPION_SCORE: (
            "" if promotion.champion_accuracy is None else f"{promotion.champion_accuracy:.6f}"
        ),
        TAG_CHAMPION_VERSION: promotion.champion_version or "",
        TAG_COMPARED_ROWS: "" if promotion.compared_rows is None else str(promotion.compared_rows),
    }
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, promotion.version, key, value)
