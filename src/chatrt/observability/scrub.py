"""What may leave the process in an error report: types, stacks and our ids, nothing a user wrote.

Pure functions over Sentry's event and breadcrumb dictionaries (no sentry-sdk import), used
as its ``before_send``, ``before_send_transaction`` and ``before_breadcrumb``. They work by
allow-list: a field we do not know is dropped, so a new integration or a new log field
cannot start sending message text, prompts, titles, passwords, cookies, CSRF tokens,
session ids, ``Authorization`` headers or API keys. The full exception message stays in our
own logs, which carry the same request id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Log ``extra`` keys (and breadcrumb data) known to hold ids, codes, sizes and timings only.
SAFE_FIELDS = frozenset(
    {
        "request_id",
        "user_id",
        "message_id",
        "conversation_id",
        "method",
        "route",
        "status",
        "status_code",
        "duration_ms",
        "response_bytes",
        "websocket",
        "close_code",
        "frame",
        "provider",
        "model",
        "provider_error",
        "error_code",
        "ttft_ms",
        "response_ms",
        "prompt_tokens",
        "completion_tokens",
        "tokens_estimated",
        "recorded",
    }
)

# Request headers worth keeping: none of them carries a credential or user text.
SAFE_HEADERS = frozenset({"content-type", "content-length", "accept-language", "user-agent"})

# Only our own loggers promise messages without user content (see observability/logs.py).
OWN_LOGGER_PREFIX = "chatrt"

_MAX_VALUE_CHARS = 200

Event = dict[str, Any]


def _own_logger(name: object) -> bool:
    return isinstance(name, str) and (
        name == OWN_LOGGER_PREFIX or name.startswith(OWN_LOGGER_PREFIX + ".")
    )


def safe_fields(data: object) -> dict[str, Any]:
    """The allow-listed keys of ``data`` whose values are plain scalars (strings shortened)."""
    if not isinstance(data, Mapping):
        return {}
    kept: dict[str, Any] = {}
    for key, value in data.items():
        if key not in SAFE_FIELDS:
            continue
        if isinstance(value, str):
            kept[key] = value[:_MAX_VALUE_CHARS]
        elif value is None or isinstance(value, bool | int | float):
            kept[key] = value
    return kept


def scrub_request(request: object) -> dict[str, Any]:
    """Keep the method and a few harmless headers; drop URL, query, body, cookies and env."""
    if not isinstance(request, Mapping):
        return {}
    kept: dict[str, Any] = {}
    method = request.get("method")
    if isinstance(method, str):
        kept["method"] = method[:16]
    headers = request.get("headers")
    if isinstance(headers, Mapping):
        kept["headers"] = {
            name: str(value)[:_MAX_VALUE_CHARS]
            for name, value in headers.items()
            if isinstance(name, str) and name.lower() in SAFE_HEADERS
        }
    return kept


def _scrub_stacktrace(holder: object) -> None:
    if not isinstance(holder, dict):
        return
    stacktrace = holder.get("stacktrace")
    if isinstance(stacktrace, dict):
        for frame in stacktrace.get("frames") or ():
            if isinstance(frame, dict):
                # Local variables can hold anything, and are off anyway; belt and braces.
                frame.pop("vars", None)


def _scrub_exceptions(event: Event) -> None:
    container = event.get("exception")
    if not isinstance(container, dict):
        return
    for value in container.get("values") or ():
        if not isinstance(value, dict):
            continue
        # ``str(exc)`` can quote input: a DB error's DETAIL line, a ValueError naming text.
        value.pop("value", None)
        mechanism = value.get("mechanism")
        if isinstance(mechanism, dict):
            mechanism.pop("data", None)
            mechanism.pop("meta", None)
        _scrub_stacktrace(value)


def _scrub_logentry(event: Event) -> None:
    entry = event.get("logentry")
    if entry is None:
        return
    template = entry.get("message") if isinstance(entry, dict) else None
    if _own_logger(event.get("logger")) and isinstance(template, str):
        # The format string only; its arguments and the formatted text stay behind.
        event["logentry"] = {"message": template[:_MAX_VALUE_CHARS]}
    else:
        event["logentry"] = {"message": f"log record from {event.get('logger') or 'unknown'}"}


def scrub_breadcrumb(crumb: Event, template: object = None) -> Event:
    """A breadcrumb reduced to its kind, level, time and allow-listed data.

    ``template`` is the log record's format string (``record.msg``, before its arguments
    are filled in); it becomes the message for our own loggers' breadcrumbs only.
    """
    kept: Event = {
        key: crumb[key] for key in ("type", "category", "level", "timestamp") if key in crumb
    }
    data = safe_fields(crumb.get("data"))
    if data:
        kept["data"] = data
    if isinstance(template, str) and _own_logger(crumb.get("category")):
        kept["message"] = template[:_MAX_VALUE_CHARS]
    return kept


def scrub_event(event: Event, context: Mapping[str, str | None]) -> Event:
    """Strip ``event`` down to what may leave the process; ``context`` adds our ids
    (``request_id``, ``user_id``, ``route``) where known."""
    for key in ("message", "extra", "request", "user"):
        value = event.pop(key, None)
        if key == "extra" and (extra := safe_fields(value)):
            event["extra"] = extra
        elif key == "request" and (request := scrub_request(value)):
            event["request"] = request
    _scrub_exceptions(event)
    _scrub_logentry(event)
    threads = event.get("threads")
    if isinstance(threads, dict):
        for thread in threads.get("values") or ():
            _scrub_stacktrace(thread)
    breadcrumbs = event.get("breadcrumbs")
    if isinstance(breadcrumbs, dict):
        # Already reduced by ``before_breadcrumb``; again here in case one slipped past it.
        values = [
            scrub_breadcrumb(crumb, crumb.get("message"))
            for crumb in breadcrumbs.get("values") or ()
            if isinstance(crumb, dict)
        ]
        event["breadcrumbs"] = {"values": values}
    for span in event.get("spans") or ():
        if isinstance(span, dict):
            _scrub_span(span)
    tags = event.get("tags")
    tags = dict(tags) if isinstance(tags, Mapping) else {}
    for name in ("request_id", "route"):
        if context.get(name):
            tags[name] = context[name]
    if tags:
        event["tags"] = tags
    route = context.get("route")
    if route:
        event["transaction"] = route
        event["transaction_info"] = {"source": "route"}
    elif event.get("type") == "transaction":
        # A transaction needs a name; the raw path may hold ids or a query string.
        event["transaction"] = "<unmatched route>"
        event["transaction_info"] = {"source": "custom"}
    else:
        event.pop("transaction", None)
        event.pop("transaction_info", None)
    user_id = context.get("user_id")
    if user_id:
        # An opaque id only: no email, name or IP address.
        event["user"] = {"id": user_id}
    return event


def _scrub_span(span: Event) -> None:
    span["data"] = safe_fields(span.get("data"))
    description = span.get("description")
    if isinstance(description, str):
        # Outgoing URLs may carry a query string; the path is enough to name the call.
        span["description"] = description.partition("?")[0][:_MAX_VALUE_CHARS]
    span.pop("tags", None)
