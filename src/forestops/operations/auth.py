"""Who may act: the operator, i.e. whoever presents ADMIN_API_KEY as `Authorization: Bearer`.

The key is compared with `hmac.compare_digest`, so the time taken says nothing about how much of
it matched. Without ADMIN_API_KEY the actions are disabled (503 naming the setting) rather than
open: an operations API nobody configured must not move the champion for anyone who asks.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import HTTPException, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from forestops.config import Settings

_bearer = HTTPBearer(
    scheme_name="AdminKey",
    description="ADMIN_API_KEY, sent as `Authorization: Bearer <key>`.",
    auto_error=False,
)

OperatorGuard = Callable[..., None]

DISABLED = (
    "operator actions are disabled: ADMIN_API_KEY is not set on the operations API "
    "(set it there, and sign in with it)"
)


def make_operator_guard(settings: Settings) -> OperatorGuard:
    """A FastAPI dependency that lets only the operator through."""
    key = settings.admin_api_key.get_secret_value().encode() if settings.admin_api_key else b""

    def require_operator(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> None:
        if not key:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, DISABLED)
        if bearer is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing admin key (Authorization: Bearer <ADMIN_API_KEY>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(bearer.credentials.encode(), key):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong admin key")

    return require_operator
