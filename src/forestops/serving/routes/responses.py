"""OpenAPI descriptions of the error answers the routes share."""

from __future__ import annotations

from typing import Any

from forestops.serving.schemas import ErrorDetail

VALIDATION_ERROR = {  # FastAPI documents 422 only for parameters it parses itself
    "description": "Invalid records: `loc` names the record index and the field",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
    },
}

_REASONS = {
    400: "A body that is not a readable multipart form (or more than one file)",
    401: "Missing or invalid API key",
    403: "A valid key that is not the admin key",
    413: "Body larger than MAX_BODY_BYTES, or more records than MAX_BATCH_ROWS",
    415: "A body that is not sent as application/json",
    503: "No model loaded yet",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorDetail, "description": _REASONS[code]} for code in codes}
