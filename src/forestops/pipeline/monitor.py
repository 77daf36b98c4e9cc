"""The monitor job: is the champion still looking at the world it was trained on, and still right?

Reference: the store rows the champion was trained on. Every training job reads all curated rows,
and batch ids only grow, so "batch_id <= the champion's `forestops.max_batch_id` tag" is exactly
its training set (no reference artifact to keep in sync). Two current samples are compared with
it: the inputs served in the last `MONITOR_WINDOW_S` (prediction_log) and the labelled rows
ingested since that training (batch_id above the tag).

Statistics: PSI for every contract feature, numbers binned on the reference deciles, categories
over the contract's codes, with +0.5 smoothing so an empty category is a finite cost. PSI and not
a chi-square test: with tens of thousands of rows a p-value flags differences nobody cares
about, while PSI is an effect size with a conventional threshold (0.2) that means the same at any
sample size; one scale for numbers and categories also gives one threshold and one gauge.
Engineered features are functions of the contract features, so they are not reported: a shift
shows up on the feature a user can act on. The predicted-class distribution of served traffic
is compared with the champion's predictions on the reference rows (same model, so only the
inputs can move it).

Live accuracy: the champion is loaded through `mlflow.pyfunc.load_model` (the artifact the
service serves; the service's fast path is smoke-tested to agree with pyfunc before it serves),
in this process: labelled batches can be thousands of rows, scoring them here costs the
inference service nothing, and works while it is down or keyed. It is loaded first, and only
once its files pass `modeling.integrity`'s check: a champion that fails it is not loaded, and
the report is an alert (status "refused"), so the caller retrains and the gate, which refuses it
too, replaces it.

Reliance: what the champion relies on (mean |TreeSHAP contribution| per contract feature) on a
bounded sample of the inputs it answered, against its training-time global explanation
(`pipeline.reliance`, which says why that measure). Reported, stored and gauged; not a reason to
retrain.

Samples below `MONITOR_MIN_ROWS` are not judged (noise, not drift). Any drift, prediction shift
or accuracy drop gives an alert; the caller (CLI, scheduler, Airflow) retrains and notifies.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from forestops import contract
from forestops.config import Settings
from forestops.modeling.integrity import ModelIntegrityError, load_verified
from forestops.modeling.tracking import (
    PRIMARY_METRIC,
    TAG_MAX_BATCH_ID,
    ServingModelRef,
    resolve_serving_model,
)
from forestops.pipeline.notify import notify
from forestops.pipeline.reliance import reliance_shift
from forestops.store.database import get_engine, upgrade
from forestops.store.monitoring import save_report
from forestops.store.schema import forest_cover_samples, prediction_log

log = logging.getLogger(__name__)

_REFERENCE_SCORED_ROWS = 50_000  # predictions on the reference: a seeded sample is plenty
_SMOOTHING = 0.5


@dataclass(frozen=True)
class MonitorReport:
    status: str  # "checked" | "skipped" | "refused" (the champion failed its integrity check)
    message: str
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    window_start: datetime | None = None
    model_version: str | None = None
    rows: dict[str, int] = field(default_factory=dict)
    feature_drift: dict[str, dict[str, float]] = field(default_factory=dict)
    prediction_shift: float | None = None
    live_accuracy: float | None = None
    reference_accuracy: float | None = None
    reliance: dict[str, Any] = field(default_factory=dict)  # pipeline.reliance's entry
    alert: bool = False
    reasons: list[str] = field(default_factory=list)
    report_id: int | None = None

    def drifted(self, source: str, threshold: float) -> list[str]:
        """The features of `source` whose PSI is above `threshold`."""
        return [f for f, psi in self.feature_drift.get(source, {}).items() if psi > threshold]

    def summary(self) -> str:
        if self.status == "skipped":
            return f"monitor skipped: {self.message}"
        verdict = "ALERT: " + "; ".join(self.reasons) if self.alert else "no alert"
        return f"monitor, champion version {self.model_version}: {verdict} ({self.message})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the CLI's --json, Airflow's XCom)."""
        data = asdict(self)
        for key in ("created_at", "window_start"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def monitor(settings: Settings, now: datetime | None = None) -> MonitorReport:
    """Compare recent data with the champion's training data; store and return the report."""
    now = now or datetime.now(UTC)
    champion = resolve_serving_model(settings)
    if champion is None:
        return MonitorReport("skipped", "no champion yet", created_at=now)
    try:
        model = _load(settings, champion)
    except ModelIntegrityError as error:
        return _refused(settings, champion, error, now)
    tag = champion.tags.get(TAG_MAX_BATCH_ID, "")
    if not tag.isdigit():
        return MonitorReport(
            "skipped", f"the champion's run has no {TAG_MAX_BATCH_ID} tag", created_at=now
        )
    upgrade(settings.database_url)
    engine = get_engine(settings.database_url)
    window_start = now - timedelta(seconds=settings.monitor_window_s)
    reference = _samples(engine, forest_cover_samples.c.batch_id <= int(tag))
    if len(reference) < settings.monitor_min_rows:
        return MonitorReport(
            "skipped", f"{len(reference)} reference rows in the store", created_at=now
        )
    ingested = _samples(engine, forest_cover_samples.c.batch_id > int(tag))
    version = champion.version or champion.run_id
    served, by_champion = _served(engine, window_start, version)
    report = _judge(
        settings, champion, model, reference, {"served": served, "ingested": ingested},
        by_champion[contract.LABEL].to_numpy(dtype=np.int64),
    )  # fmt: skip
    report["reliance"] = reliance_shift(
        settings, champion, model, by_champion[list(contract.FEATURE_NAMES)]
    )
    report_id = save_report(
        engine,
        {
            "created_at": now,
            "window_start": window_start,
            "window_end": now,
            "model_version": report["model_version"],
            "rows": report["rows"],
            "feature_drift": report["feature_drift"],
            "prediction_shift": report["prediction_shift"],
            "live_accuracy": report["live_accuracy"],
            "reference_accuracy": report["reference_accuracy"],
            "alert": bool(report["reasons"]),
            "reasons": report["reasons"],
            "reliance": report["reliance"],
        },
    )
    result = MonitorReport(
        "checked",
        ", ".join(f"{n:,} {source} rows" for source, n in report["rows"].items()),
        created_at=now,
        window_start=window_start,
        alert=bool(report["reasons"]),
        report_id=report_id,
        **report,
    )
    log.info(result.summary())
    if result.alert:
        notify(settings, result.summary())
    return result


def _refused(
    settings: Settings, champion: ServingModelRef, error: ModelIntegrityError, now: datetime
) -> MonitorReport:
    version = champion.version or champion.run_id
    reason = f"the champion {version} was refused without being loaded: {error}"
    log.error(reason)
    report = MonitorReport(
        "refused",
        "nothing was measured",
        created_at=now,
        model_version=version,
        alert=True,
        reasons=[reason],
    )
    notify(settings, report.summary())
    return report


def _judge(
    settings: Settings,
    champion: ServingModelRef,
    model: Any,
    reference: pd.DataFrame,
    samples: dict[str, pd.DataFrame],
    served_classes: np.ndarray,
) -> dict[str, Any]:
    threshold = settings.monitor_psi_threshold
    judged = {
        name: frame for name, frame in samples.items() if len(frame) >= settings.monitor_min_rows
    }
    drift = {name: feature_psi(reference, frame) for name, frame in judged.items()}
    reasons = [
        f"{feature} drifted in {source} data (PSI {psi:.2f} > {threshold})"
        for source, features in drift.items()
        for feature, psi in features.items()
        if psi > threshold
    ]
    shift = None
    if len(served_classes) >= settings.monitor_min_rows:
        scored = reference.sample(
            min(len(reference), _REFERENCE_SCORED_ROWS), random_state=settings.train_seed
        )
        shift = psi(_class_shares(_predict(model, scored)), _class_shares(served_classes))
        if shift > threshold:
            reasons.append(f"predicted classes shifted (PSI {shift:.2f} > {threshold})")
    live = None
    reference_accuracy = champion.metrics.get(PRIMARY_METRIC)
    if "ingested" in judged:
        ingested = judged["ingested"]
        live = float(np.mean(_predict(model, ingested) == ingested[contract.LABEL].to_numpy()))
        floor = (reference_accuracy or 0.0) - settings.monitor_accuracy_drop
        if reference_accuracy is not None and live < floor:
            reasons.append(
                f"live accuracy {live:.3f} is below the champion's {reference_accuracy:.3f} "
                f"by more than {settings.monitor_accuracy_drop}"
            )
    return {
        "model_version": champion.version or champion.run_id,
        "rows": {"reference": len(reference), **{k: len(v) for k, v in samples.items()}},
        "feature_drift": drift,
        "prediction_shift": shift,
        "live_accuracy": live,
        "reference_accuracy": reference_accuracy,
        "reasons": reasons,
    }


def feature_psi(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, float]:
    """PSI per contract feature; categories as ordinal codes over every contract category."""
    result: dict[str, float] = {}
    for name in contract.NUMERIC_NAMES:
        ref = reference[name].to_numpy(dtype=np.float64)
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)[1:-1]))
        bins = len(edges) + 1
        result[name] = psi(
            np.bincount(np.searchsorted(edges, ref, side="right"), minlength=bins),
            np.bincount(
                np.searchsorted(edges, current[name].to_numpy(dtype=np.float64), side="right"),
                minlength=bins,
            ),
        )
    for name, categories in contract.CATEGORICAL_FEATURES.items():
        result[name] = psi(
            np.bincount(_codes(reference[name], name), minlength=len(categories)),
            np.bincount(_codes(current[name], name), minlength=len(categories)),
        )
    return result


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    expected = (reference_counts + _SMOOTHING) / (
        reference_counts.sum() + _SMOOTHING * len(reference_counts)
    )
    actual = (current_counts + _SMOOTHING) / (
        current_counts.sum() + _SMOOTHING * len(current_counts)
    )
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _class_shares(labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels.astype(np.int64), minlength=len(contract.CLASS_IDS))


def _codes(values: pd.Series, feature: str) -> np.ndarray:
    return np.fromiter(
        (contract.category_code(feature, v) for v in values), dtype=np.int64, count=len(values)
    )


def _samples(engine: Engine, condition: Any) -> pd.DataFrame:
    columns = [forest_cover_samples.c[name] for name in contract.COLUMNS]
    with engine.connect() as conn:
        return pd.read_sql(select(*columns).where(condition), conn)


def _served(engine: Engine, since: datetime, version: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every input served in the window (inputs drift whichever model answered them), and the
    inputs the champion itself answered with the class it predicted (as `cover_type`): an
    earlier version's answers in the same window would otherwise count as a shift of the new
    champion, and its inputs as what the new one relies on."""
    query = select(
        prediction_log.c.features, prediction_log.c.prediction, prediction_log.c.model_version
    ).where(prediction_log.c.logged_at >= since)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame([row.features for row in rows], columns=list(contract.FEATURE_NAMES))
    mine = np.array([row.model_version == version for row in rows], dtype=bool)
    by_champion = frame[mine].assign(
        **{contract.LABEL: np.array([row.prediction for row in rows], dtype=np.int64)[mine]}
    )
    return frame, by_champion.reset_index(drop=True)


def _load(settings: Settings, champion: ServingModelRef) -> Any:
    from mlflow.tracking import MlflowClient

    return load_verified(settings, MlflowClient(settings.mlflow_tracking_uri), champion)


def _predict(model: Any, frame: pd.DataFrame) -> np.ndarray:
    output = model.predict(frame[list(contract.FEATURE_NAMES)].reset_index(drop=True))
    return output[contract.LABEL].to_numpy(dtype=np.int64)
