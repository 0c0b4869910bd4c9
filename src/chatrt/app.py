"""``create_app(settings) -> Litestar``: wires stores, auth, CSRF, routes and the lifespan."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import redis.asyncio as aredis
from litestar import Litestar
from litestar.config.allowed_hosts import AllowedHostsConfig
from litestar.config.app import AppConfig
from litestar.config.cors import CORSConfig
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.middleware.session.server_side import ServerSideSessionBackend
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.security.session_auth import SessionAuth
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore

import chatrt
from chatrt.auth.controller import AuthController
from chatrt.auth.csrf import SESSION_COOKIE, csrf_middleware
from chatrt.auth.guards import retrieve_user
from chatrt.auth.passwords import Passwords
from chatrt.auth.schemas import UserOut
from chatrt.auth.sessions import RotatingSessionConfig
from chatrt.bus.base import EventBus
from chatrt.bus.memory import MemoryBus
from chatrt.bus.redis import RedisBus
from chatrt.conversations.controller import ConversationController
from chatrt.conversations.messages_controller import MessageController
from chatrt.db.engine import database
from chatrt.errors import EXCEPTION_HANDLERS
from chatrt.generation.runner import GenerationRunner
from chatrt.generation.sweeper import Sweeper
from chatrt.middleware.etag import ETagMiddleware
from chatrt.middleware.security_headers import SecurityHeadersMiddleware
from chatrt.observability import error_tracking, metrics
from chatrt.observability.access import RequestLogMiddleware
from chatrt.observability.health import live, ready
from chatrt.providers.factory import provider_chain
from chatrt.ratelimit.base import EXPOSED_HEADERS, RateLimiter
from chatrt.ratelimit.http import ip_limit, user_limit
from chatrt.ratelimit.identity import trusting_proxies
from chatrt.ratelimit.limits import Limits, Rules
from chatrt.ratelimit.memory import MemoryRateLimiter
from chatrt.ratelimit.redis import RedisRateLimiter
from chatrt.realtime.sse import stream_message
from chatrt.realtime.ws import ws
from chatrt.redis_client import connect as redis_connect
from chatrt.settings import Settings
from chatrt.usage.controller import get_usage
from chatrt.web import web_routes

SESSION_MAX_AGE_S = 14 * 24 * 3600


def create_app(settings: Settings | None = None) -> Litestar:
    """Build one chatrt application; nothing is connected until its lifespan starts."""
    if settings is None:
        settings = Settings.from_env(os.environ)
    secret_key = settings.require_secret_key()
    redis_client = redis_connect(settings.redis) if settings.redis.url else None
    stores = _stores(redis_client)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # First in, last out: sees failures of every later step, flushes after them.
            await stack.enter_async_context(error_tracking.running(settings.sentry))
            if redis_client is not None:
                stack.push_async_callback(redis_client.aclose)
            await stack.enter_async_context(database(settings.db))
            app.state.passwords = Passwords()
            bus: EventBus
            if redis_client is not None and settings.redis.url is not None:
                bus = await stack.enter_async_context(
                    RedisBus(
                        redis_client,
                        settings.redis.url,
                        timeout_s=settings.redis.timeout_s,
                        keepalive_s=settings.redis.keepalive_s,
                    )
                )
            else:
                bus = MemoryBus()
            app.state.bus = bus
            limiter: RateLimiter = (
                RedisRateLimiter(redis_client) if redis_client is not None else MemoryRateLimiter()
            )
            app.state.limits = Limits(limiter, Rules.from_settings(settings.rate_limit))
            chain = await stack.enter_async_context(provider_chain(settings))
            app.state.generations = await stack.enter_async_context(
                GenerationRunner(bus, chain, settings, instance_id=uuid.uuid4().hex)
            )
            await stack.enter_async_context(Sweeper(bus, settings))
            stack.callback(metrics.process_exited)
            yield

    csrf_config = CSRFConfig(
        secret=secret_key,
        cookie_name="csrftoken",
        header_name="x-csrftoken",
        cookie_secure=settings.server.cookie_secure,
        cookie_samesite="lax",
    )
    session_auth = SessionAuth[UserOut, ServerSideSessionBackend](
        retrieve_user_handler=retrieve_user,
        session_backend_config=RotatingSessionConfig(
            key=SESSION_COOKIE,
            secure=settings.server.cookie_secure,
            httponly=True,
            samesite="lax",
            max_age=SESSION_MAX_AGE_S,
            store="sessions",
        ),
        exclude=["^/health/", "^/schema", "^/metrics$"],
    )
    state = State({"settings": settings, "csrf_config": csrf_config})
    app = Litestar(
        route_handlers=[
            AuthController,
            ConversationController,
            MessageController,
            get_usage,
            stream_message,
            ws,
            live,
            ready,
            metrics.MetricsController,
            *web_routes(),
        ],
        lifespan=[lifespan],
        state=state,
        stores=stores,
        dependencies={
            "settings": Provide(_settings, sync_to_thread=False),
            "generations": Provide(_generations, sync_to_thread=False),
            "bus": Provide(_bus, sync_to_thread=False),
            "passwords": Provide(_passwords, sync_to_thread=False),
            "redis": Provide(lambda: redis_client, sync_to_thread=False),
            "limits": Provide(_limits, sync_to_thread=False),
        },
        # Metrics go outermost (after session auth put itself first), so 401s count too.
        on_app_init=[session_auth.on_app_init, openapi_security, metrics.measure_everything],
        # After session auth (which put itself first), so the user is known.
        middleware=[DefineMiddleware(user_limit, state=state), csrf_middleware(csrf_config)],
        cors_config=CORSConfig(
            allow_origins=list(settings.server.allowed_origins),
            allow_credentials=True,
            allow_headers=["content-type", "x-csrftoken", "accept-language"],
            expose_headers=list(EXPOSED_HEADERS),
        ),
        allowed_hosts=AllowedHostsConfig(allowed_hosts=list(settings.server.allowed_hosts)),
        request_max_body_size=settings.limits.max_body_bytes,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        openapi_config=OpenAPIConfig(
            title="chatrt",
            version=chatrt.__version__,
            description="Real-time AI chat backend. Errors share one shape: "
            '`{"error": {"code", "message", "details"}}`.',
            path="/schema",
            render_plugins=[SwaggerRenderPlugin(path="/swagger")],
        ),
        # Logging is configured by whoever runs the app (``chatrt serve``: JSON lines);
        # Litestar's default config would install a second root handler on top of it.
        logging_config=None,
        debug=False,
    )
    # Litestar's ``middleware=`` runs only for requests that matched a route; these layers
    # must also see 404s, 405s and everything answered before routing, so they wrap it all.
    # The per-IP limit also counts 404s and 401s; proxy headers are read before anything else.
    app.asgi_handler = trusting_proxies(
        RequestLogMiddleware(
            error_tracking.around(
                SecurityHeadersMiddleware(
                    ETagMiddleware(ip_limit(app.asgi_handler, state, app.cors_config)),
                    hsts=settings.server.cookie_secure,
                ),
                settings.sentry,
            )
        ),
        settings.server.trusted_proxies,
    )
    return app


def openapi_security(app_config: AppConfig) -> AppConfig:
    """Session auth declares its cookie for the whole OpenAPI document, so also for the
    routes it lets through (sign-in, health, metrics); each guarded operation declares it
    instead (``SESSION_REQUIRED``)."""
    if app_config.openapi_config is not None:
        app_config.openapi_config.security = None
    return app_config


def _stores(redis_client: aredis.Redis | None) -> dict[str, Store]:
    if redis_client is None:
        return {"sessions": MemoryStore()}
    root = RedisStore(redis_client, namespace="chatrt", handle_client_shutdown=False)
    return {"sessions": root.with_namespace("sessions")}


def _settings(state: State) -> Settings:
    settings: Settings = state.settings
    return settings


def _passwords(state: State) -> Passwords:
    passwords: Passwords = state.passwords
    return passwords


def _bus(state: State) -> EventBus:
    bus: EventBus = state.bus
    return bus


def _limits(state: State) -> Limits:
    limits: Limits = state.limits
    return limits


def _generations(state: State) -> GenerationRunner:
    runner: GenerationRunner = state.generations
    return runner


__all__ = ["create_app"]
