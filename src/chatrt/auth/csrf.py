"""CSRF protection for requests authenticated by the session cookie.

Litestar's CSRF middleware checks every unsafe request. We check only those that carry the
session cookie, because only those can ride on the browser's ambient credentials; a request
without one is answered 401 by the auth layer instead of a misleading 403.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import Cookie
from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware, generate_csrf_token
from litestar.types import Receive, Scope, Send

SESSION_COOKIE = "session"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class SessionCSRFMiddleware(CSRFMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["method"] in UNSAFE_METHODS:
            request: Request[Any, Any, Any] = Request(scope)
            if SESSION_COOKIE not in request.cookies:
                await self.app(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def csrf_middleware(config: CSRFConfig) -> DefineMiddleware:
    return DefineMiddleware(SessionCSRFMiddleware, config=config)


def issue_csrf_cookie(request: Request[Any, Any, Any], response: Response[Any]) -> None:
    """Give a freshly signed-in client a ``csrftoken`` cookie so it can POST at once."""
    config: CSRFConfig = request.app.state.csrf_config
    if config.cookie_name in request.cookies:
        return
    response.set_cookie(
        Cookie(
            key=config.cookie_name,
            value=generate_csrf_token(config.secret),
            path=config.cookie_path,
            secure=config.cookie_secure,
            httponly=config.cookie_httponly,
            samesite=config.cookie_samesite,
            domain=config.cookie_domain,
        )
    )
