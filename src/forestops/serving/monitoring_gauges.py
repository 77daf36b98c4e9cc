"""The monitor's verdict, and the newest ingestion batch, as gauges on the inference /metrics.

The monitor and ingestion are batch jobs (CLI, embedded scheduler, Airflow) with no server to
scrape, and a push gateway would be one more service. What they found is already in the
database, so the inference service, which Prometheus scrapes anyway, reads the newest report and
batch at scrape time (cached for `_CACHE_S`: two indexed single-row queries per 30 s) and
exposes them. Every family is always declared (dashboards and their test see the names); samples
appear once there is something to show. A database that cannot be read gives no samples rather
than a failed scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from forestops.store.monitoring import latest_batch, recent_reports

log = logging.getLogger(__name__)

_CACHE_S = 30.0
_BATCH_KINDS = ("received", "inserted", "duplicates", "quarantined")


class MonitoringCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cached: tuple[float, dict[str, Any] | None, dict[str, Any] | None] | None = None

    def snapshot(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(newest monitoring report, newest ingestion batch), either None when absent."""
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] >= _CACHE_S:
            try:
                reports = recent_reports(self.engine, limit=1)
                batch = latest_batch(self.engine)
            except SQLAlchemyError as error:
                log.warning("monitoring gauges: database unreadable: %s", error)
                reports, batch = [], None
            self._cached = (now, reports[0] if reports else None, batch)
        return self._cached[1], self._cached[2]

    def collect(self) -> Iterator[Metric]:
        report, batch = self.snapshot()
        drift = GaugeMetricFamily(
            "forestops_feature_drift_psi",
            "Population stability index of a contract feature against the champion's training "
            "data, by source (served inputs, newly ingested batches); latest monitor report",
            labels=["feature", "source"],
        )
        shift = GaugeMetricFamily(
            "forestops_prediction_shift_psi", "PSI of served predicted classes; latest report"
        )
        accuracy = GaugeMetricFamily(
            "forestops_live_accuracy", "Champion accuracy on newly ingested labelled rows"
        )
        alert = GaugeMetricFamily(
            "forestops_monitor_alert", "1 when the latest monitor report raised an alert"
        )
        created = GaugeMetricFamily(
            "forestops_monitor_report_timestamp_seconds", "When the latest report was made"
        )
        reliance = GaugeMetricFamily(
            "forestops_reliance_shift",
            "A contract feature's share of the champion's mean |contribution| on served inputs "
            "minus its share at training (pipeline.reliance); latest report",
            labels=["feature"],
        )
        reliance_total = GaugeMetricFamily(
            "forestops_reliance_shift_total",
            "Total variation between the feature shares of the champion's mean |contribution| "
            "on served inputs and at training (0: same reliance, 1: disjoint); latest report",
        )
        rows = GaugeMetricFamily(
            "forestops_ingestion_last_batch_rows",
            "Rows of the newest ingestion batch, by kind (received, inserted, duplicates, "
            "quarantined)",
            labels=["kind"],
        )
        if report is not None:
            for source, features in sorted(report["feature_drift"].items()):
                for feature, psi in sorted(features.items()):
                    drift.add_metric([feature, source], float(psi))
            if report["prediction_shift"] is not None:
                shift.add_metric([], float(report["prediction_shift"]))
            if report["live_accuracy"] is not None:
                accuracy.add_metric([], float(report["live_accuracy"]))
            compared = report.get("reliance") or {}
            for feature, values in sorted(compared.get("features", {}).items()):
                reliance.add_metric([feature], float(values["shift"]))
            if compared.get("total_shift") is not None:
                reliance_total.add_metric([], float(compared["total_shift"]))
            alert.add_metric([], 1.0 if report["alert"] else 0.0)
            created.add_metric([], _utc(report["created_at"]).timestamp())
        fetched = GaugeMetricFamily(
            "forestops_ingestion_last_batch_timestamp_seconds",
            "When the newest ingestion batch was fetched (any outcome): the stale-data alert",
        )
        coverage = GaugeMetricFamily(
            "forestops_harvest_estimated_coverage",
            "Share of the source batch a harvest has collected so far (capture-recapture "
            "estimate of the newest ingestion record, when it has one), by group and batch",
            labels=["group", "batch"],
        )
        if batch is not None:
            for kind in _BATCH_KINDS:
                rows.add_metric([kind], float(batch[kind] or 0))
            fetched.add_metric([], _utc(batch["fetched_at"]).timestamp())
            if batch["estimated_coverage"] is not None:
                where = [str(batch["group_number"]), str(batch["batch_number"])]
                coverage.add_metric(where, float(batch["estimated_coverage"]))
        yield from (drift, shift, accuracy, reliance, reliance_total, alert, created, rows)
        yield from (fetched, coverage)


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
