"""The UI's way to act on the champion: the operations API over HTTP, with the operator's key.

The UI holds no admin key of its own: the operator types it when signing in, it is checked here
against the API (`GET /operator`) and kept only in that browser session's state, and every
action presents it again, so the API decides each time. Failures become `OperationsError`s whose
`kind` tells the page which sentence to show.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx

from forestops.config import Settings
from forestops.redact import redact_text, redact_uri

ErrorKind = Literal["unreachable", "wrong_key", "disabled", "refused", "invalid", "failed"]
TIMEOUT_S = 120.0  # a promotion smoke-loads the version first


class OperationsError(Exception):
    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def _call(
    settings: Settings, method: str, path: str, key: str, body: dict[str, Any] | None = None
) -> Any:
    url = settings.operations_api_url.rstrip("/") + path
    try:
        response = httpx.request(
            method, url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT_S
        )
    except httpx.TransportError as error:
        where = redact_uri(settings.operations_api_url)
        raise OperationsError(
            "unreachable", f"{where} ({type(error).__name__}: {redact_text(str(error))})"
        ) from error
    if response.is_success:
        return response.json() if response.content else None
    raise OperationsError(_kind(response.status_code), _detail(response))


def _kind(code: int) -> ErrorKind:
    if code in (401, 403):
        return "wrong_key"
    if code == 503:
        return "disabled"
    if code in (404, 409):
        return "refused"
    if code == 422:
        return "invalid"
    return "failed"


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI's 422 items
        return "; ".join(
            f"{item.get('loc', ['?'])[-1]}: {item.get('msg', '')}"
            for item in detail
            if isinstance(item, dict)
        )
    return str(detail)


def verify_operator(settings: Settings, key: str) -> None:
    """Returns when `key` is the operations API's admin key; raises OperationsError otherwise."""
    _call(settings, "GET", "/operator", key)


def versions(settings: Settings, key: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = _call(settings, "GET", "/versions", key)
    return result


def promote(settings: Settings, key: str, version: str, reason: str, actor: str) -> dict[str, Any]:
    body = {"version": version, "reason": reason, "actor": actor}
    result: dict[str, Any] = _call(settings, "POST", "/champion/promote", key, body)
    return result


def rollback(settings: Settings, key: str, reason: str, actor: str) -> dict[str, Any]:
    body = {"reason": reason, "actor": actor}
    result: dict[str, Any] = _call(settings, "POST", "/champion/rollback", key, body)
    return result


def train_now(settings: Settings, key: str, reason: str, actor: str) -> dict[str, Any]:
    body = {"reason": reason or None, "actor": actor}
    result: dict[str, Any] = _call(settings, "POST", "/training", key, body)
    return result


def training(settings: Settings, key: str) -> dict[str, Any] | None:
    """The training asked last through the API, running or finished (None before the first)."""
    job: dict[str, Any] | None = _call(settings, "GET", "/training", key)["job"]
    return job
