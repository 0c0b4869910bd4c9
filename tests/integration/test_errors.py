"""Every error a client can trigger has the contract's shape, in Thai or English."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from litestar import get

from chatrt.errors import MESSAGES
from chatrt.settings import Settings
from tests.conftest import Backend
from tests.support.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Serve = Callable[[Settings], AbstractAsyncContextManager[Callable[[], Client]]]
MISSING = "3f1c7f3e-0000-4000-8000-000000000000"


async def _trigger(alice: Client, anonymous: Client, status: int, headers: dict[str, str]) -> Any:
    conversation = await alice.create_conversation()
    cid = conversation["id"]
    if status == 401:
        return await anonymous.get("/api/conversations", headers=headers)
    if status == 403:
        return await alice.request(
            "POST", "/api/conversations", json={}, csrf=False, headers=headers
        )
    if status == 404:
        return await alice.get(f"/api/conversations/{MISSING}", headers=headers)
    if status == 405:
        return await alice.request("PUT", "/api/conversations", headers=headers)
    if status == 409:
        await alice.send(cid, "first")
        return await alice.request(
            "POST", f"/api/conversations/{cid}/messages", json={"content": "x"}, headers=headers
        )
    if status == 413:
        return await alice.request(
            "POST",
            f"/api/conversations/{cid}/messages",
            json={"content": "x" * 3000},
            headers=headers,
        )
    if status == 422:
        return await alice.get("/api/conversations", params={"limit": 500}, headers=headers)
    raise AssertionError(status)


@pytest.mark.parametrize("status", [401, 403, 404, 405, 409, 413, 422])
async def test_errors_are_localized_thai_by_default_english_on_request(
    alice: Client, clients: Callable[[], Client], status: int
) -> None:
    anonymous = clients()
    thai = await _trigger(alice, anonymous, status, {})
    english = await _trigger(alice, anonymous, status, {"accept-language": "en-US,en;q=0.9"})
    for response in (thai, english):
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error"}
        assert set(response.json()["error"]) == {"code", "message", "details"}
    code = thai.json()["error"]["code"]
    assert english.json()["error"]["code"] == code
    assert thai.json()["error"]["message"] == MESSAGES[code][0]
    assert english.json()["error"]["message"] == MESSAGES[code][1]


async def test_default_locale_can_be_english(backend: Backend, serve: Serve) -> None:
    async with serve(backend.settings(CHATRT_DEFAULT_LOCALE="en")) as clients:
        response = await clients().get("/api/auth/me")
        assert response.json()["error"]["message"] == MESSAGES["not_authenticated"][1]
        thai = await clients().get("/api/auth/me", headers={"accept-language": "th"})
        assert thai.json()["error"]["message"] == MESSAGES["not_authenticated"][0]


async def test_unexpected_errors_are_500_without_internals(backend: Backend) -> None:
    @get("/boom", exclude_from_auth=True)
    async def boom() -> None:
        raise RuntimeError("SELECT secret FROM pg_shadow -- internal detail")

    from chatrt.app import create_app
    from tests.conftest import serving

    app = create_app(backend.settings())
    app.register(boom)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("chatrt.errors")
    logger.addHandler(handler)
    try:
        async with serving(app) as clients:
            response = await clients().get("/boom")
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 500
    body = response.text
    assert response.json()["error"]["code"] == "internal_error"
    for leak in ("secret", "pg_shadow", "RuntimeError", "Traceback", "boom"):
        assert leak not in body
    assert [r.getMessage() for r in records] == ["unhandled error"], "operators still see it"
    assert records[0].exc_info is not None


async def test_unknown_route_is_404_in_contract_shape(clients: Callable[[], Client]) -> None:
    response = await clients().get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_malformed_json_is_400(alice: Client) -> None:
    response = await alice.request(
        "POST",
        "/api/conversations",
        content=b'{"title": ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
