"""One log line per HTTP request and per WebSocket connection, with a request id.

The outermost layer of the app: it takes a sane ``X-Request-ID`` from the client (or makes
one), echoes it in the response, and holds it in a context variable so every line logged
while serving the request (and by tasks the request started) carries it. The line names the
route template (``/api/conversations/{conversation_id}``), never the raw path, so no ids
or query strings end up in logs and lines group by endpoint. Headers, cookies and bodies
are never read or logged here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from chatrt.observability.context import accept_or_new, request_id

logger = logging.getLogger("chatrt.access")

REQUEST_ID_HEADER = "x-request-id"


@dataclass
class _Exchange:
    status: int | None = None
    size: int = 0
    close_code: int | None = None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def user_id_of(scope: Scope) -> str | None:
    """The signed-in user's id on this connection, when there is one."""
    # Set by the session auth middleware on routes that need a user; absent elsewhere.
    user: Any = scope.get("user")
    user_id = getattr(user, "id", None)
    return str(user_id) if user_id is not None else None


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in (ScopeType.HTTP, ScopeType.WEBSOCKET):
            await self.app(scope, receive, send)
            return
        rid = accept_or_new(_header(scope, REQUEST_ID_HEADER.encode()))
        token = request_id.set(rid)
        exchange = _Exchange()
        started = time.perf_counter()

        async def watched_send(message: Message) -> None:
            raw = cast("dict[str, Any]", message)
            kind = raw["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                exchange.status = int(raw["status"])
                _echo_request_id(raw, rid)
            elif kind == "http.response.body":
                exchange.size += len(raw.get("body", b""))
            elif kind == "websocket.accept":
                exchange.status = 101
                _echo_request_id(raw, rid)
            elif kind == "websocket.close" and exchange.close_code is None:
                exchange.close_code = int(raw.get("code", 1000))
            await send(message)

        async def watched_receive() -> ReceiveMessage:
            message = await receive()
            raw = cast("dict[str, Any]", message)
            if raw["type"] == "websocket.disconnect" and exchange.close_code is None:
                exchange.close_code = int(raw.get("code", 1005))
            return message

        try:
            await self.app(scope, watched_receive, watched_send)
        except BaseException:
            if exchange.status is None:
                exchange.status = 500
            raise
        finally:
            _log(scope, rid, exchange, round((time.perf_counter() - started) * 1000, 1))
            request_id.reset(token)


def _echo_request_id(message: dict[str, Any], rid: str) -> None:
    message.setdefault("headers", [])
    MutableScopeHeaders.from_message(cast("Message", message))[REQUEST_ID_HEADER] = rid


def _log(scope: Scope, rid: str, exchange: _Exchange, duration_ms: float) -> None:
    route: str | None = scope.get("path_template")  # set by Litestar's router on a match
    fields: dict[str, Any] = {
        "request_id": rid,
        "method": scope.get("method", "GET"),
        "route": route,
        "status": exchange.status,
        "duration_ms": duration_ms,
    }
    if scope["type"] == ScopeType.HTTP:
        fields["response_bytes"] = exchange.size
    else:
        fields["websocket"] = True
        fields["close_code"] = exchange.close_code
    user_id = user_id_of(scope)
    if user_id is not None:
        fields["user_id"] = user_id
    status = exchange.status or 0
    level = logging.ERROR if status >= 500 else logging.INFO
    logger.log(level, "%s %s %s", fields["method"], route or "-", status or "-", extra=fields)
