"""Health checks and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from chatrt.settings import Settings
from tests.conftest import Backend
from tests.support.client import Client
from tests.support.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Serve = Callable[[Settings], AbstractAsyncContextManager[Callable[[], Client]]]


async def test_live_and_ready(clients: Callable[[], Client], backend: Backend) -> None:
    client = clients()
    live = await client.get("/health/live")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    expected = {"database": "ok", "redis": "ok"} if backend.is_postgres else {"database": "ok"}
    assert ready.json()["checks"] == expected


async def test_ready_is_503_naming_redis_when_it_is_down(
    postgres_backend: Backend, serve: Serve
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with serve(postgres_backend.settings(CHATRT_REDIS_URL=dead)) as clients:
        response = await clients().get("/health/ready")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "service_unavailable"
    assert error["details"]["failed"] == ["redis"]
    assert error["details"]["checks"]["database"] == "ok"


async def test_openapi_describes_every_endpoint(clients: Callable[[], Client]) -> None:
    client = clients()
    schema = (await client.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    expected = {
        "/api/auth/register": {"post"},
        "/api/auth/login": {"post"},
        "/api/auth/logout": {"post"},
        "/api/auth/me": {"get"},
        "/api/conversations": {"get", "post"},
        "/api/conversations/{conversation_id}": {"get", "patch", "delete"},
        "/api/conversations/{conversation_id}/restore": {"post"},
        "/api/conversations/{conversation_id}/messages": {"get", "post"},
        "/health/live": {"get"},
        "/health/ready": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    components = schema["components"]["schemas"]
    assert {"MessageOut", "ConversationOut", "SendResult", "RegisterIn"} <= set(components)
    assert components["ConversationCreate"]["properties"]["title"]["maxLength"] == 200
    error_ref = "#/components/schemas/ErrorResponse"
    send = paths["/api/conversations/{conversation_id}/messages"]["post"]["responses"]
    for status in ("401", "403", "404", "409", "413", "422"):
        assert send[status]["content"]["application/json"]["schema"]["$ref"] == error_ref
    assert "202" in send
    swagger = await client.get("/schema/swagger")
    assert swagger.status_code == 200
    assert "swagger" in swagger.text.lower()
