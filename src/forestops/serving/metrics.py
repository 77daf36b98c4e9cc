"""Prometheus metrics of the inference service, in a registry of its own per app.

Request metrics are labelled by route template (`/predict`, never a raw path: a scanner hitting
random URLs must not create series), unmatched paths share one label. Model state is not pushed
anywhere: a collector reads the holder at scrape time, so the numbers cannot go stale.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forestops import contract
from forestops.serving.holder import ModelHolder

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
UNMATCHED = "<unmatched>"


class ServiceMetrics:
    def __init__(self, holder: ModelHolder) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "forestops_http_requests",
            "HTTP requests by route template, method and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "forestops_http_request_duration_seconds",
            "Time from request start to the end of the response, by route template",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "forestops_predictions",
            "Records predicted, by predicted class",
            ["cover_type", "cover_type_name"],
            registry=self.registry,
        )
        self._per_class = [self.predictions.labels(str(c.id), c.name) for c in contract.COVER_TYPES]
        self.registry.register(HolderCollector(holder))

    def count_predictions(self, labels: np.ndarray) -> None:
        for class_id, count in enumerate(np.bincount(labels, minlength=len(self._per_class))):
            if count:
                self._per_class[class_id].inc(int(count))


class HolderCollector(Collector):
    """Model state at scrape time: which model, loaded or not, status, refresh outcomes."""

    def __init__(self, holder: ModelHolder) -> None:
        self.holder = holder

    def collect(self) -> Iterator[Metric]:
        served = self.holder.current
        loaded = GaugeMetricFamily("forestops_model_loaded", "1 when a model is being served")
        loaded.add_metric([], 1.0 if served else 0.0)
        yield loaded
        status = GaugeMetricFamily(
            "forestops_model_status", "1 for the holder's current status", labels=["status"]
        )
        for name in ("ok", "degraded", "unavailable"):
            status.add_metric([name], 1.0 if self.holder.status == name else 0.0)
        yield status
        info = GaugeMetricFamily(
            "forestops_model_info",
            "The model being served (value 1)",
            labels=["model_name", "model_version", "run_id", "alias", "runtime"],
        )
        accuracy = GaugeMetricFamily(
            "forestops_model_accuracy",
            "Accuracy of the served model on its training job's evaluation rows, by version",
            labels=["model_version"],
        )
        if served:
            ref = served.ref
            info.add_metric(
                [served.model_name, ref.version or "", ref.run_id, ref.alias or "", served.runtime],
                1.0,
            )
            if "accuracy" in ref.metrics:
                accuracy.add_metric([ref.version or ""], float(ref.metrics["accuracy"]))
        yield info
        yield accuracy
        refreshes = CounterMetricFamily(
            "forestops_model_reloads",
            "Model refreshes by trigger (startup, poll, api) and outcome "
            "(swapped, unchanged, refused, missing, failed)",
            labels=["trigger", "outcome"],
        )
        for (trigger, outcome), count in sorted(self.holder.refreshes.items()):
            refreshes.add_metric([trigger, outcome], float(count))
        yield refreshes


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): counts and times every request by route template."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except HTTPException as error:  # e.g. the body limit, answered by an outer middleware
            status_code = error.status_code
            raise
        finally:
            route = scope.get("route")
            template = getattr(route, "path", UNMATCHED)
            method = scope["method"]
            self.metrics.requests.labels(template, method, str(status_code)).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - started)
