"""`/health`: liveness and readiness, open to probes (no key)."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from forestops.serving.dependencies import ServiceDep, public_problem
from forestops.serving.schemas import HealthResponse

router = APIRouter()


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "No model loaded"}},
    summary="Liveness and readiness: 200 while a model is served (ok or degraded)",
)
async def health(service: ServiceDep) -> JSONResponse:
    """A coroutine, as every cheap route here: a plain `def` costs a thread-pool hop per request,
    more than the work on two busy cores (probes and load balancers call this often)."""
    holder = service.holder
    served = holder.current
    state = holder.status
    body = HealthResponse(
        status=state,
        model_loaded=served is not None,
        model_version=served.ref.version if served else None,
        model_uri=served.ref.uri if served else None,
        detail=None if state == "ok" else public_problem(holder.problem, served),
    )
    code = status.HTTP_503_SERVICE_UNAVAILABLE if served is None else status.HTTP_200_OK
    return JSONResponse(body.model_dump(), status_code=code)
