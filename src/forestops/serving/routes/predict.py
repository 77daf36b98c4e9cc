"""`/predict` (JSON) and `/predict/csv`: the model's answers, the service's hot path.

The per-request path of `/predict` is: read the body, parse it with orjson, validate it (the
contract-generated pydantic model decides; a plainly clean batch is checked in bulk, see
`decode`), put the values into numpy arrays, call the model's array fast path, write the answer
with orjson. No DataFrame, no disk, no MLflow call; the model object is read once from the
holder, so a reload mid-request cannot change the model under it. Small requests run on the
event loop (a thread hop costs more than the model); batches go to the thread pool, split across
`INFERENCE_THREADS` single-threaded model calls, so one big request neither stalls the others
nor leaves a core idle. Explanations go to the thread pool as well, except a few ms of the
compiled TreeSHAP kernel's work (`Explainer.brief`: one record's class on a full-data champion),
which run on the loop as a 32-record prediction does.

A bad body gets 415, 422 or 413 (see `json_body`; the body size limit is the app's); 503 while
no model is loaded. Bodies over `INLINE_MAX_BYTES` are parsed and judged in a worker thread so
`/health` keeps answering, and `/predict/csv` reads its upload only after the key check (the
guard runs first; a `File()` parameter would be read before it).

The routes need an app whose state `serving.dependencies.set_state` filled; the API-key guard is
added where the router is included.
"""

from __future__ import annotations

import time
import urllib.parse
import uuid
from functools import partial
from typing import Any

import anyio
import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from forestops import contract
from forestops.config import Settings
from forestops.modeling.explain import Explainer
from forestops.serving.csv_io import CsvRejected, TooManyRows, parse_csv, render_csv
from forestops.serving.decode import Arrays
from forestops.serving.dependencies import ServiceDep, ServiceState, served_model
from forestops.serving.errors import capped
from forestops.serving.explanations import (
    CSV_COLUMNS,
    CsvExplainQuery,
    ExplainQuery,
    csv_cells,
    explained,
    explainer,
    verified,
)
from forestops.serving.json_body import decode_body, require_json
from forestops.serving.prediction_log import PredictionLogger
from forestops.serving.routes.responses import VALIDATION_ERROR, error_responses
from forestops.serving.schemas import ForestRecord, PredictResponse
from forestops.serving.served_model import ServedModel

INLINE_MAX_ROWS = 32  # above this, the model runs in the thread pool
INLINE_MAX_BYTES = 4096  # above this, the body is parsed and judged in the thread pool
_MIN_SLICE_ROWS = 256  # smaller slices cost more in thread hand-offs than they save
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


def predict_router(max_batch_rows: int) -> APIRouter:
    """Both routes; `max_batch_rows` goes into the documented body schema only (the handlers
    enforce the `MAX_BATCH_ROWS` of the settings on app.state, the same value in `create_app`).
    A factory, not a module-level router: two apps in one process may document different
    limits, and an included router's routes are shared, not copied."""
    router = APIRouter()
    router.add_api_route(
        "/predict",
        predict,
        methods=["POST"],
        response_model=PredictResponse,
        responses={**error_responses(401, 413, 415, 503), 422: VALIDATION_ERROR},
        openapi_extra=_predict_body_schema(max_batch_rows),
        summary="Classify one record (a JSON object) or a batch (a JSON array of records)",
    )
    router.add_api_route(
        "/predict/csv",
        predict_csv,
        methods=["POST"],
        response_class=Response,
        responses={
            200: {
                "content": {"text/csv": {"schema": {"type": "string"}}},
                "description": "The input columns, then cover_type_pred, cover_type_name, "
                "probability_0..probability_6 (cells that a spreadsheet would run as a formula "
                "get a leading `'`); with ?explain=true then base_value and "
                "contribution_<feature> for each contract feature (the predicted class's)",
            },
            **error_responses(400, 401, 413, 503),
            422: VALIDATION_ERROR,
        },
        openapi_extra=_CSV_BODY,
        summary="Upload a CSV (canonical or course header), get it back with predictions",
    )
    return router


async def predict(
    request: Request, service: ServiceDep, explain: ExplainQuery = "false"
) -> Response:
    started = time.perf_counter()
    settings = service.settings
    served = served_model(service.holder)
    require_json(request.headers.get("content-type"))
    body = await request.body()
    if len(body) <= INLINE_MAX_BYTES:
        arrays = decode_body(body, settings.max_batch_rows)
    else:
        arrays = await anyio.to_thread.run_sync(decode_body, body, settings.max_batch_rows)
    rows = len(arrays[0])
    explaining = explain != "false"
    if explaining:  # refused before any work is done
        explain_with = explainer(served, explain, rows, settings.max_explain_rows)
        if not explain_with.answers_at_once:
            await anyio.to_thread.run_sync(verified, explain_with, explain)
    probabilities = await _predict(served, arrays, settings.inference_threads)
    request_id = request.headers.get("x-request-id")
    labels, predictions = answered(service, served, arrays, probabilities, request_id, started)
    if explaining:
        await explain_into(predictions, explain_with, arrays, labels, explain, settings)
    return Response(answer_body(served, predictions), media_type="application/json")


async def explain_into(
    predictions: list[dict[str, Any]],
    explain_with: Explainer,
    arrays: Arrays,
    labels: np.ndarray,
    explain: str,
    settings: Settings,
) -> None:
    """Add `explain`'s ("true" or "all") explanations to an answer's predictions: in the thread
    pool, as they are milliseconds of work, unless the work is `Explainer.brief` (a few ms of the
    compiled kernel's, such as one record's class), which runs here; the kernel shares it over
    INFERENCE_THREADS either way, the calling thread taking the first share."""
    only = None if explain == "all" else labels
    work = partial(
        explain_with.explain,
        *arrays,
        threads=settings.inference_threads,
        only=only,
        wait=False,  # LightGBM's pred_contrib until the kernel is built
    )
    if explain_with.brief(len(labels), only):
        explanation = work()
    else:
        explanation = await anyio.to_thread.run_sync(work)
    explained(predictions, explanation, labels, every=only is None)


def answered(
    service: ServiceState,
    served: ServedModel,
    arrays: Arrays,
    probabilities: np.ndarray,
    request_id: str | None,
    started: float,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(labels, the answer's predictions) for a scored request, counted and logged: what this
    route and `serving.fast_predict` both do once the model has answered."""
    labels = probabilities.argmax(axis=1)
    service.metrics.count_predictions(labels)
    _log_records(service.prediction_logger, request_id, served, arrays, probabilities, started)
    names = contract.CLASS_NAMES
    predictions = [
        {"cover_type": label, "cover_type_name": names[label], "probabilities": probs}
        for label, probs in zip(labels.tolist(), probabilities.tolist(), strict=True)
    ]
    return labels, predictions


def answer_body(served: ServedModel, predictions: list[dict[str, Any]]) -> bytes:
    """The JSON answer of `/predict` (`PredictResponse`)."""
    payload = {
        "model_name": served.model_name,
        "model_version": served.ref.version,
        "predictions": predictions,
    }
    return orjson.dumps(payload)


async def predict_csv(
    request: Request, service: ServiceDep, explain: CsvExplainQuery = "false"
) -> Response:
    settings = service.settings
    served = served_model(service.holder)
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
            explain_with = explainer(served, explain, len(parsed.rows), settings.max_explain_rows)
            verified(explain_with, explain)
        probabilities = served.predict(*arrays)
        labels = probabilities.argmax(axis=1)
        service.metrics.count_predictions(labels)
        _log_records(service.prediction_logger, None, served, arrays, probabilities, started)
        if explain == "false":
            return render_csv(parsed, probabilities)
        explanation = explain_with.explain(
            *arrays, threads=settings.inference_threads, only=labels, wait=False
        )
        cells = csv_cells(explanation, labels)
        return render_csv(parsed, probabilities, CSV_COLUMNS, cells)

    try:
        text = await anyio.to_thread.run_sync(score)
    except CsvRejected as error:
        raise RequestValidationError(capped(error.errors, error.total, ["body", "file"])) from None
    except TooManyRows as error:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(error)) from None
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": attachment(filename)},
    )


def _predict_body_schema(max_batch_rows: int) -> dict[str, Any]:
    record = ForestRecord.model_json_schema()
    batch = {
        "type": "array",
        "items": record,
        "minItems": 1,
        "maxItems": max_batch_rows,
        "title": "ForestRecords",
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": [record, batch]}}},
        }
    }


def _log_records(
    prediction_logger: PredictionLogger | None,
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


async def _predict(served: ServedModel, arrays: Arrays, threads: int) -> np.ndarray:
    """Small requests inline; batches split into up to `threads` slices predicted in parallel
    (model calls release the GIL), so one big request uses every core."""
    rows = len(arrays[0])
    if rows <= INLINE_MAX_ROWS:
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
