"""The training job: every curated row in, candidates compared, the best one gated into the registry.

One MLflow parent run per job (tagged with the data lineage, so "has new data arrived since the
last training" is one tag lookup: `forestops.max_batch_id`), one child run per candidate (params,
metrics, confusion matrix, classification report, the model via `log_forest_model`, signed by
`modeling.integrity` once logged: a run tag, the version tag, a row of `model_signatures`). A row
evaluates iff its content hash falls in the TRAIN_EVAL_FRACTION share (`evaluation_split`), so it
evaluates in every later job too: the gate can score an old champion on rows it never saw. The
CLI, the embedded scheduler and Airflow all call `train(settings)`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy.engine import make_url

from forestops import contract
from forestops.config import Settings
from forestops.modeling.candidates import Candidate, build_candidates, evaluation_split
from forestops.modeling.integrity import sign_logged_model, signing_key
from forestops.modeling.package import ForestCoverModel, log_forest_model
from forestops.modeling.tracking import (
    MODEL_ARTIFACT,
    TAG_BATCH_IDS,
    TAG_BEST,
    TAG_CANDIDATE,
    TAG_DATA_HASH,
    TAG_DECISION,
    TAG_KIND,
    TAG_LATEST_BATCH_ID,
    TAG_MAX_BATCH_ID,
    TAG_MIN_BATCH_ID,
    TAG_MODEL_VERSION,
    TAG_ROWS,
    TAG_SIGNATURE,
    TAG_UNSEEN_ROWS,
    UNSEEN_EVAL_SHARE,
    UNSEEN_NEWER_BATCHES,
    mlflow_uris,
)
from forestops.pipeline.evaluate import (
    confusion_figure,
    evaluate,
    predict_probabilities,
    report_text,
)
from forestops.pipeline.explanation import log_global_explanation
from forestops.pipeline.notify import notify
from forestops.pipeline.promote import UNREGISTERED, choose_run, register_and_gate
from forestops.pipeline.retention import TAG_PRUNED_MODELS, prune_candidate_models
from forestops.pipeline.status import write_latest_model
from forestops.serving.shipped_forest import ship
from forestops.store.database import get_engine, upgrade
from forestops.store.reads import TrainingData, TrainingLineage, training_frame
from forestops.store.signatures import record_signature, record_version

log = logging.getLogger(__name__)

_TAG_LIMIT = 5000  # MLflow caps tag values; the full list is in lineage.json


@dataclass(frozen=True)
class CandidateScore:
    name: str
    accuracy: float
    macro_f1: float
    fit_seconds: float
    run_id: str


@dataclass(frozen=True)
class TrainResult:
    status: Literal["trained", "skipped"]
    message: str
    candidates: tuple[CandidateScore, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)  # candidate -> error
    best: str | None = None
    champion_changed: bool = False
    decision: str | None = None  # "promoted" | "rejected" | "unregistered"
    model_version: str | None = None  # this job's registered version
    model_uri: str | None = None  # this job's best model
    champion_uri: str | None = None  # what serves after this job (a pinned version, or a run)
    champion_version: str | None = None
    rows: int = 0
    data_hash: str | None = None
    max_batch_id: int | None = None
    run_id: str | None = None  # the training job's parent run

    def summary(self) -> str:
        if self.status == "skipped":
            return f"training skipped: {self.message}"
        scores = ", ".join(f"{c.name} {c.accuracy:.4f}" for c in self.candidates)
        return f"trained on {self.rows:,} rows [{scores}]: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the CLI's --json, Airflow's XCom)."""
        return asdict(self)


def train(settings: Settings) -> TrainResult:
    with mlflow_uris(settings.mlflow_tracking_uri):
        return _train(settings)


def _train(settings: Settings) -> TrainResult:
    candidates = build_candidates(settings)  # a configuration error beats "too little data"
    signing_key(settings)  # and so does a missing key, before minutes of fitting
    data = training_frame(settings)
    lineage = data.lineage
    reason = _too_little_data(settings, data)
    if reason:
        log.info("training skipped: %s", reason)
        return TrainResult(
            "skipped",
            reason,
            rows=lineage.rows,
            data_hash=lineage.data_hash,
            max_batch_id=lineage.max_batch_id,
        )
    upgrade(settings.database_url)  # model_signatures, whoever migrated the store before
    split = _Split.of(settings, data)
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    experiment_id = _experiment_id(settings, client)
    started = datetime.now(UTC)
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"train-{started:%Y%m%d-%H%M%S}",
        tags={TAG_KIND: "training_job", **_lineage_tags(lineage)},
    ) as parent:
        _log_job(settings, split, candidates)
        scores: list[CandidateScore] = []
        logged: dict[str, _Logged] = {}
        failed: dict[str, str] = {}
        for candidate in candidates:
            try:
                score, model = _run_candidate(settings, client, experiment_id, candidate, split)
            except Exception as error:
                log.exception("candidate %s failed", candidate.name)
                failed[candidate.name] = f"{type(error).__name__}: {error}"
                continue
            scores.append(score)
            logged[score.name] = model
        if not scores:
            raise RuntimeError(f"every candidate failed: {failed}")
        best = max(scores, key=lambda s: (s.accuracy, s.macro_f1))
        if settings.train_compile_forest:  # before the gate: a new champion serves compiled at once
            log.info(ship(settings, client, best.run_id, logged[best.name].model))
        outcome = _publish(settings, client, split, best, logged[best.name])
        mlflow.set_tags(
            {
                TAG_BEST: best.name,
                TAG_MODEL_VERSION: outcome.version or "",
                TAG_DECISION: outcome.decision,
            }
        )
        mlflow.log_metric("best_accuracy", best.accuracy)
        _prune(settings, client, experiment_id)
    message = outcome.message
    if failed:
        message += f"; failed: {', '.join(failed)} (see their runs)"
    result = TrainResult(
        "trained",
        message,
        candidates=tuple(scores),
        failed=failed,
        best=best.name,
        champion_changed=outcome.champion_changed,
        decision=outcome.decision,
        model_version=outcome.version,
        model_uri=outcome.uri,
        champion_uri=outcome.champion["uri"],
        champion_version=outcome.champion["version"],
        rows=lineage.rows,
        data_hash=lineage.data_hash,
        max_batch_id=lineage.max_batch_id,
        run_id=parent.info.run_id,
    )
    metrics = client.get_run(best.run_id).data.metrics
    write_latest_model(settings, _status_payload(settings, result, outcome, metrics, started))
    log.info(result.summary())
    if result.champion_changed:
        notify(settings, f"new champion {settings.model_name} {result.champion_version}: {message}")
    return result


def _prune(settings: Settings, client: MlflowClient, experiment_id: str) -> None:
    """Old candidates' models go once this job is published; a failure here costs disk, not the
    job (its model is registered already), so it is logged and tagged on the job, not raised."""
    try:
        deleted = prune_candidate_models(settings, client, experiment_id)
    except Exception as error:
        log.exception("old candidate models were not deleted")
        mlflow.set_tag(TAG_PRUNED_MODELS, f"failed: {type(error).__name__}: {error}"[:_TAG_LIMIT])
    else:
        mlflow.set_tag(TAG_PRUNED_MODELS, str(deleted))


def _too_little_data(settings: Settings, data: TrainingData) -> str | None:
    rows = data.lineage.rows
    if rows < settings.train_min_rows:
        return f"{rows} curated rows, at least {settings.train_min_rows} needed (TRAIN_MIN_ROWS)"
    classes = data.frame[contract.LABEL].nunique()
    if classes < 2:
        return f"the {rows} curated rows hold {classes} cover type; at least 2 are needed"
    return None


@dataclass(frozen=True)
class _Split:
    """The content-hash train/evaluation split, and its MLflow dataset records."""

    train_features: pd.DataFrame
    train_labels: np.ndarray
    eval_features: pd.DataFrame
    eval_labels: np.ndarray
    eval_batch_ids: np.ndarray  # each evaluation row's batch (the gate's fair rows)
    datasets: tuple[PandasDataset, PandasDataset]  # (training, evaluation)
    lineage: TrainingLineage

    @classmethod
    def of(cls, settings: Settings, data: TrainingData) -> _Split:
        labels = data.frame[contract.LABEL].to_numpy(dtype=np.int64)
        train_rows, eval_rows = evaluation_split(
            data.content_hashes, labels, settings.train_eval_fraction
        )
        features = data.frame.loc[:, list(contract.FEATURE_NAMES)]
        source = CodeDatasetSource(
            tags={
                "table": "forest_cover_samples",
                "database": make_url(settings.database_url).render_as_string(hide_password=True),
                "batch_ids": data.lineage.batch_ranges[:_TAG_LIMIT],
                "data_hash": data.lineage.data_hash,
            }
        )

        def dataset(rows: np.ndarray, part: str) -> PandasDataset:
            # The digest names exactly these rows (their content hashes), independent of pandas:
            # an evaluation part that only grew by new rows is told apart, an unchanged one is not.
            key = "\n".join([part, *(data.content_hashes[row] for row in rows)])
            return PandasDataset(
                data.frame.iloc[rows],
                source=source,
                targets=contract.LABEL,
                name=f"forest_cover_samples-{part}",
                digest=hashlib.sha256(key.encode()).hexdigest()[:16],
            )

        return cls(
            train_features=features.iloc[train_rows],
            train_labels=labels[train_rows],
            eval_features=features.iloc[eval_rows],
            eval_labels=labels[eval_rows],
            eval_batch_ids=np.asarray(data.batch_ids, dtype=np.int64)[eval_rows],
            datasets=(dataset(train_rows, "train"), dataset(eval_rows, "eval")),
            lineage=data.lineage,
        )

    def every_row(self) -> tuple[pd.DataFrame, np.ndarray]:
        """Training and evaluation rows together (a refit once the evaluation is done)."""
        features = pd.concat([self.train_features, self.eval_features])
        return features, np.concatenate([self.train_labels, self.eval_labels])

    def log_inputs(self) -> None:
        for dataset, context in zip(self.datasets, ("training", "evaluation"), strict=True):
            mlflow.log_input(dataset, context=context)


def _experiment_id(settings: Settings, client: MlflowClient) -> str:
    """The job's experiment; created with artifacts under FORESTOPS_HOME when MLflow is embedded."""
    name = settings.mlflow_experiment_name
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=_artifact_location(settings))
        except MlflowException as error:  # another job created it a moment ago
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
            assert experiment is not None
    if experiment.lifecycle_stage != "active":
        raise RuntimeError(
            f"MLflow experiment {name!r} is deleted: restore it or set MLFLOW_EXPERIMENT_NAME"
        )
    return str(experiment.experiment_id)


def _artifact_location(settings: Settings) -> str | None:
    """A tracking server decides where artifacts go; an embedded store keeps them in the home."""
    if urlparse(settings.mlflow_tracking_uri).scheme in {"http", "https", "databricks"}:
        return None
    return settings.mlflow_artifacts_dir.as_uri()


def _lineage_tags(lineage: TrainingLineage) -> dict[str, str]:
    tags = {
        TAG_DATA_HASH: lineage.data_hash,
        TAG_ROWS: str(lineage.rows),
        TAG_MIN_BATCH_ID: str(lineage.min_batch_id),
        TAG_MAX_BATCH_ID: str(lineage.max_batch_id),
        TAG_LATEST_BATCH_ID: str(lineage.latest_batch_id),
        TAG_BATCH_IDS: lineage.batch_ranges[:_TAG_LIMIT],
    }
    return tags


def _log_job(settings: Settings, split: _Split, candidates: list[Candidate]) -> None:
    mlflow.log_params(
        {
            "rows": split.lineage.rows,
            "train_rows": len(split.train_labels),
            "eval_rows": len(split.eval_labels),
            "eval_fraction": settings.train_eval_fraction,
            "seed": settings.train_seed,
            "candidates": ",".join(c.name for c in candidates),
            "data_hash": split.lineage.data_hash,
        }
    )
    mlflow.log_dict(split.lineage.as_dict(), "lineage.json")
    split.log_inputs()


@dataclass(frozen=True)
class _Logged:
    uri: str
    signature: str  # modeling.integrity's tag value
    model: ForestCoverModel
    eval_correct: np.ndarray  # per evaluation row: did the model SCORED (before any refit) get it


def _run_candidate(
    settings: Settings,
    client: MlflowClient,
    experiment_id: str,
    candidate: Candidate,
    split: _Split,
) -> tuple[CandidateScore, _Logged]:
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=candidate.name,
        nested=True,
        tags={
            TAG_KIND: "candidate",
            TAG_CANDIDATE: candidate.name,
            TAG_DATA_HASH: split.lineage.data_hash,
            TAG_MAX_BATCH_ID: str(split.lineage.max_batch_id),
        },
    ) as run:
        split.log_inputs()
        log.info("fitting %s", candidate.name)
        fitted = candidate.fit(split.train_features, split.train_labels, settings.train_seed)
        model = ForestCoverModel(fitted.pipeline)
        probabilities, predict_seconds = predict_probabilities(
            partial(model.predict, None), split.eval_features
        )
        evaluation = evaluate(split.eval_labels, probabilities)
        # That score is this model's, on rows it never saw. What is logged (and may serve) is the
        # same model fitted again with those rows too, where the candidate does so (small data).
        refitted = candidate.refit_with(fitted, *split.every_row(), settings.train_seed)
        if refitted is not None:
            fitted, model = refitted, ForestCoverModel(refitted.pipeline)
        mlflow.set_tag(
            TAG_UNSEEN_ROWS, UNSEEN_EVAL_SHARE if refitted is None else UNSEEN_NEWER_BATCHES
        )
        mlflow.log_params(fitted.params)
        mlflow.log_figure(
            confusion_figure(evaluation, f"{candidate.name}: accuracy {evaluation.accuracy:.4f}"),
            "confusion_matrix.png",
        )
        mlflow.log_dict(evaluation.report, "classification_report.json")
        mlflow.log_text(report_text(evaluation), "classification_report.txt")
        log_global_explanation(
            model, split.eval_features, settings.train_seed, settings.inference_compiler
        )
        info = log_forest_model(fitted.pipeline, name=MODEL_ARTIFACT)
        digest, signature = sign_logged_model(settings, client, info.model_id)
        record_signature(
            get_engine(settings.database_url),
            model_name=settings.model_name,
            run_id=run.info.run_id,
            manifest_digest=digest,
            signature=signature,
        )
        mlflow.log_metrics(
            {
                **evaluation.metrics,
                "fit_seconds": fitted.fit_seconds,
                "predict_seconds": predict_seconds,
            },
            model_id=info.model_id,
            dataset=split.datasets[1],
        )
    score = CandidateScore(
        name=candidate.name,
        accuracy=evaluation.accuracy,
        macro_f1=evaluation.metrics["macro_f1"],
        fit_seconds=round(fitted.fit_seconds, 2),
        run_id=run.info.run_id,
    )
    log.info(
        "%s: accuracy %.4f, macro-F1 %.4f, fit %.1f s on %s rows",
        score.name,
        score.accuracy,
        score.macro_f1,
        score.fit_seconds,
        f"{fitted.params['fit_rows']:,}",
    )
    correct = probabilities.argmax(axis=1) == split.eval_labels
    return score, _Logged(info.model_uri, signature, model, correct)


@dataclass(frozen=True)
class _Outcome:
    decision: str
    champion_changed: bool
    version: str | None
    uri: str
    message: str
    champion: dict[str, Any]


def _publish(
    settings: Settings, client: MlflowClient, split: _Split, best: CandidateScore, model: _Logged
) -> _Outcome:
    """The champion gate is `pipeline.promote`'s: registry on, register + gate; registry off,
    the best run serves (DESIGN.md, Models). Here only its answer becomes the job's outcome."""
    headline = f"best {best.name} accuracy {best.accuracy:.4f}"
    if not settings.mlflow_enable_model_registry:
        choice = choose_run(settings, client, best.run_id)
        return _Outcome(
            decision=UNREGISTERED,
            champion_changed=choice.chosen,
            version=None,
            uri=f"runs:/{best.run_id}/{MODEL_ARTIFACT}",
            message=f"{headline}; {choice.reason}",
            champion={
                "uri": choice.served.uri if choice.served else None,
                "version": None,
                "run_id": choice.served.run_id if choice.served else None,
            },
        )
    promotion = register_and_gate(
        settings,
        client,
        model_uri=model.uri,
        challenger_correct=model.eval_correct,
        eval_features=split.eval_features,
        eval_labels=split.eval_labels,
        eval_batch_ids=split.eval_batch_ids,
        tags={
            TAG_CANDIDATE: best.name,
            TAG_DATA_HASH: split.lineage.data_hash,
            TAG_MAX_BATCH_ID: str(split.lineage.max_batch_id),
            TAG_SIGNATURE: model.signature,
        },
    )
    record_version(
        get_engine(settings.database_url),
        model_name=settings.model_name,
        run_id=best.run_id,
        version=promotion.version,
    )
    champion = client.get_model_version_by_alias(settings.model_name, settings.champion_alias)
    return _Outcome(
        decision=promotion.decision,
        champion_changed=promotion.promoted,
        version=promotion.version,
        uri=f"models:/{settings.model_name}/{promotion.version}",
        message=f"{headline}; {settings.model_name} v{promotion.version} {promotion.decision} "
        f"({promotion.reason})",
        champion={
            "uri": f"models:/{settings.model_name}/{champion.version}",
            "alias_uri": f"models:/{settings.model_name}@{settings.champion_alias}",
            "version": str(champion.version),
            "run_id": champion.run_id,
        },
    )


def _status_payload(
    settings: Settings,
    result: TrainResult,
    outcome: _Outcome,
    metrics: dict[str, float],
    started: datetime,
) -> dict[str, Any]:
    return {
        "model_name": settings.model_name,
        "model_uri": result.model_uri,
        "version": result.model_version,
        "run_id": next(c.run_id for c in result.candidates if c.name == result.best),
        "candidate": result.best,
        "metrics": metrics,
        "trained_at": started.isoformat(),
        "decision": result.decision,
        "champion_changed": result.champion_changed,
        "champion": outcome.champion,
        "training_run_id": result.run_id,
        "data": {
            "rows": result.rows,
            "data_hash": result.data_hash,
            "max_batch_id": result.max_batch_id,
        },
        "candidates": [asdict(c) for c in result.candidates],
    }
