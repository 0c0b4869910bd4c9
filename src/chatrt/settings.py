"""All configuration, read once from ``CHATRT_*`` environment variables.

Nothing else in chatrt reads ``os.environ``: ``create_app`` and the CLI call
:meth:`Settings.from_env` and pass the frozen result down.
"""

from __future__ import annotations

import ipaddress
import math
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

import msgspec

Locale = Literal["th", "en"]
LogFormat = Literal["json", "text"]
LogLevel = Literal["debug", "info", "warning", "error"]

T = TypeVar("T")


class SettingsError(ValueError):
    """A ``CHATRT_*`` variable is missing or malformed; the message names it."""


DEFAULT_DATABASE_URL = "sqlite:///chatrt.sqlite3"
DEFAULT_ORIGINS = ("http://127.0.0.1:8000", "http://localhost:8000")
DEFAULT_TRUSTED_PROXIES = ("127.0.0.1", "::1")


class DatabaseSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str = DEFAULT_DATABASE_URL
    pool_min: int = 2
    pool_max: int = 20

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite:")

    @property
    def sqlite_path(self) -> str:
        return self.url.removeprefix("sqlite:///")


class RedisSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str | None = None
    # A command (or connect) that takes longer fails instead of hanging on a dead link.
    timeout_s: float = 5.0
    # Pub/sub is pinged this often; three missed replies count as a lost link.
    keepalive_s: float = 5.0
    max_connections: int = 200


NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
HttpUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://\S+$", max_length=2000)]
Price = Annotated[float, msgspec.Meta(ge=0)]


class ProviderSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: NonEmpty
    base_url: HttpUrl
    model: NonEmpty
    api_key: str = ""
    input_price_per_mtok: Price = 0.0
    output_price_per_mtok: Price = 0.0


class LimitSettings(msgspec.Struct, frozen=True, kw_only=True):
    max_content_chars: int = 32_000
    max_body_bytes: int = 1_048_576
    retention_days: int = 30


class GenerationSettings(msgspec.Struct, frozen=True, kw_only=True):
    context_budget_chars: int = 24_000
    max_answer_chars: int = 1_000_000
    provider_connect_timeout_s: float = 5.0
    provider_read_timeout_s: float = 60.0
    # A generating instance renews its lease every third of this; a lapsed lease is swept.
    lease_ttl_s: float = 15.0
    sweep_interval_s: float = 5.0
    checkpoint_interval_s: float = 3.0
    stream_log_ttl_s: float = 600.0
    flush_interval_ms: int = 30


class RealtimeSettings(msgspec.Struct, frozen=True, kw_only=True):
    max_frame_bytes: int = 65_536
    frames_per_second: float = 20.0
    frame_burst: int = 60
    send_queue_frames: int = 2048
    # How long a socket's full send queue may stay full before the client counts as slow.
    send_timeout_s: float = 10.0
    sse_heartbeat_s: float = 15.0


class RateLimitSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Fixed windows shared by all instances; a limit of 0 switches that limit off."""

    window_s: float = 60.0
    ip_per_window: int = 1200
    user_per_window: int = 600
    ws_sends_per_window: int = 30
    # Sign-in throttles count every attempt, over a longer window.
    auth_window_s: float = 900.0
    login_per_email: int = 10
    login_per_ip: int = 100
    register_per_ip: int = 20


class DemoSettings(msgspec.Struct, frozen=True, kw_only=True):
    # Pause between demo chunks, so the embedded default visibly streams.
    chunk_delay_ms: int = 30


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True):
    # None only outside the embedded default; serving then refuses to start.
    secret_key: str | None
    allowed_origins: tuple[str, ...] = DEFAULT_ORIGINS
    allowed_hosts: tuple[str, ...] = ("*",)
    cookie_secure: bool = False
    default_locale: Locale = "th"
    shutdown_grace_s: float = 10.0
    # Peers whose X-Forwarded-For / -Proto are believed (IPs or CIDRs; empty: nobody).
    trusted_proxies: tuple[str, ...] = DEFAULT_TRUSTED_PROXIES


class BudgetSettings(msgspec.Struct, frozen=True, kw_only=True):
    # Tokens (prompt + completion) one user may spend per UTC day; None means no limit.
    daily_tokens: int | None = None
    # (model, tokens) pairs, sorted: the same limit per model, on top of ``daily_tokens``.
    # A tuple rather than a dict keeps the settings immutable and hashable.
    daily_tokens_per_model: tuple[tuple[str, int], ...] = ()


class LogSettings(msgspec.Struct, frozen=True, kw_only=True):
    # JSON lines for log shippers; text keeps the embedded default readable in a terminal.
    format: LogFormat = "json"
    level: LogLevel = "info"


class SentrySettings(msgspec.Struct, frozen=True, kw_only=True):
    # None: error tracking is off and sentry-sdk is never imported.
    dsn: str | None = None
    # None: Sentry's own default ("production").
    environment: str | None = None
    traces_sample_rate: float = 0.0


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    db: DatabaseSettings
    redis: RedisSettings
    providers: tuple[ProviderSettings, ...]
    budget: BudgetSettings
    limits: LimitSettings
    generation: GenerationSettings
    realtime: RealtimeSettings
    demo: DemoSettings
    server: ServerSettings
    rate_limit: RateLimitSettings
    log: LogSettings
    sentry: SentrySettings = msgspec.field(default_factory=SentrySettings)

    @property
    def is_embedded(self) -> bool:
        """True on the single-process default: SQLite and no Redis."""
        return self.db.is_sqlite and self.redis.url is None

    def require_secret_key(self) -> str:
        """The signing secret; :class:`SettingsError` when serving without one."""
        if self.server.secret_key is None:
            raise SettingsError(
                "CHATRT_SECRET_KEY: required when PostgreSQL or Redis is configured"
            )
        return self.server.secret_key

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read ``CHATRT_*`` variables; raise :class:`SettingsError` naming the bad one."""
        env = _Env(environ)
        db = DatabaseSettings(
            url=env.get("CHATRT_DATABASE_URL", _database_url, DEFAULT_DATABASE_URL),
            pool_min=env.get("CHATRT_DB_POOL_MIN", _positive_int, 2),
            pool_max=env.get("CHATRT_DB_POOL_MAX", _positive_int, 20),
        )
        if db.pool_min > db.pool_max:
            raise SettingsError("CHATRT_DB_POOL_MIN: must not exceed CHATRT_DB_POOL_MAX")
        redis = RedisSettings(
            url=env.get("CHATRT_REDIS_URL", _redis_url, None),
            timeout_s=env.get("CHATRT_REDIS_TIMEOUT_S", _positive_float, 5.0),
            keepalive_s=env.get("CHATRT_REDIS_KEEPALIVE_S", _positive_float, 5.0),
            max_connections=env.get("CHATRT_REDIS_MAX_CONNECTIONS", _positive_int, 200),
        )
        embedded = db.is_sqlite and redis.url is None
        secret = env.get("CHATRT_SECRET_KEY", _secret, None)
        if secret is None and embedded:
            # Embedded default: a per-process key; sessions live in memory anyway.
            secret = secrets.token_urlsafe(32)
        return cls(
            db=db,
            redis=redis,
            providers=env.get("CHATRT_PROVIDERS", _providers, ()),
            budget=BudgetSettings(
                daily_tokens=env.get("CHATRT_DAILY_TOKEN_BUDGET", _budget, None),
                daily_tokens_per_model=env.get(
                    "CHATRT_DAILY_TOKEN_BUDGET_PER_MODEL", _budget_per_model, ()
                ),
            ),
            limits=LimitSettings(
                max_content_chars=env.get("CHATRT_MAX_CONTENT_CHARS", _positive_int, 32_000),
                max_body_bytes=env.get("CHATRT_MAX_BODY_BYTES", _positive_int, 1_048_576),
                retention_days=env.get("CHATRT_RETENTION_DAYS", _positive_int, 30),
            ),
            generation=GenerationSettings(
                context_budget_chars=env.get("CHATRT_CONTEXT_BUDGET_CHARS", _positive_int, 24_000),
                max_answer_chars=env.get("CHATRT_MAX_ANSWER_CHARS", _positive_int, 1_000_000),
                provider_connect_timeout_s=env.get(
                    "CHATRT_PROVIDER_CONNECT_TIMEOUT_S", _positive_float, 5.0
                ),
                provider_read_timeout_s=env.get(
                    "CHATRT_PROVIDER_READ_TIMEOUT_S", _positive_float, 60.0
                ),
                lease_ttl_s=env.get("CHATRT_LEASE_TTL_S", _positive_float, 15.0),
                sweep_interval_s=env.get("CHATRT_SWEEP_INTERVAL_S", _positive_float, 5.0),
                checkpoint_interval_s=env.get("CHATRT_CHECKPOINT_INTERVAL_S", _positive_float, 3.0),
                stream_log_ttl_s=env.get("CHATRT_STREAM_LOG_TTL_S", _positive_float, 600.0),
                flush_interval_ms=env.get("CHATRT_FLUSH_INTERVAL_MS", _positive_int, 30),
            ),
            realtime=RealtimeSettings(
                max_frame_bytes=env.get("CHATRT_WS_MAX_FRAME_BYTES", _positive_int, 65_536),
                frames_per_second=env.get("CHATRT_WS_FRAMES_PER_SECOND", _positive_float, 20.0),
                frame_burst=env.get("CHATRT_WS_FRAME_BURST", _positive_int, 60),
                send_queue_frames=env.get("CHATRT_WS_SEND_QUEUE_FRAMES", _positive_int, 2048),
                send_timeout_s=env.get("CHATRT_WS_SEND_TIMEOUT_S", _positive_float, 10.0),
                sse_heartbeat_s=env.get("CHATRT_SSE_HEARTBEAT_S", _positive_float, 15.0),
            ),
            demo=DemoSettings(
                chunk_delay_ms=env.get("CHATRT_DEMO_CHUNK_DELAY_MS", _non_negative_int, 30),
            ),
            server=ServerSettings(
                secret_key=secret,
                allowed_origins=env.get("CHATRT_ALLOWED_ORIGINS", _origins, DEFAULT_ORIGINS),
                allowed_hosts=env.get("CHATRT_ALLOWED_HOSTS", _csv, ("*",)),
                cookie_secure=env.get("CHATRT_COOKIE_SECURE", _bool, False),
                default_locale=env.get("CHATRT_DEFAULT_LOCALE", _locale, "th"),
                shutdown_grace_s=env.get("CHATRT_SHUTDOWN_GRACE_S", _positive_float, 10.0),
                trusted_proxies=env.get(
                    "CHATRT_TRUSTED_PROXIES", _trusted_proxies, DEFAULT_TRUSTED_PROXIES
                ),
            ),
            rate_limit=RateLimitSettings(
                window_s=env.get("CHATRT_RATE_LIMIT_WINDOW_S", _positive_float, 60.0),
                ip_per_window=env.get("CHATRT_RATE_LIMIT_IP_PER_WINDOW", _non_negative_int, 1200),
                user_per_window=env.get(
                    "CHATRT_RATE_LIMIT_USER_PER_WINDOW", _non_negative_int, 600
                ),
                ws_sends_per_window=env.get("CHATRT_WS_SENDS_PER_WINDOW", _non_negative_int, 30),
                auth_window_s=env.get("CHATRT_AUTH_WINDOW_S", _positive_float, 900.0),
                login_per_email=env.get("CHATRT_LOGIN_PER_EMAIL", _non_negative_int, 10),
                login_per_ip=env.get("CHATRT_LOGIN_PER_IP", _non_negative_int, 100),
                register_per_ip=env.get("CHATRT_REGISTER_PER_IP", _non_negative_int, 20),
            ),
            log=LogSettings(
                format=env.get("CHATRT_LOG_FORMAT", _log_format, "text" if embedded else "json"),
                level=env.get("CHATRT_LOG_LEVEL", _log_level, "info"),
            ),
            sentry=SentrySettings(
                dsn=env.get("CHATRT_SENTRY_DSN", _sentry_dsn, None),
                environment=env.get("CHATRT_SENTRY_ENVIRONMENT", _sentry_environment, None),
                traces_sample_rate=env.get("CHATRT_SENTRY_TRACES_SAMPLE_RATE", _fraction, 0.0),
            ),
        )


@dataclass(frozen=True)
class _Env:
    environ: Mapping[str, str]

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        if isinstance(self.environ, _Recorder):
            self.environ.defaults.setdefault(name, default)
        raw = self.environ.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except (ValueError, msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise SettingsError(f"{name}: {exc}") from None


def variable_names() -> tuple[str, ...]:
    """Every ``CHATRT_*`` variable :meth:`Settings.from_env` reads, in the order it reads them.

    Found by running ``from_env`` on an empty environment that records each lookup, so the
    list cannot drift from the code; it relies on ``from_env`` reading every variable on
    every run (no lookup behind a condition).
    """
    return tuple(variable_defaults())


def variable_defaults() -> dict[str, object]:
    """Each variable :meth:`Settings.from_env` reads, with the default it falls back to."""
    recorder = _Recorder()
    Settings.from_env(recorder)
    return {name: recorder.defaults.get(name) for name in dict.fromkeys(recorder.names)}


class _Recorder(Mapping[str, str]):
    """An empty environment that remembers which names were looked up."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.defaults: dict[str, object] = {}

    def __getitem__(self, name: str) -> str:
        self.names.append(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _database_url(raw: str) -> str:
    if raw.startswith(("postgresql://", "postgres://")):
        return raw
    if raw.startswith("sqlite:///") and len(raw) > len("sqlite:///"):
        return raw
    raise ValueError("expected postgresql://user:pass@host:port/db or sqlite:///path")


def _redis_url(raw: str) -> str:
    if raw.startswith(("redis://", "rediss://", "unix://")):
        return raw
    raise ValueError("expected redis://host:port/db")


def _secret(raw: str) -> str:
    if len(raw) < 16:
        raise ValueError("must be at least 16 characters")
    return raw


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or more")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive finite number")
    return value


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _origins(raw: str) -> tuple[str, ...]:
    origins = _csv(raw)
    if "*" in origins:
        # With credentials, "*" would let any site act as the signed-in user.
        raise ValueError("list the allowed origins; '*' is not accepted")
    return origins


def _trusted_proxies(raw: str) -> tuple[str, ...]:
    if raw.lower() == "none":
        return ()
    proxies = []
    for part in _csv(raw):
        if part == "*":
            # Trusting every peer lets any client pick its own address (and rate-limit key).
            raise ValueError("list the proxies' addresses or networks; '*' is not accepted")
        try:
            network = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or network") from None
        proxies.append(str(network.network_address) if network.num_addresses == 1 else str(network))
    return tuple(proxies)


def _locale(raw: str) -> Locale:
    if raw == "th":
        return "th"
    if raw == "en":
        return "en"
    raise ValueError("expected th or en")


def _log_format(raw: str) -> LogFormat:
    lowered = raw.lower()
    if lowered == "json":
        return "json"
    if lowered == "text":
        return "text"
    raise ValueError("expected json or text")


_LOG_LEVELS: dict[str, LogLevel] = {
    "debug": "debug",
    "info": "info",
    "warning": "warning",
    "error": "error",
}


def _log_level(raw: str) -> LogLevel:
    level = _LOG_LEVELS.get(raw.lower())
    if level is None:
        raise ValueError("expected debug, info, warning or error")
    return level


def _sentry_dsn(raw: str) -> str:
    # The message never repeats the value: a DSN carries the project's key.
    parts = urlsplit(raw)
    parts.port  # noqa: B018 - raises ValueError on a malformed port
    project = parts.path.rstrip("/").rpartition("/")[2]
    if (
        parts.scheme not in ("http", "https")
        or not parts.username
        or not parts.hostname
        or not project.isdigit()
    ):
        raise ValueError("expected https://<key>@<host>/<project id>")
    return raw


# Sentry refuses environment names with whitespace or slashes, longer than 64, or "None".
_SENTRY_ENVIRONMENT = re.compile(r"[^\s/]{1,64}")


def _sentry_environment(raw: str) -> str:
    if not _SENTRY_ENVIRONMENT.fullmatch(raw) or raw == "None":
        raise ValueError("expected a name of 1-64 characters without spaces or slashes")
    return raw


def _fraction(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


def _providers(raw: str) -> tuple[ProviderSettings, ...]:
    providers = msgspec.json.decode(raw, type=tuple[ProviderSettings, ...])
    if not providers:
        raise ValueError("expected a non-empty JSON list")
    names = [p.name for p in providers]
    if len(set(names)) != len(names):
        raise ValueError("provider names must be unique")
    return providers


def _budget(raw: str) -> int | None:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero (no limit) or a positive number of tokens")
    return value or None


def _budget_per_model(raw: str) -> tuple[tuple[str, int], ...]:
    budgets = msgspec.json.decode(raw, type=dict[NonEmpty, Annotated[int, msgspec.Meta(ge=0)]])
    # Zero means no limit for that model, as for the overall budget.
    return tuple(sorted((model, tokens) for model, tokens in budgets.items() if tokens))
