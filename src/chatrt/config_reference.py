"""The configuration reference: every ``CHATRT_*`` variable, its default and its meaning.

Names, order and defaults come from :meth:`chatrt.settings.Settings.from_env` itself (it is
run on a recording environment); only the meanings are written here. ``chatrt
config-reference --write docs/configuration.md`` renders the table into the docs, and a test
fails when the docs, this file or the settings disagree.
"""

from __future__ import annotations

from pathlib import Path

from chatrt.settings import variable_defaults

BEGIN = "<!-- BEGIN chatrt config-reference -->"
END = "<!-- END chatrt config-reference -->"

# name -> (the default as shown, when rendering the value itself would mislead; meaning)
MEANINGS: dict[str, tuple[str | None, str]] = {
    "CHATRT_DATABASE_URL": (
        None,
        ("`postgresql://user:pass@host:port/db` or `sqlite:///path`."),
    ),
    "CHATRT_DB_POOL_MIN": (
        None,
        ("PostgreSQL connection pool: connections kept open."),
    ),
    "CHATRT_DB_POOL_MAX": (
        None,
        ("PostgreSQL connection pool: upper bound (must be ≥ the minimum)."),
    ),
    "CHATRT_REDIS_URL": (
        None,
        ("`redis://host:port/db`. Unset means one instance with in-process stores."),
    ),
    "CHATRT_REDIS_TIMEOUT_S": (
        None,
        ("A Redis command or connect that takes longer fails instead of hanging on a dead link."),
    ),
    "CHATRT_REDIS_KEEPALIVE_S": (
        None,
        (
            "The pub/sub link is pinged this often; three unanswered rounds count as a lost "
            "link (reconnect, then repair from the logs)."
        ),
    ),
    "CHATRT_REDIS_MAX_CONNECTIONS": (
        None,
        (
            "Redis connections per instance (commands; pub/sub has its own). A burst beyond it "
            "waits up to `CHATRT_REDIS_TIMEOUT_S` for a free one instead of failing."
        ),
    ),
    "CHATRT_SECRET_KEY": (
        "random per process on the embedded default",
        (
            "Secret for CSRF tokens and signing, at least 16 characters. Required to serve "
            "when PostgreSQL or Redis is configured."
        ),
    ),
    "CHATRT_PROVIDERS": (
        "unset (offline demo model)",
        (
            'JSON list, in fallback order, of `{"name", "base_url", "api_key", "model", '
            '"input_price_per_mtok"?, "output_price_per_mtok"?}`.'
        ),
    ),
    "CHATRT_MAX_ANSWER_CHARS": (
        None,
        (
            "Longest answer kept from a model; one that runs on is stopped there and ends "
            "`failed` / `answer_too_long` with the text so far."
        ),
    ),
    "CHATRT_MAX_CONTENT_CHARS": (
        None,
        ("Longest message `content` accepted (longer: 413 `content_too_long`)."),
    ),
    "CHATRT_MAX_BODY_BYTES": (
        None,
        ("Largest request body (larger: 413 `payload_too_large`)."),
    ),
    "CHATRT_RETENTION_DAYS": (
        None,
        (
            "How long a soft-deleted conversation can be restored; the default age for "
            "`purge-deleted`."
        ),
    ),
    "CHATRT_CONTEXT_BUDGET_CHARS": (
        None,
        ("Prompt size: the system prompt (at most half) plus the newest turns that fit."),
    ),
    "CHATRT_PROVIDER_CONNECT_TIMEOUT_S": (
        None,
        ("Connecting to a model server; past it the next provider is tried."),
    ),
    "CHATRT_PROVIDER_READ_TIMEOUT_S": (
        None,
        ("Silence from a model server (before the first token: next provider; after: `failed`)."),
    ),
    "CHATRT_LEASE_TTL_S": (
        None,
        (
            "Lease of a generating instance, renewed every third of it; an answer whose lease"
            " lapsed is ended by the sweeper."
        ),
    ),
    "CHATRT_SWEEP_INTERVAL_S": (
        None,
        ("How often each instance looks for answers whose instance died."),
    ),
    "CHATRT_CHECKPOINT_INTERVAL_S": (
        None,
        ("How often the text so far is saved to the message row while streaming."),
    ),
    "CHATRT_STREAM_LOG_TTL_S": (
        None,
        ("How long an answer's replay log lives after its last delta."),
    ),
    "CHATRT_FLUSH_INTERVAL_MS": (
        None,
        (
            "Tokens are coalesced into one delta at most this often (the first one goes out "
            "at once)."
        ),
    ),
    "CHATRT_WS_MAX_FRAME_BYTES": (
        None,
        ("Largest client frame; larger closes the socket with 1009."),
    ),
    "CHATRT_WS_FRAMES_PER_SECOND": (
        None,
        ("Sustained client frame rate; above it (after the burst) the socket closes with 4429."),
    ),
    "CHATRT_WS_FRAME_BURST": (
        None,
        ("Client frames allowed in a burst."),
    ),
    "CHATRT_WS_SEND_QUEUE_FRAMES": (
        None,
        ("Frames queued per socket; a full queue makes the sender wait for the client."),
    ),
    "CHATRT_WS_SEND_TIMEOUT_S": (
        None,
        (
            "How long a socket's queue may stay full before the client counts as too slow and"
            " is closed with 4408."
        ),
    ),
    "CHATRT_SSE_HEARTBEAT_S": (
        None,
        (
            "An SSE stream with nothing to send gets a `: keep-alive` comment this often; an "
            "answer quiet this long is checked against the database (WebSocket and SSE)."
        ),
    ),
    "CHATRT_DEMO_CHUNK_DELAY_MS": (
        None,
        ("Pause between the demo model's words, so the embedded default visibly streams."),
    ),
    "CHATRT_ALLOWED_ORIGINS": (
        None,
        (
            "Comma-separated origins for CORS, unsafe requests and the WebSocket Origin check"
            " (the server's own origin is always allowed; `*` is refused)."
        ),
    ),
    "CHATRT_ALLOWED_HOSTS": (
        None,
        ("Comma-separated `Host` values the server answers."),
    ),
    "CHATRT_COOKIE_SECURE": (
        None,
        (
            "`true` behind HTTPS: session and CSRF cookies get `Secure`, and every response "
            "carries `Strict-Transport-Security: max-age=63072000; includeSubDomains`."
        ),
    ),
    "CHATRT_DEFAULT_LOCALE": (
        None,
        ("Language of error messages when `Accept-Language` names neither `th` nor `en`."),
    ),
    "CHATRT_SHUTDOWN_GRACE_S": (
        None,
        ("On shutdown, how long running answers may finish before they end `failed`."),
    ),
    "CHATRT_LOG_FORMAT": (
        "`text` on the embedded default, else `json`",
        (
            "`json`: one JSON object per line on stderr (for log shippers); `text`: readable "
            "lines for a terminal. Applies to every logger of `chatrt serve`, uvicorn's "
            "included."
        ),
    ),
    "CHATRT_LOG_LEVEL": (
        None,
        (
            "`debug`, `info`, `warning` or `error`. `debug` applies to chatrt's own loggers "
            "only: library debug output (uvicorn, websockets, httpx, openai) prints request "
            "headers, cookies included."
        ),
    ),
    "CHATRT_SENTRY_DSN": (
        "unset (off)",
        (
            "Sentry (or compatible) project DSN, `https://<key>@<host>/<project id>`. When "
            "set, errors logged with a traceback (a 500's `unhandled error`, `generation "
            "crashed`, `sweep failed`, ...) and a failed start are reported, scrubbed to "
            "exception type, stack and ids (see [Error reports](#error-reports)). Unset: "
            "sentry-sdk is not even imported; its own `SENTRY_DSN` variable is ignored."
        ),
    ),
    "CHATRT_SENTRY_ENVIRONMENT": (
        "unset (Sentry's `production`)",
        (
            "Environment name on every report, e.g. `staging`: 1-64 characters, no spaces or "
            "slashes."
        ),
    ),
    "CHATRT_SENTRY_TRACES_SAMPLE_RATE": (
        None,
        (
            "Share of requests (0 to 1) sent to Sentry as performance transactions, named by "
            "route template."
        ),
    ),
    "CHATRT_DAILY_TOKEN_BUDGET": (
        "`0` (no limit)",
        (
            "Tokens (prompt + completion, estimated ones included) one user may spend per UTC"
            " day. Once the answers recorded today reach it, sends are refused with 429 "
            "`quota_exceeded` until the next UTC midnight; the answer that crosses the line "
            "is not cut off."
        ),
    ),
    "CHATRT_DAILY_TOKEN_BUDGET_PER_MODEL": (
        "unset (none)",
        (
            'JSON object `{"model": tokens}`: the same limit per model, on top of the overall'
            " one (`0` means no limit for that model). A send is checked against the model it"
            " asks first: its conversation's `model` when a provider serves it, else the "
            "first provider's."
        ),
    ),
    "CHATRT_TRUSTED_PROXIES": (
        None,
        (
            "Comma-separated IPs or CIDR networks of reverse proxies whose `X-Forwarded-For` "
            "and `X-Forwarded-Proto` are believed; `none` trusts nobody, `*` is refused. The "
            "client address (a rate-limit key) is the right-most `X-Forwarded-For` entry that"
            " is not a trusted proxy; from any other peer the headers are ignored. Replaces "
            "uvicorn's `FORWARDED_ALLOW_IPS`, which `chatrt serve` no longer uses."
        ),
    ),
    "CHATRT_RATE_LIMIT_WINDOW_S": (
        None,
        (
            "Length of the window of the three limits below. A window opens at an identity's "
            "first request; within it the limit is exact across all instances (Redis). `0` in"
            " any limit switches that limit off."
        ),
    ),
    "CHATRT_RATE_LIMIT_IP_PER_WINDOW": (
        None,
        (
            "HTTP requests per window per client address (IPv6: per /64), counting 401s and "
            "404s; not `/health/*` or `/metrics`. Over it: 429 `rate_limited`."
        ),
    ),
    "CHATRT_RATE_LIMIT_USER_PER_WINDOW": (
        None,
        (
            "HTTP requests per window per signed-in user, over all their sessions; applies "
            "together with the per-address limit."
        ),
    ),
    "CHATRT_WS_SENDS_PER_WINDOW": (
        None,
        (
            "WebSocket `send` frames per window per user, over all their sockets; over it the"
            " frame gets an `error` `rate_limited` with `retry_after` and the socket stays "
            "open."
        ),
    ),
    "CHATRT_AUTH_WINDOW_S": (
        None,
        ("Window of the sign-in throttles below (15 minutes)."),
    ),
    "CHATRT_LOGIN_PER_EMAIL": (
        None,
        (
            "Login attempts per window per email (trimmed, lower-case), from any number of "
            "addresses, right or wrong password alike."
        ),
    ),
    "CHATRT_LOGIN_PER_IP": (
        None,
        ("Login attempts per window per client address, whatever the email."),
    ),
    "CHATRT_REGISTER_PER_IP": (
        None,
        ("Registrations per window per client address."),
    ),
}


def _shown(default: object) -> str:
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return "`true`" if default else "`false`"
    if isinstance(default, tuple):
        return "`" + ",".join(map(str, default)) + "`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


def table() -> str:
    """The reference as a Markdown table; KeyError names a variable without a meaning."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, default in variable_defaults().items():
        shown, meaning = MEANINGS[name]
        lines.append(f"| `{name}` | {shown or _shown(default)} | {meaning} |")
    return "\n".join(lines) + "\n"


def rendered_into(document: str) -> str:
    """``document`` with the part between the markers replaced by the current table."""
    head, rest = document.split(BEGIN + "\n", 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}{END}{tail}"


def write(path: Path) -> bool:
    """Bring the reference in ``path`` up to date; True if it changed."""
    old = path.read_text(encoding="utf-8")
    new = rendered_into(old)
    if new != old:
        path.write_text(new, encoding="utf-8")
    return new != old
