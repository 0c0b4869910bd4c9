"""Security headers on every kind of response, on both backends; HSTS only over HTTPS."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
import pytest

from chatrt.middleware.security_headers import DOCS_CSP, HSTS, STRICT_CSP
from chatrt.settings import Settings
from tests.conftest import Backend
from tests.support.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Serve = Callable[[Settings], AbstractAsyncContextManager[Callable[[], Client]]]

EXPECTED = {
    "content-security-policy": STRICT_CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def assert_secured(response: httpx.Response, csp: str = STRICT_CSP) -> None:
    where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    for name, value in (EXPECTED | {"content-security-policy": csp}).items():
        assert response.headers.get_list(name) == [value], (where, name)
    assert "strict-transport-security" not in response.headers, where


async def test_every_route_family_carries_the_headers(alice: Client) -> None:
    conversation = await alice.create_conversation()
    sent = await alice.send(conversation["id"], "hello")
    assert sent.status_code == 202
    answer = sent.json()["assistant_message"]
    await alice.wait_finished(conversation["id"], answer["id"])
    stream_path = f"/api/conversations/{conversation['id']}/messages/{answer['id']}/stream"

    responses = {
        "json api": await alice.get("/api/conversations"),
        "created": sent,
        "validation error": await alice.get("/api/conversations", params={"limit": "0"}),
        "not yours": await alice.get(f"/api/conversations/{'0' * 8}-0000-4000-8000-{'0' * 12}"),
        "no route": await alice.get("/no/such/route"),
        "wrong method": await alice.request("PUT", "/api/conversations", json={}),
        "live": await alice.get("/health/live"),
        "ready": await alice.get("/health/ready"),
        "openapi": await alice.get("/schema/openapi.json"),
        "sse": await alice.get(stream_path),
    }
    expected_status = {
        "json api": 200,
        "created": 202,
        "validation error": 422,
        "not yours": 404,
        "no route": 404,
        "wrong method": 405,
        "live": 200,
        "ready": 200,
        "openapi": 200,
        "sse": 200,
    }
    for name, response in responses.items():
        assert response.status_code == expected_status[name], (name, response.text)
        assert_secured(response)
    assert responses["sse"].headers["content-type"].startswith("text/event-stream")
    assert b"message.done" in responses["sse"].content


async def test_unauthenticated_and_csrf_errors_carry_the_headers(
    clients: Callable[[], Client], alice: Client
) -> None:
    anonymous = await clients().get("/api/conversations")
    assert anonymous.status_code == 401
    assert_secured(anonymous)
    forged = await alice.post("/api/conversations", json={}, headers={"x-csrftoken": "forged"})
    assert forged.status_code == 403
    assert_secured(forged)


async def test_the_swagger_page_gets_the_docs_policy_and_nothing_else_does(
    clients: Callable[[], Client],
) -> None:
    client = clients()
    swagger = await client.get("/schema/swagger")
    assert swagger.status_code == 200
    assert swagger.headers["content-type"].startswith("text/html")
    assert_secured(swagger, csp=DOCS_CSP)
    # The page really does load its assets from the CDN the policy names.
    assert "https://cdn.jsdelivr.net/" in swagger.text
    # The strict parts of the policy still hold on the docs page.
    for directive in ("frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"):
        assert directive in DOCS_CSP
    # JSON under /schema keeps the strict policy.
    assert_secured(await client.get("/schema/openapi.json"))


async def test_hsts_only_when_cookies_are_secure(backend: Backend, serve: Serve) -> None:
    async with serve(backend.settings(CHATRT_COOKIE_SECURE="true")) as clients:
        client = clients()
        for path in ("/health/live", "/no/such/route", "/api/conversations"):
            response = await client.get(path)
            assert response.headers.get_list("strict-transport-security") == [HSTS], path
            assert response.headers["x-frame-options"] == "DENY"
    async with serve(backend.settings(CHATRT_COOKIE_SECURE="false")) as clients:
        response = await clients().get("/health/live")
        assert "strict-transport-security" not in response.headers
