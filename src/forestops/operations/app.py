"""`forestops operations-api`: the operator's actions on the champion over HTTP.

It is the only service besides training that holds the tracking server's write account: the UI
never moves an alias itself, it asks here with the operator's key (`auth`), so an action the UI
does not show cannot be taken by calling the API either.

- `GET /health`: up, and whether actions are enabled (ADMIN_API_KEY set).
- `GET /versions`, `GET /audit`: what `forestops model list` shows and the audit trail; open, or
  behind API_KEYS when those are set (the inference service's client keys, or the admin key).
- `GET /operator`: 204 for the admin key (the UI's sign-in check), 401/403 otherwise.
- `POST /champion/promote` {version, reason, actor}, `POST /champion/rollback` {reason, actor}:
  `pipeline.model_ops`, smoke load first; a refusal is 409 with the reason, the champion unmoved.
- `POST /training` {reason, actor}: a forced training in the background (202); `GET /training`
  its state.

Every error is JSON: 4xx naming the field or the setting at fault, 502 when the tracking server
fails, 503 when the app database does.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response, status
from fastapi.responses import JSONResponse
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy.exc import SQLAlchemyError

from forestops.config import Settings
from forestops.operations.auth import make_operator_guard
from forestops.operations.training import Trainer, TrainingBusy
from forestops.pipeline import model_ops
from forestops.redact import redact_text
from forestops.serving.auth import make_guards
from forestops.store.audit import recent_actions

log = logging.getLogger(__name__)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Actor = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]


class PromoteRequest(BaseModel):
    version: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[1-9]\d{0,9}$")]
    reason: Text = Field(description="Why: kept on the version and in the audit trail")
    actor: Actor = Field("operator", description="Who: the operator's name or e-mail")


class RollbackRequest(BaseModel):
    reason: Text
    actor: Actor = "operator"


class TrainRequest(BaseModel):
    reason: Text | None = None
    actor: Actor = "operator"


class Refused(Exception):
    """An action the operations refused to start, as (status, detail, field)."""

    def __init__(self, status_code: int, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status_code, self.detail, self.field = status_code, detail, field


def _actions_router(settings: Settings, trainer: Trainer) -> APIRouter:
    operator = Depends(make_operator_guard(settings))
    router = APIRouter(dependencies=[operator], tags=["operator actions"])

    @router.get("/operator", status_code=status.HTTP_204_NO_CONTENT)
    def check_operator() -> Response:
        """204 when the presented key is the admin key: how the UI signs an operator in."""
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post("/champion/promote")
    def promote(body: PromoteRequest) -> dict[str, Any]:
        return _acted(
            _model_op(
                model_ops.promote_version,
                settings,
                body.version,
                actor=body.actor,
                reason=body.reason,
            )
        )

    @router.post("/champion/rollback")
    def rollback(body: RollbackRequest) -> dict[str, Any]:
        return _acted(_model_op(model_ops.rollback, settings, actor=body.actor, reason=body.reason))

    @router.post("/training", status_code=status.HTTP_202_ACCEPTED)
    def train_now(body: TrainRequest) -> dict[str, Any]:
        try:
            return trainer.start(body.actor, body.reason).to_dict()
        except TrainingBusy as busy:
            raise Refused(status.HTTP_409_CONFLICT, str(busy)) from None

    return router


def _reading_router(settings: Settings, trainer: Trainer) -> APIRouter:
    reader, _ = make_guards(settings)
    router = APIRouter(dependencies=[Depends(reader)], tags=["reading"])

    @router.get("/versions")
    def versions() -> list[dict[str, Any]]:
        return [v.to_dict() for v in _model_op(model_ops.list_versions, settings)]

    @router.get("/audit")
    def audit(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        rows = recent_actions(model_ops.audit_engine(settings), settings.model_name, limit)
        return [{**row, "created_at": row["created_at"].isoformat()} for row in rows]

    @router.get("/training")
    def training() -> dict[str, Any]:
        """The running or the last training asked here (`job` is null before the first)."""
        job = trainer.job
        return {"job": None if job is None else job.to_dict()}

    return router


def _model_op(operation: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return operation(*args, **kwargs)
    except model_ops.UnknownVersion as error:
        raise Refused(status.HTTP_404_NOT_FOUND, str(error), "version") from None
    except model_ops.ModelOpError as error:
        raise Refused(status.HTTP_409_CONFLICT, str(error)) from None


def _acted(outcome: model_ops.ActionOutcome) -> dict[str, Any]:
    if not outcome.done:
        raise Refused(status.HTTP_409_CONFLICT, outcome.detail)
    return outcome.to_dict()


def _error(status_code: int, detail: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status_code)


def create_app(settings: Settings, child_env: Mapping[str, str] | None = None) -> FastAPI:
    """`child_env`: settings a requested training's child must see (`forestops up` passes its
    children's); by default the child inherits this process's environment."""
    trainer = Trainer(sys.executable, child_env or {})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        trainer.stop()

    app = FastAPI(
        title="forestops operations API",
        description=__doc__,
        version="1",
        lifespan=lifespan,
    )

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model_name": settings.model_name,
            "actions_enabled": bool(
                settings.admin_api_key and settings.admin_api_key.get_secret_value()
            ),
        }

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> JSONResponse:
        return _error(error.status_code, error.detail, error.field)

    @app.exception_handler(MlflowException)
    async def tracking_failed(request: Request, error: MlflowException) -> JSONResponse:
        log.warning("tracking server error on %s", request.url.path, exc_info=True)
        detail = f"the tracking server failed: {redact_text(error.message)[:500]}"
        return _error(status.HTTP_502_BAD_GATEWAY, detail)

    @app.exception_handler(SQLAlchemyError)
    async def database_failed(request: Request, error: SQLAlchemyError) -> JSONResponse:
        log.warning("app database error on %s", request.url.path, exc_info=True)
        detail = f"the app database failed: {type(error).__name__} (DATABASE_URL)"
        return _error(status.HTTP_503_SERVICE_UNAVAILABLE, detail)

    app.include_router(_reading_router(settings, trainer))
    app.include_router(_actions_router(settings, trainer))
    return app
