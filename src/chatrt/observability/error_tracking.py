"""Error reports to Sentry (or a compatible service), on only when ``CHATRT_SENTRY_DSN`` is set.

:func:`running` belongs to the app's lifespan: it initialises sentry-sdk, reports an
exception that escapes start-up or shutdown, and on the way out flushes what is queued and
detaches the client, so nothing is reported once the app has stopped and the next app built
in the same process starts clean. :func:`around` adds the request layers (sentry-sdk's
generic ASGI middleware, for per-request scopes and traces, and our context for ids).
With no DSN both are no-ops and sentry-sdk is never imported.

Reports come from the logging integration: every error logged with a traceback
(``unhandled error`` for a 500, ``generation crashed``, ``sweep failed``, ...) is one event.
sentry-sdk's Litestar integration is not used: it parses every request body before the
handler does, which turns a malformed JSON body (our 400) into a 500, and it reports each
500 a second time from an ``after_exception`` hook.

What leaves the process is decided in :mod:`chatrt.observability.scrub`; this module adds
our ids (request id, route template, user id) from the request being served.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast

import chatrt
from chatrt.observability.access import user_id_of
from chatrt.observability.context import request_id
from chatrt.observability.scrub import SAFE_HEADERS, scrub_breadcrumb, scrub_event
from chatrt.settings import SentrySettings

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send
    from sentry_sdk.types import Event, Hint

# One line per request already; a 503 from a readiness probe is not a bug report.
_QUIET_LOGGERS = frozenset({"chatrt.access"})
# Reports still queued at shutdown get this long to go out.
FLUSH_TIMEOUT_S = 2.0

# The ASGI scope of the request being served, for the route template and the signed-in user.
_current_scope: ContextVar[Scope | None] = ContextVar("chatrt_sentry_scope", default=None)


def around(app: ASGIApp, settings: SentrySettings) -> ASGIApp:
    """``app`` inside the per-request layers when a DSN is configured, else ``app`` itself.

    Place it inside the request log middleware, so the request id is known to the end.
    """
    if settings.dsn is None:
        return app
    from sentry_sdk.integrations.asgi import SentryAsgiMiddleware

    # "url" names each transaction by its path for now; the scrubber renames it to the
    # route template, so no id or query string becomes a transaction name.
    return RequestContext(
        SentryAsgiMiddleware(app, transaction_style="url", span_origin="auto.http.chatrt")
    )


@asynccontextmanager
async def running(settings: SentrySettings) -> AsyncIterator[None]:
    """The app's lifetime as seen by error tracking; a no-op without a DSN.

    sentry-sdk's client is per process: with two apps with a DSN in one process (tests
    only), the one started last reports, and the first to stop ends reporting for both.
    """
    if settings.dsn is None:
        yield
        return
    import sentry_sdk

    _init(settings)
    try:
        yield
    except Exception:
        # A start-up or shutdown failure: uvicorn logs it only after this client is gone.
        sentry_sdk.capture_exception()
        raise
    finally:
        client = sentry_sdk.get_client()
        await asyncio.to_thread(client.close, FLUSH_TIMEOUT_S)
        sentry_sdk.get_global_scope().set_client(None)


def _init(settings: SentrySettings) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=settings.dsn,
        environment=settings.environment,
        release=f"chatrt@{chatrt.__version__}",
        traces_sample_rate=settings.traces_sample_rate,
        # What the integrations collect in the first place. This is sentry-sdk 2.75's
        # replacement for ``send_default_pii=False`` (deprecated there, with a warning), and
        # stricter: no user info, cookies, bodies, query strings or frame variables at all.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "allowlist", "terms": sorted(SAFE_HEADERS)}},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "gen_ai": {"inputs": False, "outputs": False},
            "database_query_data": False,
            "queues": False,
            "stack_frame_variables": False,
        },
        max_request_body_size="never",
        include_local_variables=False,
        in_app_include=["chatrt"],
        # Only the integrations listed here (plus sentry-sdk's defaults: logging, dedupe,
        # threading, ...): the auto-enabled ones (redis, httpx, openai, asyncpg, ...) would
        # record commands, URLs and prompts in breadcrumbs and spans.
        auto_enabling_integrations=False,
        integrations=[
            # Errors with a traceback, from any task: a crashed generation, a failed sweep.
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        before_send=_before_send,
        before_send_transaction=_before_send_transaction,
        before_breadcrumb=_before_breadcrumb,
    )


class RequestContext:
    """Remembers the ASGI scope of the request being served (while Sentry is on), so a
    report made during it, or by a task it started, names the route and the user."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _current_scope.set(scope)
        try:
            await self.app(scope, receive, send)
        finally:
            _current_scope.reset(token)


def _context() -> Mapping[str, str | None]:
    scope = _current_scope.get()
    route: str | None = scope.get("path_template") if scope is not None else None
    return {
        "request_id": request_id.get(),
        "route": route,
        "user_id": user_id_of(scope) if scope is not None else None,
    }


def _before_send(event: Event, hint: Hint) -> Event | None:
    if event.get("logger") in _QUIET_LOGGERS:
        return None
    return cast("Event", scrub_event(dict(event), _context()))


def _before_send_transaction(event: Event, hint: Hint) -> Event | None:
    return cast("Event", scrub_event(dict(event), _context()))


def _before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    if crumb.get("category") in _QUIET_LOGGERS:
        return None
    record = hint.get("log_record")
    template = record.msg if isinstance(record, logging.LogRecord) else None
    return scrub_breadcrumb(crumb, template)


__all__ = ["FLUSH_TIMEOUT_S", "RequestContext", "around", "running"]
