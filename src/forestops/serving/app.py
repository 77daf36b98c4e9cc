"""The inference service: `create_app(settings)` builds it, `forestops serve` runs it.

`create_app` only wires: it builds the service's parts (model holder, metrics, prediction log),
puts them on `app.state` (`serving.dependencies`), starts and stops them in the lifespan, adds
the metrics middleware and the single-record fast path (`serving.fast_predict`) and mounts the routers of `serving.routes`, each with its guard: `/health`
and `/metrics` open, `/metadata` and `/predict*` behind a client key, `/reload` behind the admin
key (`serving.auth`). What each endpoint answers is documented in its route module.

Nothing the service answers carries a secret or a host path: `/health` says what is wrong in the
service's own words (the raw error goes to the log, where every URI is redacted), `/metadata`
leaves out `mlflow.source.name` and redacts URIs in the lineage tags.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import anyio
from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute

from forestops import __version__
from forestops.config import Settings, get_settings
from forestops.redact import install_log_redaction
from forestops.serving.auth import client_admission, make_guards
from forestops.serving.dependencies import ServiceState, set_state
from forestops.serving.fast_predict import FastPredictMiddleware
from forestops.serving.holder import ModelHolder
from forestops.serving.metrics import MetricsMiddleware, ServiceMetrics
from forestops.serving.monitoring_gauges import MonitoringCollector
from forestops.serving.prediction_log import PredictionLogger
from forestops.serving.routes import health, metadata, predict, prometheus, reload
from forestops.store.database import get_engine

_DESCRIPTION = """Classifies forest cover type (UCI Covertype, 7 classes) with the champion model.

* Records use the data contract's canonical snake_case names or the course's CamelCase names.
  Numbers are JSON integers within the contract's bounds; categories accept the contract's codes
  and aliases, case-insensitively.
* Authentication, when `API_KEYS` is configured: `X-API-Key: <key>` or
  `Authorization: Bearer <key>`. `/reload` then needs `ADMIN_API_KEY`. `/health` and `/metrics`
  are always open.
* Request bodies are limited to `MAX_BODY_BYTES` and `MAX_BATCH_ROWS` records (413 beyond).
* `?explain=true` (or `all`) on `/predict` and `?explain=true` on `/predict/csv` say why: the
  base value and each contract feature's contribution to the class's raw score, exact for
  LightGBM models (TreeSHAP; the `explain` parameter says how engineered features are
  attributed); other models answer 422.
"""


def create_app(settings: Settings | None = None, holder: ModelHolder | None = None) -> FastAPI:
    """The service for `settings`; pass a `holder` to share one model between apps (tests).

    The app starts the holder in its lifespan, and stops it only if it created it.
    """
    settings = settings or get_settings()
    install_log_redaction()
    own_holder = holder is None
    model_holder = holder or ModelHolder(settings)
    metrics = ServiceMetrics(model_holder)
    engine = get_engine(settings.database_url)
    prediction_logger = (
        PredictionLogger(engine, metrics.registry, settings.prediction_log_capacity)
        if settings.prediction_log_enabled
        else None
    )
    metrics.registry.register(MonitoringCollector(engine))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(model_holder.start)
        if prediction_logger:
            prediction_logger.start()
        try:
            yield
        finally:
            if prediction_logger:
                await anyio.to_thread.run_sync(prediction_logger.stop)
            if own_holder:
                await anyio.to_thread.run_sync(model_holder.stop)

    app = FastAPI(
        title="forestops inference",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
    )
    set_state(app, settings, model_holder, metrics, prediction_logger)
    require_client, require_admin = make_guards(settings)
    client = [Depends(require_client)]
    app.include_router(health.router)
    app.include_router(metadata.router, dependencies=client)
    predict_routes = predict.predict_router(settings.max_batch_rows)
    app.include_router(predict_routes, dependencies=client)
    app.include_router(reload.router, dependencies=[Depends(require_admin)])
    app.include_router(prometheus.router)
    predict_route = next(
        route
        for route in predict_routes.routes
        if isinstance(route, APIRoute) and route.path == "/predict"
    )
    # Added first, so it runs inside the metrics middleware (the last added is the outermost).
    app.add_middleware(
        FastPredictMiddleware,
        service=cast(ServiceState, app.state),
        route=predict_route,
        admits=client_admission(settings),
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
