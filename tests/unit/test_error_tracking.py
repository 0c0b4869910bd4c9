"""Error-tracking settings and the scrubber that decides what an error report may carry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatrt.observability.scrub import SAFE_HEADERS, scrub_breadcrumb, scrub_event
from chatrt.settings import Settings, SettingsError

DSN = "https://0123abcd@o1.ingest.example.io/42"
MARK = "secret-marker"


def test_sentry_is_off_by_default() -> None:
    sentry = Settings.from_env({}).sentry
    assert sentry.dsn is None
    assert sentry.environment is None
    assert sentry.traces_sample_rate == 0.0


def test_sentry_settings_are_read() -> None:
    sentry = Settings.from_env(
        {
            "CHATRT_SENTRY_DSN": DSN,
            "CHATRT_SENTRY_ENVIRONMENT": "staging",
            "CHATRT_SENTRY_TRACES_SAMPLE_RATE": "0.25",
        }
    ).sentry
    assert (sentry.dsn, sentry.environment, sentry.traces_sample_rate) == (DSN, "staging", 0.25)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHATRT_SENTRY_DSN", "ftp://key@host/1"),
        ("CHATRT_SENTRY_DSN", f"https://o1.ingest.example.io/{MARK}"),  # no key
        ("CHATRT_SENTRY_DSN", f"https://{MARK}@o1.ingest.example.io/"),  # no project
        ("CHATRT_SENTRY_DSN", f"https://{MARK}@o1.ingest.example.io:port/1"),
        ("CHATRT_SENTRY_ENVIRONMENT", "has space"),
        ("CHATRT_SENTRY_ENVIRONMENT", "a/b"),
        ("CHATRT_SENTRY_ENVIRONMENT", "x" * 65),
        ("CHATRT_SENTRY_TRACES_SAMPLE_RATE", "1.5"),
        ("CHATRT_SENTRY_TRACES_SAMPLE_RATE", "-0.1"),
        ("CHATRT_SENTRY_TRACES_SAMPLE_RATE", "nan"),
    ],
)
def test_bad_sentry_settings_name_the_variable_without_echoing_a_dsn(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    assert str(caught.value).startswith(f"{name}:")
    assert MARK not in str(caught.value)


def _event() -> dict[str, Any]:
    """An event as sentry-sdk builds it, with something secret in every place it can be."""
    return {
        "level": "error",
        "logger": "chatrt.errors",
        "logentry": {
            "message": "unhandled error %s",
            "params": [MARK],
            "formatted": f"unhandled error {MARK}",
        },
        "message": MARK,
        "exception": {
            "values": [
                {
                    "type": "ValueError",
                    "value": f"bad text {MARK}",
                    "module": "builtins",
                    "mechanism": {"type": "logging", "handled": True, "data": {"x": MARK}},
                    "stacktrace": {
                        "frames": [
                            {
                                "filename": "chatrt/x.py",
                                "function": "handler",
                                "lineno": 12,
                                "vars": {"password": MARK},
                            }
                        ]
                    },
                }
            ]
        },
        "threads": {"values": [{"stacktrace": {"frames": [{"vars": {"t": MARK}}]}}]},
        "request": {
            "method": "POST",
            "url": f"http://host/api/{MARK}",
            "query_string": f"q={MARK}",
            "data": {"content": MARK},
            "cookies": {"session": MARK},
            "env": {"REMOTE_ADDR": "10.0.0.1"},
            "headers": {
                "Content-Type": "application/json",
                "User-Agent": "browser",
                "Cookie": f"session={MARK}",
                "Authorization": f"Bearer {MARK}",
                "X-Api-Key": MARK,
                "X-CSRFToken": MARK,
                "X-Forwarded-For": "10.0.0.1",
            },
        },
        "user": {"id": "1", "email": MARK, "ip_address": "10.0.0.1"},
        "extra": {
            "message_id": "m-1",
            "path": f"/api/{MARK}",
            "error": f"ValueError('{MARK}')",
            "sys.argv": ["chatrt", MARK],
            "status": 500,
            "user_id": {"nested": MARK},
        },
        "transaction": f"/api/{MARK}",
        "breadcrumbs": {
            "values": [
                {
                    "type": "log",
                    "category": "chatrt.generation",
                    "level": "info",
                    "message": "generation ended",
                    "data": {"message_id": "m-1", "ttft_ms": 9, "content": MARK},
                },
                {
                    "type": "http",
                    "category": "httplib",
                    "message": MARK,
                    "data": {"url": f"http://x/?k={MARK}", "method": "GET", "status_code": 200},
                },
            ]
        },
        "spans": [{"op": "http.client", "description": f"GET http://x/a?k={MARK}", "data": {}}],
    }


CONTEXT = {"request_id": "rid-1", "route": "/api/conversations/{conversation_id}", "user_id": "u-1"}


def test_an_event_keeps_type_stack_and_our_ids_only() -> None:
    event = scrub_event(_event(), CONTEXT)

    assert MARK not in json.dumps(event)
    exception = event["exception"]["values"][0]
    assert exception["type"] == "ValueError"
    assert exception["stacktrace"]["frames"][0] == {
        "filename": "chatrt/x.py",
        "function": "handler",
        "lineno": 12,
    }
    assert event["logentry"] == {"message": "unhandled error %s"}
    assert event["request"] == {
        "method": "POST",
        "headers": {"Content-Type": "application/json", "User-Agent": "browser"},
    }
    assert event["user"] == {"id": "u-1"}
    assert event["extra"] == {"message_id": "m-1", "status": 500}
    assert event["tags"] == {"request_id": "rid-1", "route": CONTEXT["route"]}
    assert event["transaction"] == CONTEXT["route"]
    assert event["breadcrumbs"]["values"] == [
        {
            "type": "log",
            "category": "chatrt.generation",
            "level": "info",
            "message": "generation ended",
            "data": {"message_id": "m-1", "ttft_ms": 9},
        },
        {"type": "http", "category": "httplib", "data": {"method": "GET", "status_code": 200}},
    ]
    assert event["spans"][0]["description"] == "GET http://x/a"


def test_outside_a_request_there_is_no_user_route_or_transaction() -> None:
    event = scrub_event(_event(), {"request_id": None, "route": None, "user_id": None})
    assert "user" not in event
    assert "transaction" not in event
    assert "tags" not in event


def test_a_transaction_without_a_route_keeps_a_neutral_name() -> None:
    event = scrub_event({"type": "transaction", "transaction": f"/x/{MARK}"}, {})
    assert event["transaction"] == "<unmatched route>"


def test_other_loggers_lose_their_message_text() -> None:
    event = _event()
    event["logger"] = "uvicorn.error"
    assert scrub_event(event, {})["logentry"] == {"message": "log record from uvicorn.error"}


def test_a_breadcrumb_from_our_logger_keeps_the_format_string_not_the_arguments() -> None:
    crumb = {"type": "log", "category": "chatrt.ws", "message": f"frame {MARK}", "data": {}}
    assert scrub_breadcrumb(crumb, "frame %s") == {
        "type": "log",
        "category": "chatrt.ws",
        "message": "frame %s",
    }
    other = {"type": "log", "category": "httpx", "message": f"GET {MARK}"}
    assert scrub_breadcrumb(other, f"GET {MARK}") == {"type": "log", "category": "httpx"}


def test_the_header_allow_list_holds_no_credentials() -> None:
    for header in ("cookie", "authorization", "x-api-key", "x-csrftoken", "x-forwarded-for"):
        assert header not in SAFE_HEADERS
