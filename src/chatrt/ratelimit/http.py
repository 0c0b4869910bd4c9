"""HTTP rate limits as ASGI middleware: per client IP (around everything) and per user.

Every HTTP response that passed a limit carries ``RateLimit-Limit``, ``-Remaining`` and
``-Reset`` of the limit closest to running out, and ``RateLimit-Policy`` listing every limit
that applied. A refused request gets 429 ``rate_limited`` in the contract's error shape with
``Retry-After``, and never reaches the app. Health checks, ``/metrics`` and CORS preflights
are not limited.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

import msgspec
from litestar.config.cors import CORSConfig
from litestar.datastructures import Headers, MutableScopeHeaders, State
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from chatrt.auth.schemas import UserOut
from chatrt.errors import error_body, preferred_locale
from chatrt.observability import metrics
from chatrt.ratelimit.base import Decision, Rule
from chatrt.ratelimit.identity import client_ip
from chatrt.ratelimit.limits import Limits, Rules
from chatrt.settings import Locale

EXCLUDED = re.compile(r"^/health/|^/metrics$")
_ENCODER = msgspec.json.Encoder()


def user_identity(scope: Scope) -> str | None:
    """The signed-in user's id, once the auth middleware has put the user in the scope."""
    user = scope.get("user")
    return str(user.id) if isinstance(user, UserOut) else None


class RateLimitMiddleware:
    """One limit on HTTP requests: ``pick`` chooses the rule, ``identify`` the identity
    (None: this limit does not apply to the request)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        state: State,
        pick: Callable[[Rules], Rule],
        identify: Callable[[Scope], str | None],
        cors: CORSConfig | None = None,
    ) -> None:
        self.app = app
        # Only a layer outside Litestar's CORS handling needs it: its 429s and the
        # preflights it lets through would otherwise reach the browser without CORS.
        self._cors = cors
        self._state = state  # the app's; the lifespan puts ``limits`` in it before any request
        self._pick = pick
        self._identify = identify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or EXCLUDED.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers.from_scope(scope)
        origin = headers.get("origin") if self._cors is not None else None
        if origin is not None and scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)  # a preflight: answered by the CORS layer
            return
        identity = self._identify(scope)
        limits: Limits = self._state.limits
        decision = (
            None if identity is None else await limits.hit(self._pick(limits.rules), identity)
        )
        if decision is None:
            await self.app(scope, receive, send)
        elif decision.allowed:
            await self.app(scope, receive, _adding_headers(send, decision))
        else:
            default: Locale = self._state.settings.server.default_locale
            locale = preferred_locale(headers.get("accept-language"), default)
            await refuse(send, decision, locale, self._cors_headers(origin))

    def _cors_headers(self, origin: str | None) -> dict[str, str]:
        """What Litestar's CORS layer would add for this origin (it is inside this one)."""
        if origin is None or self._cors is None or not self._cors.is_origin_allowed(origin):
            return {}
        return self._cors.simple_headers | {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def ip_limit(app: ASGIApp, state: State, cors: CORSConfig | None) -> RateLimitMiddleware:
    return RateLimitMiddleware(app, state=state, pick=lambda r: r.ip, identify=client_ip, cors=cors)


def user_limit(app: ASGIApp, state: State) -> RateLimitMiddleware:
    return RateLimitMiddleware(app, state=state, pick=lambda r: r.user, identify=user_identity)


async def refuse(
    send: Send, decision: Decision, locale: Locale, extra: dict[str, str] | None = None
) -> None:
    """Answer 429 ``rate_limited`` in the contract's error shape."""
    body = _ENCODER.encode(
        error_body(
            "rate_limited", locale, {"retry_after": decision.reset_s, "scope": decision.rule.scope}
        )
    )
    named = decision.headers() | (extra or {})
    headers = [(k.lower().encode(), v.encode()) for k, v in named.items()]
    headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    metrics.ERRORS.labels("rate_limited", "http").inc()
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _adding_headers(send: Send, decision: Decision) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            cast("dict[str, Any]", message).setdefault("headers", [])
            merge_headers(MutableScopeHeaders.from_message(message), decision)
        await send(message)

    return wrapped


def merge_headers(headers: MutableScopeHeaders, decision: Decision) -> None:
    """Add this limit to headers an inner limit may have set: the policy joins the list, and
    Limit/Remaining/Reset describe whichever limit has less left."""
    theirs = headers.get("ratelimit-remaining")
    policy = headers.get("ratelimit-policy")
    headers["ratelimit-policy"] = (
        f"{policy}, {decision.rule.policy}" if policy else decision.rule.policy
    )
    if theirs is not None and theirs.isdigit() and int(theirs) <= decision.remaining:
        return
    for name, value in decision.headers().items():
        if name != "RateLimit-Policy":
            headers[name.lower()] = value
