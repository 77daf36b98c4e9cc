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

Nothing a client sends is amplified: a 422 lists at most `serving.errors.MAX_ERRORS` errors with
cut inputs (the last entry counts the rest), bodies over `_INLINE_MAX_BYTES` are parsed and
judged in a worker thread so `/health` keeps answering, and `/predict/csv` checks the key before
it reads the upload. Nothing the service answers carries a secret or a host path: `/health` says
what is wrong in the service's own words (the raw error goes to the log, where every URI is
redacted), `/metadata` leaves out `mlflow.source.name` and redacts URIs in the lineage tags.
"""

from __future__ import annotations

import math
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import numpy as np
import orjson
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, TypeAdapter
from starlette.datastructures import UploadFile

from forestops import __version__, contract
from forestops.config import Settings, get_settings
from forestops.redact import install_log_redaction, redact_text
from forestops.serving.auth import make_guards
from forestops.serving.csv_io import CsvRejected, TooManyRows, parse_csv, render_csv
from forestops.serving.decode import Arrays, InvalidRecords, records_to_arrays
from forestops.serving.errors import brief, capped
from forestops.serving.explanations import (
    CSV_COLUMNS,
    CsvExplainQuery,
    ExplainQuery,
    csv_cells,
    explained,
    explainer,
)
from forestops.serving.holder import ModelHolder, RefreshResult
from forestops.serving.served_model import ServedModel, trained_at_iso
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
_INLINE_MAX_BYTES = 4096  # above this, the body is parsed and judged in the thread pool
_MIN_SLICE_ROWS = 256  # smaller slices cost more in thread hand-offs than they save
_RELOAD_STATUS = {"swapped": 200, "unchanged": 200, "refused": 409, "missing": 404, "failed": 502}
_LINEAGE_PREFIXES = ("forestops.", "mlflow.source.")
_PRIVATE_TAGS = frozenset({"mlflow.source.name"})  # the training host's script path
_VALIDATION_ERROR = {  # FastAPI documents 422 only for parameters it parses itself
    "description": "Invalid records: `loc` names the record index and the field",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
    },
}
_CSV_BODY = {  # read by hand, after the key check (a File() parameter is read before it)
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV, ',' or ';' separated, UTF-8 (BOM allowed)",
                        }
                    },
                    "required": ["file"],
                }
            }
        },
    }
}

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


def _error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    reasons = {
        400: "A body that is not a readable multipart form (or more than one file)",
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
    install_log_redaction()
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
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"no model loaded: {_public_problem(model_holder.problem, None)}",
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
            detail=None if state == "ok" else _public_problem(model_holder.problem, served),
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
            lineage={
                k: redact_text(v)
                for k, v in ref.tags.items()
                if k.startswith(_LINEAGE_PREFIXES) and k not in _PRIVATE_TAGS
            },
            features=features,
            classes=classes,
            runtime=served.runtime,
            runtime_note=served.runtime_note,
            refused=redact_text(model_holder.refusal) if model_holder.refusal else None,
        )

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses={**_error_responses(401, 413, 415, 503), 422: _VALIDATION_ERROR},
        dependencies=[Depends(require_client)],
        openapi_extra=_predict_body_schema(settings),
        summary="Classify one record (a JSON object) or a batch (a JSON array of records)",
    )
    async def predict(request: Request, explain: ExplainQuery = "false") -> Response:
        started = time.perf_counter()
        served = served_model()
        _require_json(request.headers.get("content-type"))
        body = await request.body()
        if len(body) <= _INLINE_MAX_BYTES:
            arrays = _decode_body(body, settings.max_batch_rows, records_adapter)
        else:
            arrays = await anyio.to_thread.run_sync(
                _decode_body, body, settings.max_batch_rows, records_adapter
            )
        rows = len(arrays[0])
        explaining = explain != "false"
        if explaining:  # refused before any work is done
            explain_with = explainer(served, explain, rows, settings.max_explain_rows)
        probabilities = await _predict(served, arrays, settings.inference_threads)
        labels = probabilities.argmax(axis=1)
        metrics.count_predictions(labels)
        log_records(request.headers.get("x-request-id"), served, arrays, probabilities, started)
        names = contract.CLASS_NAMES
        predictions = [
            {"cover_type": label, "cover_type_name": names[label], "probabilities": probs}
            for label, probs in zip(labels.tolist(), probabilities.tolist(), strict=True)
        ]
        if explaining:
            every = explain == "all"
            explanation = await anyio.to_thread.run_sync(
                partial(explain_with.explain, *arrays, only=None if every else labels)
            )
            explained(predictions, explanation, labels, every=every)
        payload = {
            "model_name": served.model_name,
            "model_version": served.ref.version,
            "predictions": predictions,
        }
        return Response(orjson.dumps(payload), media_type="application/json")

    @app.post(
        "/predict/csv",
        response_class=Response,
        responses={
            200: {
                "content": {"text/csv": {"schema": {"type": "string"}}},
                "description": "The input columns, then cover_type_pred, cover_type_name, "
                "probability_0..probability_6 (cells that a spreadsheet would run as a formula "
                "get a leading `'`); with ?explain=true then base_value and "
                "contribution_<feature> for each contract feature (the predicted class's)",
            },
            **_error_responses(400, 401, 413, 503),
            422: _VALIDATION_ERROR,
        },
        dependencies=[Depends(require_client)],
        openapi_extra=_CSV_BODY,
        summary="Upload a CSV (canonical or course header), get it back with predictions",
    )
    async def predict_csv(request: Request, explain: CsvExplainQuery = "false") -> Response:
        served = served_model()
        async with request.form(max_files=1, max_fields=8) as form:
            file = form.get("file")
            if not isinstance(file, UploadFile):
                missing = {"type": "missing", "loc": ["body", "file"], "msg": "Field required"}
                raise RequestValidationError([missing])
            data = await file.read()
            filename = file.filename

        def score() -> str:
            started = time.perf_counter()
            parsed = parse_csv(data, settings.max_batch_rows)
            arrays = (parsed.numeric, parsed.area, parsed.soil)
            if explain == "true":
                explain_with = explainer(
                    served, explain, len(parsed.rows), settings.max_explain_rows
                )
            probabilities = served.predict(*arrays)
            labels = probabilities.argmax(axis=1)
            metrics.count_predictions(labels)
            log_records(None, served, arrays, probabilities, started)
            if explain == "false":
                return render_csv(parsed, probabilities)
            cells = csv_cells(explain_with.explain(*arrays, only=labels), labels)
            return render_csv(parsed, probabilities, CSV_COLUMNS, cells)

        try:
            text = await anyio.to_thread.run_sync(score)
        except CsvRejected as error:
            raise RequestValidationError(
                capped(error.errors, error.total, ["body", "file"])
            ) from None
        except TooManyRows as error:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(error)) from None
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": attachment(filename)},
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
            reloaded=result.reloaded,
            model_version=result.model_version,
            detail=redact_text(result.detail),  # the admin's answer: the error, but no secret
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


def _decode_body(body: bytes, max_rows: int, adapter: TypeAdapter[list[BaseModel]]) -> Arrays:
    """The model's arrays for a /predict body, or the (bounded) 422 / 413 that it deserves."""
    items, single = _parse_records(body, max_rows)
    try:
        return records_to_arrays(items, adapter)
    except InvalidRecords as error:
        located = (
            {**entry, "loc": ["body", *(entry["loc"][1:] if single else entry["loc"])]}
            for entry in error.errors
        )
        raise RequestValidationError(capped(located, error.total, ["body"])) from None


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
                    "input": brief(payload),
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


def _public_problem(problem: str | None, served: ServedModel | None) -> str:
    """What /health (open to anyone) says is wrong: the holder's own opening words, never the
    error text it quotes after them (a raw MLflow error can carry a tracking URI's password, a
    host name or a path); the service log has the whole, redacted."""
    said = (problem or "not ready").split(": ", 1)[0]
    if served is not None and "serving" not in said:
        said += f"; still serving {_describe(served)}"
    return f"{said} (the service log says why)"


def _describe(served: ServedModel) -> str:
    return f"version {served.ref.version}" if served.ref.version else f"run {served.ref.run_id}"


def attachment(upload_name: str | None) -> str:
    """Content-Disposition for the answer to `upload_name` (RFC 6266): an ASCII `filename`
    fallback and the exact name as RFC 5987 `filename*`, so `数据.csv` or a `"` in the name
    reaches the browser intact and never breaks the header."""
    name = (upload_name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    filename = f"{stem or 'predictions'}-predictions.csv"
    fallback = "".join(ch if " " <= ch <= "~" and ch not in '"\\%' else "_" for ch in filename)
    encoded = urllib.parse.quote(filename, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
