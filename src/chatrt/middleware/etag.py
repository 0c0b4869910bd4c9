"""ETag and revalidation for the JSON API's GET responses.

A successful ``GET /api/...`` JSON response gets a strong ``ETag`` (a hash of its body) and
``Cache-Control: private, no-cache``: a browser may keep it but must ask before reusing it,
and a matching ``If-None-Match`` is answered ``304`` with no body. Because the tag is a hash
of exactly the bytes the server would send now, a 304 is never stale, whoever is signed in.

Streams (SSE), ``/ws``, ``/metrics``, ``/health`` and error responses pass through untouched.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, cast

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

CACHE_CONTROL = "private, no-cache"
API_PREFIX = "/api/"
# RFC 9110 section 8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE
_ENTITY_TAG = re.compile(r'\s*(?:W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(?:,|$)')
# Headers that describe the body a 304 does not carry.
_BODY_HEADERS = ("content-length", "content-type", "content-encoding")


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def if_none_match_hits(header: str, etag: str) -> bool:
    """RFC 9110 section 13.1.2: ``*``, or any listed tag equal by weak comparison."""
    if header.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    position = 0
    while position < len(header):
        match = _ENTITY_TAG.match(header, position)
        if match is None or match.end() == position:
            return False  # malformed: treat as no match, so the full response goes out
        if f'"{match.group(1)}"' == opaque:
            return True
        position = match.end()
    return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class ETagMiddleware:
    """Buffers eligible JSON bodies (they are small and sent whole anyway) to tag them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != ScopeType.HTTP
            or scope["method"] != "GET"
            or not scope["path"].startswith(API_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        if_none_match = _header(scope, b"if-none-match")
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def tagging_send(message: Message) -> None:
            nonlocal start
            raw = cast("dict[str, Any]", message)
            if raw["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                content_type = headers.get("content-type") or ""
                if raw["status"] == 200 and content_type.startswith("application/json"):
                    start = raw
                    return
            elif raw["type"] == "http.response.body" and start is not None:
                chunks.append(bytes(raw.get("body", b"")))
                if raw.get("more_body", False):
                    return
                await _send_tagged(send, start, b"".join(chunks), if_none_match)
                return
            await send(message)

        await self.app(scope, receive, tagging_send)


async def _send_tagged(
    send: Send, start: dict[str, Any], body: bytes, if_none_match: str | None
) -> None:
    etag = strong_etag(body)
    headers = MutableScopeHeaders.from_message(cast("Message", start))
    headers["etag"] = etag
    headers["cache-control"] = CACHE_CONTROL
    if if_none_match is not None and if_none_match_hits(if_none_match, etag):
        for name in _BODY_HEADERS:
            del headers[name]
        start["status"] = 304
        body = b""
    await send(cast("Message", start))
    await send({"type": "http.response.body", "body": body, "more_body": False})
