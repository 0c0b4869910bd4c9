"""``/health/live`` and ``/health/ready``."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from redis.asyncio import Redis

from chatrt.db.tables import User
from chatrt.errors import error_body, error_responses, preferred_locale

CHECK_TIMEOUT_S = 2.0


class Live(msgspec.Struct, frozen=True):
    status: str


class Ready(msgspec.Struct, frozen=True):
    status: str
    checks: dict[str, str]


@get("/health/live", exclude_from_auth=True, tags=["health"], summary="The process serves")
async def live() -> Live:
    return Live(status="ok")


async def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_S)
    except Exception:
        return name, "failed"
    return name, "ok"


@get(
    "/health/ready",
    exclude_from_auth=True,
    tags=["health"],
    summary="The database and Redis answer (503 naming what failed)",
    responses=error_responses(503),
)
async def ready(
    request: Request[Any, Any, Any], redis: NamedDependency[Redis | None]
) -> Response[Any]:
    probes = [_check("database", User.raw("SELECT 1"))]
    if redis is not None:
        probes.append(_check("redis", redis.ping()))
    checks = dict(await asyncio.gather(*probes))
    failed = [name for name, state in checks.items() if state != "ok"]
    if not failed:
        return Response(Ready(status="ok", checks=checks), status_code=HTTP_200_OK)
    locale = preferred_locale(
        request.headers.get("accept-language"), request.app.state.settings.server.default_locale
    )
    body = error_body("service_unavailable", locale, details={"failed": failed, "checks": checks})
    return Response(body, status_code=HTTP_503_SERVICE_UNAVAILABLE)
