"""Resolving the signed-in user from the session."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.openapi.spec import SecurityRequirement

from chatrt.auth.schemas import UserOut
from chatrt.auth.service import get_user

# Declared by each operation that needs the session cookie (see ``app.openapi_security``), so
# the public ones (sign-in, health, metrics) do not claim to need it in the OpenAPI document.
SESSION_REQUIRED: list[SecurityRequirement] = [{"sessionCookie": []}]


async def retrieve_user(
    session: dict[str, Any], connection: ASGIConnection[Any, Any, Any, Any]
) -> UserOut | None:
    """The session's user, or None (401) when the session is empty or the user is gone."""
    raw = session.get("uid")
    if not isinstance(raw, str):
        return None
    cached = session.get("user")
    if cached is not None:
        try:
            return msgspec.convert(cached, UserOut, strict=False)
        except msgspec.ValidationError:
            pass  # written by another version: read the row instead
    try:
        user_id = uuid.UUID(raw)
    except ValueError:
        return None
    return await get_user(user_id)
