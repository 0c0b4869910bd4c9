"""The signed-in user is read from the session, not looked up on every request."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
import pytest
from litestar.connection import ASGIConnection

from chatrt.auth.guards import retrieve_user
from chatrt.auth.schemas import UserOut

pytestmark = pytest.mark.anyio
NO_CONNECTION = cast(ASGIConnection[Any, Any, Any, Any], None)


async def test_the_user_stored_at_sign_in_comes_back_whole() -> None:
    user = UserOut(uuid.uuid4(), "a@example.com", "Ann", datetime(2026, 11, 29, 9, tzinfo=UTC))
    # The session store keeps JSON: what goes in is to_builtins, what comes out is parsed.
    stored = msgspec.json.decode(msgspec.json.encode({"uid": str(user.id), "user": user}))
    assert await retrieve_user(stored, NO_CONNECTION) == user


@pytest.mark.parametrize("session", [{}, {"uid": 7}, {"uid": "not-a-uuid", "user": None}])
async def test_a_session_without_a_usable_user_id_is_anonymous(session: dict[str, Any]) -> None:
    assert await retrieve_user(session, NO_CONNECTION) is None
