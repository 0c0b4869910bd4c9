"""Security headers on every HTTP response: API, errors, 404s, docs, health, SSE.

The API serves JSON only, so its Content-Security-Policy allows nothing but same-origin
loads and no framing. The Swagger UI page (HTML under ``/schema``) is the one exception:
it loads its script and styles from a CDN and starts them with an inline script, so HTML
under ``/schema`` gets a policy that allows exactly that (see docs/decisions.md).
"""

from __future__ import annotations

from typing import Any, cast

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

STRICT_CSP = (
    "default-src 'self'; frame-ancestors 'none'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'"
)
DOCS_CDN = "https://cdn.jsdelivr.net"
DOCS_CSP = (
    f"default-src 'self'; script-src 'self' 'unsafe-inline' {DOCS_CDN}; "
    f"style-src 'self' 'unsafe-inline' {DOCS_CDN}; img-src 'self' data: {DOCS_CDN}; "
    "frame-ancestors 'none'; object-src 'none'; base-uri 'none'; form-action 'self'"
)
HSTS = "max-age=63072000; includeSubDomains"
DOCS_PREFIX = "/schema"


def _is_docs_page(path: str, headers: MutableScopeHeaders) -> bool:
    under_docs = path == DOCS_PREFIX or path.startswith(DOCS_PREFIX + "/")
    content_type = headers.get("content-type") or ""
    return under_docs and content_type.startswith("text/html")


class SecurityHeadersMiddleware:
    """Adds the headers a response does not set itself; HSTS only when served over HTTPS."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self._fixed: tuple[tuple[str, str], ...] = (
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("x-frame-options", "DENY"),
            *((("strict-transport-security", HSTS),) if hsts else ()),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        path = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                cast("dict[str, Any]", message).setdefault("headers", [])
                headers = MutableScopeHeaders.from_message(message)
                csp = DOCS_CSP if _is_docs_page(path, headers) else STRICT_CSP
                for name, value in (("content-security-policy", csp), *self._fixed):
                    if name not in headers:
                        headers.add(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
