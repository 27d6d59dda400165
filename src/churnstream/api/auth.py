"""The optional bearer token: with ``api.token`` set, every route but ``/health/*`` and the
docs needs ``Authorization: Bearer <token>``, compared in constant time."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

logger = logging.getLogger(__name__)

_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    description="The value of api.token (CHURNSTREAM_API__TOKEN).",
)


def auth_dependencies(token: SecretStr | None) -> list[Any]:
    """Route dependencies enforcing the bearer token; none when no token is configured."""
    if token is None:
        return []
    expected = token.get_secret_value().encode()

    async def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> None:
        if credentials is None:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        # Constant time, so the answer's timing says nothing about how much of it matched.
        # Header values arrive decoded as latin-1: encoding back gives the bytes as sent.
        if not hmac.compare_digest(credentials.credentials.encode("latin-1"), expected):
            raise HTTPException(
                401,
                "invalid bearer token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    return [Depends(require_token)]
