"""Log settings, formatters and request ids."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from chatrt.observability.context import accept_or_new, request_id
from chatrt.observability.logs import (
    DropUvicornWebSocketLines,
    JsonFormatter,
    TextFormatter,
    log_config,
)
from chatrt.settings import LogSettings, Settings, SettingsError

PG_URL = "postgresql://chat:pw@db.example:5432/chatrt"


def test_log_format_defaults_to_text_on_the_embedded_default_and_json_elsewhere() -> None:
    assert Settings.from_env({}).log == LogSettings(format="text", level="info")
    production = Settings.from_env({"CHATRT_DATABASE_URL": PG_URL})
    assert production.log == LogSettings(format="json", level="info")
    chosen = Settings.from_env({"CHATRT_LOG_FORMAT": "JSON", "CHATRT_LOG_LEVEL": "Warning"})
    assert chosen.log == LogSettings(format="json", level="warning")


@pytest.mark.parametrize(
    ("name", "value"), [("CHATRT_LOG_FORMAT", "xml"), ("CHATRT_LOG_LEVEL", "loud")]
)
def test_bad_log_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        (b"abc-123_X.y", True),
        (b"a" * 64, True),
        (b"a" * 65, False),
        (b"", False),
        (b"has space", False),
        (b'quote"', False),
        (b"new\nline", False),
        ("ไทย".encode(), False),
        (None, False),
    ],
)
def test_request_ids_are_taken_only_when_sane(raw: bytes | None, kept: bool) -> None:
    rid = accept_or_new(raw)
    if kept:
        assert raw is not None
        assert rid == raw.decode()
    else:
        assert len(rid) == 32
        assert rid.isalnum()
        assert rid.encode() != raw


def _record(msg: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "chatrt.test", "levelno": 20, "levelname": "INFO"})
    record.msg, record.args = msg, args
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_fields_and_the_current_request_id() -> None:
    token = request_id.set("req-1")
    try:
        line = JsonFormatter().format(_record("hello %s", "world", status=200, route="/x/{id}"))
    finally:
        request_id.reset(token)
    payload = json.loads(line)
    assert payload["message"] == "hello world"
    assert payload["level"] == "info"
    assert payload["logger"] == "chatrt.test"
    assert payload["request_id"] == "req-1"
    assert payload["status"] == 200
    assert payload["route"] == "/x/{id}"
    assert payload["ts"].endswith("Z")
    assert "\n" not in line


def test_json_lines_keep_tracebacks_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]
    assert "request_id" not in json.loads(line)  # outside any request


def test_text_lines_are_readable() -> None:
    line = TextFormatter().format(
        _record("GET %s 200", "/health/live", duration_ms=1.5, user_id=None)
    )
    assert "INFO" in line
    assert "chatrt.test: GET /health/live 200" in line
    assert "duration_ms=1.5" in line
    assert "user_id" not in line


def test_uvicorn_websocket_lines_are_dropped_and_others_kept() -> None:
    drop = DropUvicornWebSocketLines()
    assert not drop.filter(_record('%s - "WebSocket %s" [accepted]', "127.0.0.1:1", "/ws?x=1"))
    assert not drop.filter(_record("connection open"))
    assert drop.filter(_record("Started server process [%d]", 1))


def test_the_config_replaces_uvicorns_access_log() -> None:
    config = log_config(LogSettings(format="json", level="info"))
    assert config["loggers"]["uvicorn.access"]["propagate"] is False
    assert config["loggers"]["uvicorn.access"]["handlers"] == []
    assert config["root"]["handlers"] == ["stderr"]
    assert config["formatters"]["chatrt"]["()"].endswith("JsonFormatter")


def test_debug_applies_to_chatrt_only() -> None:
    """Library debug output prints WebSocket handshake headers, cookies included."""
    config = log_config(LogSettings(format="text", level="debug"))
    assert config["loggers"]["chatrt"]["level"] == "DEBUG"
    assert config["root"]["level"] == "INFO"
    assert config["loggers"]["uvicorn.error"]["level"] == "INFO"
    assert config["loggers"]["openai"]["level"] == "WARNING"
