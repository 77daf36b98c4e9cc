"""A `/predict` body -> the model's arrays, or the answer it deserves.

The route reads the body raw and parses it with orjson (for speed), so the checks FastAPI would
make on a declared body are made here: 415 for a body not sent as JSON, 422 for invalid JSON or
records (`loc` re-rooted at `body`: `["body", <index>, <field>]` for an array, `["body",
<field>]` for a single object; bounded, see `serving.errors`), 413 for more records than
`MAX_BATCH_ROWS`.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import HTTPException, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter

from forestops.serving.decode import Arrays, InvalidRecords, records_to_arrays
from forestops.serving.errors import brief, capped
from forestops.serving.schemas import ForestRecord

_RECORDS: TypeAdapter[list[BaseModel]] = TypeAdapter(list[ForestRecord])  # type: ignore[valid-type]


def require_json(content_type: str | None) -> None:
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


def decode_body(body: bytes, max_rows: int) -> Arrays:
    """The model's arrays for a /predict body, or the (bounded) 422 / 413 that it deserves."""
    items, single = _parse_records(body, max_rows)
    try:
        return records_to_arrays(items, _RECORDS)
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
