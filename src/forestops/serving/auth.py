"""Optional API keys: `X-API-Key: <key>` or `Authorization: Bearer <key>`.

No keys configured (`API_KEYS` and `ADMIN_API_KEY` unset) means an open service, the embedded
default on loopback. With `API_KEYS` set, every model endpoint needs one of them (or the admin
key), and `/reload` needs `ADMIN_API_KEY`: with no admin key configured it is then refused to
everyone rather than left open. `ADMIN_API_KEY` alone protects only `/reload`. `/health` and
`/metrics` stay open for probes and scrapers (they reveal the model version, never data).
Keys are compared with `hmac.compare_digest` against every configured key, so the time taken
says nothing about how much of a key matched or which one.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import HTTPException, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from forestops.config import Settings

_api_key_header = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    description="One of API_KEYS (or ADMIN_API_KEY); required only when keys are configured.",
    auto_error=False,
)
_bearer = HTTPBearer(
    scheme_name="Bearer",
    description="The same keys as X-API-Key, sent as `Authorization: Bearer <key>`.",
    auto_error=False,
)

# Coroutines, though they only compare bytes: FastAPI runs a plain `def` dependency in its thread
# pool, and that hop (a queue, a lock, a thread woken, the GIL handed over) cost more than the
# whole single-record prediction on two busy cores (issue 16 item 2's profile).
Guard = Callable[..., Coroutine[Any, Any, None]]


def _presented(api_key: str | None, bearer: HTTPAuthorizationCredentials | None) -> str | None:
    if api_key:
        return api_key
    return bearer.credentials if bearer else None


def _matches(candidate: str, keys: tuple[bytes, ...]) -> bool:
    given = candidate.encode()
    found = False
    for key in keys:  # no early exit: every key costs the same comparison
        found |= hmac.compare_digest(given, key)
    return found


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, reason, headers={"WWW-Authenticate": "Bearer"}
    )


def _keys(settings: Settings) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """(client keys, admin keys) as bytes."""
    client_keys = tuple(k.get_secret_value().encode() for k in settings.api_keys)
    admin_keys = (
        (settings.admin_api_key.get_secret_value().encode(),) if settings.admin_api_key else ()
    )
    return client_keys, admin_keys


def client_admission(settings: Settings) -> Callable[[str | None, str | None], bool]:
    """`admits(x_api_key, authorization)`: whether those raw header values pass the client guard.

    For `serving.fast_predict`, which answers before FastAPI resolves the guard: it takes a
    request only when this says yes and leaves every other one to the guard (and its 401s).
    """
    client_keys, admin_keys = _keys(settings)

    def admits(api_key: str | None, authorization: str | None) -> bool:
        if not client_keys:
            return True
        scheme, credentials = get_authorization_scheme_param(authorization)
        bearer = credentials if scheme.lower() == "bearer" and credentials else None
        token = api_key or bearer
        return token is not None and _matches(token, client_keys + admin_keys)

    return admits


def make_guards(settings: Settings) -> tuple[Guard, Guard]:
    """(client guard, admin guard) as FastAPI dependencies for this app's settings."""
    client_keys, admin_keys = _keys(settings)

    async def require_client(
        api_key: Annotated[str | None, Security(_api_key_header)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> None:
        if not client_keys:
            return
        token = _presented(api_key, bearer)
        if token is None:
            raise _unauthorized("missing API key (X-API-Key or Authorization: Bearer)")
        if not _matches(token, client_keys + admin_keys):
            raise _unauthorized("invalid API key")

    async def require_admin(
        api_key: Annotated[str | None, Security(_api_key_header)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> None:
        if not (client_keys or admin_keys):
            return
        token = _presented(api_key, bearer)
        if token is None:
            raise _unauthorized("missing admin API key (X-API-Key or Authorization: Bearer)")
        if _matches(token, admin_keys):
            return
        if _matches(token, client_keys):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this endpoint needs the admin key")
        raise _unauthorized("invalid API key")

    return require_client, require_admin
