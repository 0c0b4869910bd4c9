"""The request log and generation log, in process, on both backends."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chatrt.observability.logs import JsonFormatter
from tests.support.client import Client
from tests.support.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class Lines(logging.Handler):
    """Formats each record as ``chatrt serve`` would, at the moment it is logged."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))

    def of(self, logger: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["logger"] == logger]


@pytest.fixture
def logged() -> Iterator[Lines]:
    handler = Lines()
    chatrt = logging.getLogger("chatrt")
    level = chatrt.level
    chatrt.addHandler(handler)
    chatrt.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        chatrt.removeHandler(handler)
        chatrt.setLevel(level)


async def test_a_sane_request_id_is_echoed_and_logged(alice: Client, logged: Lines) -> None:
    response = await alice.get("/api/auth/me", headers={"x-request-id": "trace-42.a_b"})
    assert response.headers["x-request-id"] == "trace-42.a_b"
    line = logged.of("chatrt.access")[-1]
    assert line["request_id"] == "trace-42.a_b"
    assert line["route"] == "/api/auth/me"
    assert line["status"] == 200
    assert alice.user is not None
    assert line["user_id"] == alice.user["id"]
    assert line["response_bytes"] == len(response.content)
    assert line["duration_ms"] >= 0


async def test_an_insane_request_id_is_replaced(
    clients: Callable[[], Client], logged: Lines
) -> None:
    client = clients()
    for bad in ("has space", "x" * 65, "semi;colon"):
        response = await client.get("/health/live", headers={"x-request-id": bad})
        rid = response.headers["x-request-id"]
        assert rid != bad
        assert len(rid) == 32
        assert logged.of("chatrt.access")[-1]["request_id"] == rid
    plain = await client.get("/health/live")
    assert len(plain.headers["x-request-id"]) == 32
    assert plain.headers["x-request-id"] != rid


async def test_routes_are_templates_and_anonymous_lines_have_no_user(
    alice: Client, clients: Callable[[], Client], logged: Lines
) -> None:
    conversation = await alice.create_conversation()
    await alice.get(f"/api/conversations/{conversation['id']}/messages", params={"limit": 5})
    await clients().get("/api/conversations")
    await alice.get(f"/nothing/here/{conversation['id']}")
    access = logged.of("chatrt.access")
    messages, anonymous, unrouted = access[-3:]
    assert messages["route"] == "/api/conversations/{conversation_id}/messages"
    assert messages["method"] == "GET"
    assert messages["status"] == 200
    assert anonymous["status"] == 401
    assert "user_id" not in anonymous
    assert unrouted["status"] == 404
    assert unrouted["route"] is None
    assert all(conversation["id"] not in json.dumps(line) for line in access)
    assert all("limit" not in json.dumps(line) for line in access)


async def test_a_generation_logs_its_end_under_the_sending_request(
    alice: Client, logged: Lines
) -> None:
    conversation = await alice.create_conversation()
    sent = await alice.post(
        f"/api/conversations/{conversation['id']}/messages",
        json={"content": "a question"},
        headers={"x-request-id": "send-1"},
    )
    assert sent.status_code == 202
    answer = sent.json()["assistant_message"]
    await alice.wait_finished(conversation["id"], answer["id"])

    def ended() -> list[dict[str, Any]]:
        return [
            line
            for line in logged.of("chatrt.generation")
            if line["message"] == "generation ended" and line["message_id"] == answer["id"]
        ]

    async def logged_end() -> bool:
        return bool(ended())

    await wait_until(logged_end)
    (line,) = ended()
    assert line["request_id"] == "send-1"
    assert line["conversation_id"] == conversation["id"]
    assert alice.user is not None
    assert line["user_id"] == alice.user["id"]
    assert line["status"] == "complete"
    assert line["recorded"] is True
    assert line["provider"] == "demo"
    assert isinstance(line["response_ms"], int)
    assert isinstance(line["ttft_ms"], int)
    assert line["completion_tokens"] > 0
    assert "a question" not in json.dumps(line)
