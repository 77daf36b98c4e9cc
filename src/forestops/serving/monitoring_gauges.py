"""The monitor's verdict as Prometheus gauges on the inference service's /metrics.

The monitor is a batch job (CLI, embedded scheduler, Airflow) with no server to scrape, and a
push gateway would be one more service. Its reports are already in the database, so the
inference service, which Prometheus scrapes anyway, reads the newest one at scrape time (cached
for `_CACHE_S`, one indexed single-row query) and exposes it. A database that cannot be read
yields no monitoring series rather than a failed scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from forestops.store.monitoring import recent_reports

log = logging.getLogger(__name__)

_CACHE_S = 30.0


class MonitoringCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cached: tuple[float, dict[str, Any] | None] | None = None

    def latest(self) -> dict[str, Any] | None:
        now = time.monotonic()
        if self._cached and now - self._cached[0] < _CACHE_S:
            return self._cached[1]
        try:
            reports = recent_reports(self.engine, limit=1)
        except SQLAlchemyError as error:
            log.warning("monitoring gauges: reports unreadable: %s", error)
            reports = []
        report = reports[0] if reports else None
        self._cached = (now, report)
        return report

    def collect(self) -> Iterator[Metric]:
        report = self.latest()
        if report is None:
            return
        drift = GaugeMetricFamily(
            "forestops_feature_drift_psi",
            "Population stability index of a contract feature against the champion's training "
            "data, by source (served inputs, newly ingested batches); latest monitor report",
            labels=["feature", "source"],
        )
        for source, features in sorted(report["feature_drift"].items()):
            for feature, psi in sorted(features.items()):
                drift.add_metric([feature, source], float(psi))
        yield drift
        for name, key, text in (
            ("forestops_prediction_shift_psi", "prediction_shift", "PSI of predicted classes"),
            ("forestops_live_accuracy", "live_accuracy", "Champion accuracy on new labelled rows"),
        ):
            if report[key] is not None:
                gauge = GaugeMetricFamily(name, f"{text}; latest monitor report")
                gauge.add_metric([], float(report[key]))
                yield gauge
        alert = GaugeMetricFamily(
            "forestops_monitor_alert", "1 when the latest monitor report raised an alert"
        )
        alert.add_metric([], 1.0 if report["alert"] else 0.0)
        yield alert
        created = GaugeMetricFamily(
            "forestops_monitor_report_timestamp_seconds", "When the latest report was made"
        )
        created.add_metric([], report["created_at"].timestamp())
        yield created
