"""Prometheus instruments for what chatrt does, beside Litestar's HTTP request metrics.

Instruments are process-wide, like loggers: prometheus_client keeps them in one registry
(and, with several uvicorn workers, in per-process files that ``/metrics`` sums), which is
also how Litestar's own Prometheus middleware keeps the HTTP series. Labels are bounded
sets only (model, provider, status, code), never ids.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from litestar import MediaType, Response, get
from litestar.config.app import AppConfig
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from prometheus_client import Counter, Gauge, Histogram, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds; from a token-sized first chunk up to a long answer.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
BUS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)

WEBSOCKETS = Gauge(
    "chatrt_websocket_connections", "Open WebSocket connections.", multiprocess_mode="livesum"
)
GENERATIONS_ACTIVE = Gauge(
    "chatrt_generations_active", "Answers being generated now.", multiprocess_mode="livesum"
)
GENERATIONS = Counter(
    "chatrt_generations_total", "Answers that ended, by outcome.", ["model", "provider", "status"]
)
DELTAS = Counter("chatrt_deltas_published_total", "message.delta frames logged and published.")
TOKENS = Counter(
    "chatrt_tokens_total", "Tokens used, by model and kind.", ["model", "provider", "kind"]
)
TIME_TO_FIRST_TOKEN = Histogram(
    "chatrt_time_to_first_token_seconds",
    "From the start of a generation to its first token.",
    ["model", "provider"],
    buckets=LATENCY_BUCKETS,
)
RESPONSE_TIME = Histogram(
    "chatrt_response_seconds",
    "From the start of a generation to its end.",
    ["model", "provider"],
    buckets=LATENCY_BUCKETS,
)
FALLBACKS = Counter(
    "chatrt_provider_fallbacks_total",
    "Times a provider failed before its first token and the next one was tried.",
    ["provider"],
)
RESUMES = Counter(
    "chatrt_resumes_total", "Resumes served, by transport and outcome.", ["transport", "outcome"]
)
ERRORS = Counter(
    "chatrt_errors_total", "Errors sent to clients, by code and transport.", ["code", "transport"]
)
RATE_LIMITED = Counter(
    "chatrt_rate_limited_total", "Requests and frames refused by a rate limit.", ["scope"]
)
BUS_PUBLISH = Histogram(
    "chatrt_bus_publish_seconds",
    "Time to log and publish one event on the bus.",
    ["operation"],
    buckets=BUS_BUCKETS,
)


@contextmanager
def timed(histogram: Histogram, *labels: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.labels(*labels).observe(time.perf_counter() - started)


def measure_everything(app_config: AppConfig) -> AppConfig:
    """Put Litestar's request metrics first, around every other middleware."""
    app_config.middleware.insert(0, _http_metrics().middleware)
    return app_config


def _http_metrics() -> PrometheusConfig:
    """Litestar's request metrics, labelled by route template (never a path with ids)."""
    return PrometheusConfig(
        app_name="chatrt",
        prefix="chatrt",
        group_path=True,
        # A 404's raw path would be a label anyone can mint: unbounded series.
        exclude_unhandled_paths=True,
        exclude=["^/metrics$"],
    )


class MetricsController(PrometheusController):
    """``GET /metrics``: Litestar's exposition, documented as the text format it answers
    (the inherited handler declares no media type, so OpenAPI called it JSON)."""

    @get(media_type=MediaType.TEXT, tags=["operations"], summary="Prometheus metrics (text)")
    async def get(self) -> Response[bytes]:
        response: Response[bytes] = await PrometheusController.get.fn(self)
        return response


def process_exited() -> None:
    """Drop this worker's live gauges from the shared directory (multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
