"""Log formatting: one JSON object per line (or readable text), each with the request id.

``chatrt serve`` hands :func:`log_config` to uvicorn, so uvicorn's own loggers, the
libraries' and ours all write through one handler in one format. Fields come from the
record's ``extra``; callers pass ids, sizes and timings there, never message text,
passwords, cookies or keys.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from chatrt.observability.context import request_id
from chatrt.settings import LogSettings

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    # uvicorn repeats its message with ANSI colours here.
    "color_message",
}

# Chatty at INFO (a line per upstream request) and their debug output carries headers.
QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "openai")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    rid = getattr(record, "request_id", None) or request_id.get()
    if rid is not None:
        fields["request_id"] = rid
    for key, value in vars(record).items():
        if key not in _RESERVED and key != "request_id" and not key.startswith("_"):
            fields[key] = value
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id"?, ...extra, "exception"?}``."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(_fields(record))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``12:00:00.123 INFO    chatrt.access: GET /api/... 200 key=value ...``, for terminals."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        line = f"{moment} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = _fields(record).items()
        extras = " ".join(f"{key}={value}" for key, value in fields if value is not None)
        if extras:
            line = f"{line}  {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


class DropUvicornWebSocketLines(logging.Filter):
    """uvicorn logs each WebSocket handshake (with its raw path and query) and its opening;
    the request log's one line per socket replaces them."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        if not isinstance(msg, str):
            return True
        return not (msg.startswith('%s - "WebSocket ') or msg in _WS_NOISE)


_WS_NOISE = frozenset({"connection open", "connection closed"})


def log_config(settings: LogSettings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn's ``log_config``.

    uvicorn's access log is switched off (``access_log=False`` as well): the request log
    middleware writes one line per request with the route template instead of the raw path.
    """
    formatter = JsonFormatter if settings.format == "json" else TextFormatter
    level = settings.level.upper()
    # Debug output of uvicorn and the websockets library prints handshake headers
    # (cookies): ``debug`` applies to chatrt's own loggers only.
    others = "INFO" if level == "DEBUG" else level
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"chatrt": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "filters": {
            "no_ws_lines": {
                "()": f"{__name__}.{DropUvicornWebSocketLines.__qualname__}",
            }
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "chatrt",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": others},
        "loggers": {
            "chatrt": {"level": level},
            "uvicorn": {"handlers": [], "level": others, "propagate": True},
            "uvicorn.error": {
                "handlers": [],
                "level": others,
                "filters": ["no_ws_lines"],
                "propagate": True,
            },
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            **{name: {"level": "WARNING"} for name in QUIET_LOGGERS},
        },
    }
