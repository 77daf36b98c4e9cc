"""What the inference routes read per request, from `app.state`: one typed dependency.

`create_app` (or a test, on a bare FastAPI app) puts the service's parts on `app.state` once
with `set_state`; a route asks for them with a `ServiceDep` parameter, so no route module
closes over the app and each can be mounted and tested alone.

One dependency for all four parts, not one each: every dependency FastAPI solves costs the
single-record `/predict` path about 15 microseconds (measured in-process), and that path is
the one the service is benchmarked on. The dependency is `async def` because FastAPI runs a
plain `def` dependency in the thread pool, a thread hop per request. It returns `app.state`
itself (no object built per request), typed by the `ServiceState` protocol.
"""

from __future__ import annotations

from typing import Annotated, Protocol, cast

from fastapi import Depends, FastAPI, HTTPException, Request, status

from forestops.config import Settings
from forestops.serving.holder import ModelHolder
from forestops.serving.metrics import ServiceMetrics
from forestops.serving.prediction_log import PredictionLogger
from forestops.serving.served_model import ServedModel, describe


class ServiceState(Protocol):
    """The attributes `set_state` puts on `app.state`."""

    settings: Settings
    holder: ModelHolder
    metrics: ServiceMetrics
    prediction_logger: PredictionLogger | None  # None when PREDICTION_LOG_ENABLED is off


def set_state(
    app: FastAPI,
    settings: Settings,
    holder: ModelHolder,
    metrics: ServiceMetrics,
    prediction_logger: PredictionLogger | None,
) -> None:
    app.state.settings = settings
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.prediction_logger = prediction_logger


async def service_state(request: Request) -> ServiceState:
    return cast(ServiceState, request.app.state)


ServiceDep = Annotated[ServiceState, Depends(service_state)]


def served_model(holder: ModelHolder) -> ServedModel:
    """The model a request answers with, read once (a reload mid-request cannot change it), or
    503 while none is loaded."""
    served = holder.current
    if served is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"no model loaded: {public_problem(holder.problem, None)}",
        )
    return served


def public_problem(problem: str | None, served: ServedModel | None) -> str:
    """What an open answer (/health, a 503) says is wrong: the holder's own opening words, never
    the error text it quotes after them (a raw MLflow error can carry a tracking URI's password,
    a host name or a path); the service log has the whole, redacted."""
    said = (problem or "not ready").split(": ", 1)[0]
    if served is not None and "serving" not in said:
        said += f"; still serving {describe(served.ref)}"
    return f"{said} (the service log says why)"
