"""The inference service: `create_app(settings)` builds it, `forestops serve` runs it.

The per-request path of `/predict` is: read the body, parse it with orjson, validate it (the
contract-generated pydantic model decides; a plainly clean batch is checked in bulk, see
`decode`), put the values into numpy arrays, call the model's array fast path, write the answer
with orjson. No
DataFrame, no disk, no MLflow call; the model object is read once from the holder, so a reload
mid-request cannot change the model under it. Small requests run on the event loop (a thread hop
costs more than the model); batches go to the thread pool, split across `INFERENCE_THREADS`
single-threaded model calls, so one big request neither stalls the others nor leaves a core idle.

Status codes beyond the obvious: 422 names the record index and field (`loc`:
`["body", <index>, <field>]` for an array, `["body", <field>]` for a single object); 413 for a
body over `MAX_BODY_BYTES` or more records than `MAX_BATCH_ROWS`; 503 while no model is loaded.
`/reload` answers 200 whether it swapped (`reloaded: true`) or found the champion already
served, 409 when it refused a champion that failed to load or failed the smoke prediction (the
old model keeps serving), 404 when no champion exists yet, 502 when the tracking server could
not be asked.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import numpy as np
import orjson
from fastapi import Depends, FastAPI, File, HTTPException, Request, UploadFile, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, TypeAdapter, ValidationError

from forestops import __version__, contract
from forestops.config import Settings, get_settings
from forestops.serving.auth import make_guards
from forestops.serving.csv_io import CsvRejected, TooManyRows, parse_csv, render_csv
from forestops.serving.decode import Arrays, records_to_arrays
from forestops.serving.holder import ModelHolder, RefreshResult, ServedModel, trained_at_iso
from forestops.serving.metrics import MetricsMiddleware, ServiceMetrics
from forestops.serving.monitoring_gauges import MonitoringCollector
from forestops.serving.prediction_log import PredictionLogger
from forestops.serving.schemas import (
    ErrorDetail,
    ForestRecord,
    HealthResponse,
    MetadataResponse,
    PredictResponse,
    ReloadResponse,
    class_schema,
    feature_schema,
)
from forestops.store.database import get_engine

_INLINE_MAX_ROWS = 32  # above this, the model runs in the thread pool
_MIN_SLICE_ROWS = 256  # smaller slices cost more in thread hand-offs than they save
_RELOAD_STATUS = {"swapped": 200, "unchanged": 200, "refused": 409, "missing": 404, "failed": 502}
_LINEAGE_PREFIXES = ("forestops.", "mlflow.source.")
_VALIDATION_ERROR = {  # FastAPI documents 422 only for parameters it parses itself
    "description": "Invalid records: `loc` names the record index and the field",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
    },
}

_DESCRIPTION = """Classifies forest cover type (UCI Covertype, 7 classes) with the champion model.

* Records use the data contract's canonical snake_case names or the course's CamelCase names.
  Numbers are JSON integers within the contract's bounds; categories accept the contract's codes
  and aliases, case-insensitively.
* Authentication, when `API_KEYS` is configured: `X-API-Key: <key>` or
  `Authorization: Bearer <key>`. `/reload` then needs `ADMIN_API_KEY`. `/health` and `/metrics`
  are always open.
* Request bodies are limited to `MAX_BODY_BYTES` and `MAX_BATCH_ROWS` records (413 beyond).
"""


def _error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    reasons = {
        401: "Missing or invalid API key",
        403: "A valid key that is not the admin key",
        413: "Body larger than MAX_BODY_BYTES, or more records than MAX_BATCH_ROWS",
        415: "A body that is not sent as application/json",
        503: "No model loaded yet",
    }
    return {code: {"model": ErrorDetail, "description": reasons[code]} for code in codes}


def _predict_body_schema(settings: Settings) -> dict[str, Any]:
    record = ForestRecord.model_json_schema()
    batch = {
        "type": "array",
        "items": record,
        "minItems": 1,
        "maxItems": settings.max_batch_rows,
        "title": "ForestRecords",
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": [record, batch]}}},
        }
    }


def create_app(settings: Settings | None = None, holder: ModelHolder | None = None) -> FastAPI:
    """The service for `settings`; pass a `holder` to share one model between apps (tests).

    The app starts the holder in its lifespan, and stops it only if it created it.
    """
    settings = settings or get_settings()
    own_holder = holder is None
    model_holder = holder or ModelHolder(settings)
    metrics = ServiceMetrics(model_holder)
    require_client, require_admin = make_guards(settings)
    records_adapter: TypeAdapter[list[BaseModel]] = TypeAdapter(list[ForestRecord])  # type: ignore[valid-type]
    features = feature_schema()
    classes = class_schema()
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
    app.state.holder = model_holder
    app.state.prediction_logger = prediction_logger
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    def served_model() -> ServedModel:
        served = model_holder.current
        if served is None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"no model loaded: {model_holder.problem}"
            )
        return served

    def log_records(
        request_id: str | None,
        served: ServedModel,
        arrays: Arrays,
        probabilities: np.ndarray,
        started: float,
    ) -> None:
        if prediction_logger:
            prediction_logger.record(
                request_id or uuid.uuid4().hex,
                served.ref.version or served.ref.run_id,
                arrays,
                probabilities.argmax(axis=1),
                probabilities.max(axis=1),
                (time.perf_counter() - started) * 1000,
            )

    @app.get(
        "/health",
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "No model loaded"}},
        summary="Liveness and readiness: 200 while a model is served (ok or degraded)",
    )
    def health() -> JSONResponse:
        served = model_holder.current
        state = model_holder.status
        body = HealthResponse(
            status=state,
            model_loaded=served is not None,
            model_version=served.ref.version if served else None,
            model_uri=served.ref.uri if served else None,
            detail=None if state == "ok" else model_holder.problem,
        )
        code = status.HTTP_503_SERVICE_UNAVAILABLE if served is None else status.HTTP_200_OK
        return JSONResponse(body.model_dump(), status_code=code)

    @app.get(
        "/metadata",
        response_model=MetadataResponse,
        responses=_error_responses(401, 503),
        dependencies=[Depends(require_client)],
        summary="The served model: version, training metrics, lineage, feature schema, classes",
    )
    def metadata() -> MetadataResponse:
        served = served_model()
        ref = served.ref
        return MetadataResponse(
            model_name=served.model_name,
            model_version=ref.version,
            alias=ref.alias,
            run_id=ref.run_id,
            model_uri=ref.uri,
            metrics={k: v for k, v in ref.metrics.items() if math.isfinite(v)},
            params=ref.params,
            trained_at=trained_at_iso(ref),
            lineage={k: v for k, v in ref.tags.items() if k.startswith(_LINEAGE_PREFIXES)},
            features=features,
            classes=classes,
            runtime=served.runtime,
            runtime_note=served.runtime_note,
        )

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses={**_error_responses(401, 413, 415, 503), 422: _VALIDATION_ERROR},
        dependencies=[Depends(require_client)],
        openapi_extra=_predict_body_schema(settings),
        summary="Classify one record (a JSON object) or a batch (a JSON array of records)",
    )
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        served = served_model()
        _require_json(request.headers.get("content-type"))
        items, single = _parse_records(await request.body(), settings.max_batch_rows)
        try:
            arrays = records_to_arrays(items, records_adapter)
        except ValidationError as error:
            raise RequestValidationError(_body_errors(error, single)) from None
        probabilities = await _predict(served, arrays, settings.inference_threads)
        labels = probabilities.argmax(axis=1)
        metrics.count_predictions(labels)
        log_records(request.headers.get("x-request-id"), served, arrays, probabilities, started)
        names = contract.CLASS_NAMES
        payload = {
            "model_name": served.model_name,
            "model_version": served.ref.version,
            "predictions": [
                {"cover_type": label, "cover_type_name": names[label], "probabilities": probs}
                for label, probs in zip(labels.tolist(), probabilities.tolist(), strict=True)
            ],
        }
        return Response(orjson.dumps(payload), media_type="application/json")

    @app.post(
        "/predict/csv",
        response_class=Response,
        responses={
            200: {
                "content": {"text/csv": {"schema": {"type": "string"}}},
                "description": "The input columns, then cover_type_pred, cover_type_name, "
                "probability_0..probability_6",
            },
            **_error_responses(401, 413, 503),
        },
        dependencies=[Depends(require_client)],
        summary="Upload a CSV (canonical or course header), get it back with predictions",
    )
    async def predict_csv(
        file: Annotated[
            UploadFile, File(description="CSV, ',' or ';' separated, UTF-8 (BOM allowed)")
        ],
    ) -> Response:
        served = served_model()
        data = await file.read()

        def score() -> str:
            started = time.perf_counter()
            parsed = parse_csv(data, settings.max_batch_rows)
            probabilities = served.predict(parsed.numeric, parsed.area, parsed.soil)
            metrics.count_predictions(probabilities.argmax(axis=1))
            arrays = (parsed.numeric, parsed.area, parsed.soil)
            log_records(None, served, arrays, probabilities, started)
            return render_csv(parsed, probabilities)

        try:
            text = await anyio.to_thread.run_sync(score)
        except CsvRejected as error:
            raise RequestValidationError(error.errors) from None
        except TooManyRows as error:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(error)) from None
        filename = f"{(file.filename or 'predictions').rsplit('.', 1)[0]}-predictions.csv"
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @app.post(
        "/reload",
        response_model=ReloadResponse,
        responses={
            404: {"model": ReloadResponse, "description": "No champion registered yet"},
            409: {"model": ReloadResponse, "description": "Champion refused; old model kept"},
            502: {"model": ReloadResponse, "description": "Tracking server unreachable"},
            **_error_responses(401, 403),
        },
        dependencies=[Depends(require_admin)],
        summary="Load the current champion now (atomic swap, smoke-tested first)",
    )
    async def reload() -> JSONResponse:
        result: RefreshResult = await anyio.to_thread.run_sync(model_holder.refresh, "api")
        body = ReloadResponse(
            reloaded=result.reloaded, model_version=result.model_version, detail=result.detail
        )
        return JSONResponse(body.model_dump(), status_code=_RELOAD_STATUS[result.outcome])

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        summary="Prometheus metrics (open, like /health)",
    )
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _predict(served: ServedModel, arrays: Arrays, threads: int) -> np.ndarray:
    """Small requests inline; batches split into up to `threads` slices predicted in parallel
    (model calls release the GIL), so one big request uses every core."""
    rows = len(arrays[0])
    if rows <= _INLINE_MAX_ROWS:
        return served.predict(*arrays)
    parts = max(1, min(threads, rows // _MIN_SLICE_ROWS))
    bounds = np.linspace(0, rows, parts + 1, dtype=np.int64)
    results: list[np.ndarray] = [np.empty(0)] * parts

    async def run(index: int) -> None:
        numeric, area, soil = (a[bounds[index] : bounds[index + 1]] for a in arrays)
        results[index] = await anyio.to_thread.run_sync(served.predict, numeric, area, soil)

    async with anyio.create_task_group() as group:
        for index in range(parts):
            group.start_soon(run, index)
    return np.concatenate(results)


def _require_json(content_type: str | None) -> None:
    """The body is read raw (for speed), which skips FastAPI's strict Content-Type check: do it
    here. A browser sends text/plain or a form cross-site without a CORS preflight."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    json_suffix = media.startswith("application/") and media.endswith("+json")
    if media == "application/json" or json_suffix:
        return
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        f"Content-Type must be application/json, not {content_type or 'missing'}",
    )


def _parse_records(body: bytes, max_rows: int) -> tuple[list[Any], bool]:
    """The JSON body as a list of raw records, and whether it was a single object."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ["body"], "msg": f"invalid JSON: {error}"}]
        ) from None
    if isinstance(payload, dict):
        return [payload], True
    if not isinstance(payload, list):
        raise RequestValidationError(
            [
                {
                    "type": "model_type",
                    "loc": ["body"],
                    "msg": "expected a record object or a non-empty array of records",
                    "input": payload,
                }
            ]
        )
    if not payload:
        raise RequestValidationError(
            [{"type": "too_short", "loc": ["body"], "msg": "the array of records is empty"}]
        )
    if len(payload) > max_rows:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"{len(payload)} records, more than MAX_BATCH_ROWS={max_rows}",
        )
    return payload, False


def _body_errors(error: ValidationError, single: bool) -> list[dict[str, Any]]:
    """Pydantic's errors with `loc` as ["body", index, field] (["body", field] for one object)."""
    entries = []
    for entry in error.errors(include_url=False, include_context=False):
        location: Sequence[int | str] = entry["loc"][1:] if single else entry["loc"]
        entries.append({**entry, "loc": ["body", *location]})
    return entries
