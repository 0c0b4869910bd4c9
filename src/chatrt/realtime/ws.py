"""``GET /ws``: the WebSocket endpoint."""

from __future__ import annotations

from typing import Any

from litestar import WebSocket, websocket
from litestar.di import NamedDependency

from chatrt.auth.guards import retrieve_user
from chatrt.auth.origins import origin_allowed
from chatrt.bus.base import EventBus
from chatrt.errors import preferred_locale
from chatrt.generation.runner import GenerationRunner
from chatrt.observability import metrics
from chatrt.ratelimit.limits import Limits
from chatrt.realtime.connection import Connection
from chatrt.settings import Settings

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403


@websocket("/ws", exclude_from_auth=True)
async def ws(
    socket: WebSocket[Any, Any, Any],
    settings: NamedDependency[Settings],
    bus: NamedDependency[EventBus],
    generations: NamedDependency[GenerationRunner],
    limits: NamedDependency[Limits],
) -> None:
    """The real-time channel; see docs/protocol.md for the frames."""
    # Accept before refusing: a close before accept reaches the client as a bare HTTP 403
    # and the close code would be lost.
    await socket.accept()
    scheme = "https" if socket.url.scheme in ("wss", "https") else "http"
    if not origin_allowed(
        socket.headers.get("origin"),
        socket.headers.get("host"),
        scheme,
        settings.server.allowed_origins,
    ):
        await socket.close(code=CLOSE_FORBIDDEN_ORIGIN, reason="origin not allowed")
        return
    session = socket.scope.get("session")
    user = await retrieve_user(session if isinstance(session, dict) else {}, socket)
    if user is None:
        await socket.close(code=CLOSE_UNAUTHENTICATED, reason="not signed in")
        return
    # Where the auth middleware would have put it, so the request log names the user.
    socket.scope["user"] = user
    locale = preferred_locale(socket.headers.get("accept-language"), settings.server.default_locale)
    connection = Connection(socket, user, settings, bus, generations, limits, locale)
    metrics.WEBSOCKETS.inc()
    try:
        await connection.serve()
    finally:
        metrics.WEBSOCKETS.dec()
    if connection.close_code is not None:
        try:
            await socket.close(code=connection.close_code)
        except Exception:
            return  # the client left first
