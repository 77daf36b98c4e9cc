"""The UI's only way to a model: the inference API over HTTP (the UI never loads a model itself).

Every failure becomes an `ApiError` whose `kind` tells the page which plain sentence to show
(service down, no model yet, rejected input, too large, not allowed), so no page has to know
HTTP status codes or httpx exception types.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx
import streamlit as st

from forestops.config import Settings
from forestops.redact import redact_text, redact_uri

ErrorKind = Literal["unreachable", "no_model", "rejected", "too_large", "unauthorized", "server"]


class ApiError(Exception):
    """A call that did not give an answer; `detail` is the service's own explanation."""

    def __init__(self, kind: ErrorKind, detail: Any, status_code: int | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.status_code = status_code


@dataclass(frozen=True)
class Health:
    reachable: bool
    status: str
    model_loaded: bool = False
    model_version: str | None = None
    detail: str | None = None


def api_key(settings: Settings) -> str | None:
    """The key the UI presents: its own, else the first key the service accepts."""
    if settings.ui_api_key is not None:
        return settings.ui_api_key.get_secret_value()
    return settings.api_keys[0].get_secret_value() if settings.api_keys else None


@contextmanager
def _client(settings: Settings, timeout: float | None = None) -> Iterator[httpx.Client]:
    key = api_key(settings)
    headers = {"X-API-Key": key} if key else {}
    with httpx.Client(
        base_url=settings.inference_api_url,
        headers=headers,
        timeout=timeout or settings.ui_request_timeout_s,
    ) as client:
        try:
            yield client
        except httpx.TransportError as error:
            where = redact_uri(settings.inference_api_url)
            detail = f"{where} ({type(error).__name__}: {redact_text(str(error))})"
            raise ApiError("unreachable", detail) from error


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    return body.get("detail", body) if isinstance(body, dict) else body


def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    code = response.status_code
    kind: ErrorKind
    if code in (401, 403):
        kind = "unauthorized"
    elif code == 413:
        kind = "too_large"
    elif code in (400, 422):
        kind = "rejected"
    elif code == 503:
        kind = "no_model"
    else:
        kind = "server"
    raise ApiError(kind, _detail(response), code)


def health(settings: Settings) -> Health:
    """Service and model state; an unreachable service is a state, not an error."""
    try:
        with _client(settings, timeout=5.0) as client:
            response = client.get("/health")
    except ApiError as error:
        return Health(reachable=False, status="unreachable", detail=str(error.detail))
    try:
        body = response.json()
    except ValueError:
        return Health(True, "unavailable", detail=f"HTTP {response.status_code}: not JSON")
    if not isinstance(body, dict):
        return Health(True, "unavailable", detail=f"HTTP {response.status_code}: {body!r}")
    return Health(
        reachable=True,
        status=str(body.get("status", "unavailable")),
        model_loaded=bool(body.get("model_loaded")),
        model_version=body.get("model_version"),
        detail=body.get("detail"),
    )


def metadata(settings: Settings) -> dict[str, Any]:
    with _client(settings, timeout=10.0) as client:
        result: dict[str, Any] = _checked(client.get("/metadata")).json()
        return result


def _explain(explain: bool) -> dict[str, str]:
    return {"explain": "true"} if explain else {}


def predict(
    settings: Settings, records: Sequence[Mapping[str, Any]], explain: bool = False
) -> dict[str, Any]:
    """One call for the whole list (the API's batch path), answers in the records' order."""
    with _client(settings) as client:
        response = client.post("/predict", json=list(records), params=_explain(explain))
        result: dict[str, Any] = _checked(response).json()
        return result


def predict_csv(
    settings: Settings, data: bytes, filename: str = "records.csv", explain: bool = False
) -> bytes:
    """The service's CSV path: the input columns plus prediction and probability columns (and
    with `explain`, base_value and contribution_<feature>)."""
    with _client(settings) as client:
        files = {"file": (filename, data, "text/csv")}
        response = client.post("/predict/csv", files=files, params=_explain(explain))
        return _checked(response).content


Answer = TypeVar("Answer")


def explain_refusal(error: ApiError) -> str | None:
    """The service's reason for not explaining (a model without exact contributions, too many
    records), or None when `error` is about something else."""
    detail = error.detail
    if error.status_code == 422 and isinstance(detail, list) and detail:
        first = detail[0]
        if isinstance(first, dict) and first.get("loc") == ["query", "explain"]:
            return str(first.get("msg", ""))
    if error.status_code == 413 and "MAX_EXPLAIN_ROWS" in str(detail):
        return str(detail)
    return None


def explained(call: Callable[[bool], Answer]) -> tuple[Answer, str | None]:
    """`call(True)` (with explanations); if the service will not explain, `call(False)` and why."""
    try:
        return call(True), None
    except ApiError as error:
        reason = explain_refusal(error)
        if reason is None:
            raise
        return call(False), reason


def _api_key_of(settings: Settings) -> tuple[str, str | None]:
    return settings.inference_api_url, api_key(settings)


@st.cache_data(ttl=10, show_spinner=False, hash_funcs={Settings: _api_key_of})
def recent_health(settings: Settings) -> Health:
    """Health as of at most 10 s ago: pages show it on every rerun, the status page asks live."""
    return health(settings)


@st.cache_data(ttl=30, show_spinner=False, hash_funcs={Settings: _api_key_of})
def recent_metadata(settings: Settings) -> dict[str, Any]:
    return metadata(settings)
