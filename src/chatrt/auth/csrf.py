"""CSRF protection for requests authenticated by the session cookie.

Litestar's CSRF middleware checks every unsafe request. We check only those that carry the
session cookie, because only those can ride on the browser's ambient credentials; a request
without one is answered 401 by the auth layer instead of a misleading 403.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware, generate_csrf_token
from litestar.types import Message, Receive, Scope, Send

from chatrt.auth.origins import origin_allowed
from chatrt.errors import AppError

SESSION_COOKIE = "session"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class SessionCSRFMiddleware(CSRFMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request: Request[Any, Any, Any] = Request(scope)
        if scope["method"] in UNSAFE_METHODS:
            self._check_origin_and_type(request)
            self._check_length(request)
            if SESSION_COOKIE not in request.cookies:
                await self.app(scope, receive, send)
                return
        else:
            cookie = request.cookies.get(self.config.cookie_name)
            if cookie is not None and self._decode_csrf_token(cookie) is None:
                # Signed by another secret: hand out a valid one with this response.
                send = self._replacing_cookie(send)
        await super().__call__(scope, receive, send)

    def _check_origin_and_type(self, request: Request[Any, Any, Any]) -> None:
        # Sign-in needs no token, so a cross-site form could still log a victim into the
        # attacker's account: refuse foreign origins and non-JSON bodies (which a plain HTML
        # form can send without a preflight).
        allowed = request.app.state.settings.server.allowed_origins
        scheme = request.headers.get("x-forwarded-proto") or request.url.scheme
        if not origin_allowed(
            request.headers.get("origin"), request.headers.get("host"), scheme, allowed
        ):
            raise AppError(403, "origin_not_allowed")
        content_type = request.headers.get("content-type")
        has_body = (
            request.headers.get("content-length", "0") != "0"
            or "transfer-encoding" in request.headers
        )
        if has_body and (content_type or "").split(";")[0].strip().lower() != "application/json":
            raise AppError(
                400, "bad_request", details={"expected_content_type": "application/json"}
            )

    @staticmethod
    def _check_length(request: Request[Any, Any, Any]) -> None:
        # Litestar enforces the body limit only where a handler reads the body; a route that
        # takes none (delete, restore, cancel, logout) would act on an oversized request.
        limit = request.app.state.settings.limits.max_body_bytes
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise AppError(413, "payload_too_large")

    def _replacing_cookie(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                headers.add("set-cookie", _csrf_cookie(self.config).to_header(header=""))
            await send(message)

        return wrapped


def csrf_middleware(config: CSRFConfig) -> DefineMiddleware:
    return DefineMiddleware(SessionCSRFMiddleware, config=config)


def _csrf_cookie(config: CSRFConfig) -> Cookie:
    return Cookie(
        key=config.cookie_name,
        value=generate_csrf_token(config.secret),
        path=config.cookie_path,
        secure=config.cookie_secure,
        httponly=config.cookie_httponly,
        samesite=config.cookie_samesite,
        domain=config.cookie_domain,
    )


def issue_csrf_cookie(request: Request[Any, Any, Any], response: Response[Any]) -> None:
    """A fresh ``csrftoken`` at every sign-in: it rotates with the session, and a token
    signed by an old secret (a restart, a rotated key) never locks a user out."""
    response.set_cookie(_csrf_cookie(request.app.state.csrf_config))
