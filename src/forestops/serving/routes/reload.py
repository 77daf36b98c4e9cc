"""`/reload`: load the current champion now (admin key).

200 whether it swapped (`reloaded: true`) or found the champion already served, 409 when it
refused a champion that failed to load or failed the smoke prediction (the old model keeps
serving), 404 when no champion exists yet, 502 when the tracking server could not be asked.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from forestops.redact import redact_text
from forestops.serving.dependencies import ServiceDep
from forestops.serving.holder import RefreshResult
from forestops.serving.routes.responses import error_responses
from forestops.serving.schemas import ReloadResponse

_STATUS = {"swapped": 200, "unchanged": 200, "refused": 409, "missing": 404, "failed": 502}

router = APIRouter()


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={
        404: {"model": ReloadResponse, "description": "No champion registered yet"},
        409: {"model": ReloadResponse, "description": "Champion refused; old model kept"},
        502: {"model": ReloadResponse, "description": "Tracking server unreachable"},
        **error_responses(401, 403),
    },
    summary="Load the current champion now (atomic swap, smoke-tested first)",
)
async def reload(service: ServiceDep) -> JSONResponse:
    result: RefreshResult = await anyio.to_thread.run_sync(service.holder.refresh, "api")
    body = ReloadResponse(
        reloaded=result.reloaded,
        model_version=result.model_version,
        detail=redact_text(result.detail),  # the admin's answer: the error, but no secret
    )
    return JSONResponse(body.model_dump(), status_code=_STATUS[result.outcome])
