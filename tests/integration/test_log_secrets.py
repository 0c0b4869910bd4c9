"""Secrets never reach the logs: a real ``chatrt serve`` process, its whole output read back.

Known marker strings go through every route family and the WebSocket (passwords, message
text both ways, titles, system prompts, cookies, CSRF tokens, Authorization, the provider's
API key, query strings, a forged request id). The process's combined stdout and stderr,
uvicorn's lines included, must contain none of them, and every line must be one JSON object.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Backend
from tests.realtime.conftest import REALTIME_ENV
from tests.support.client import Client
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.instances import Instance
from tests.support.ws import WsClient, done_of

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

MARK = "SECRETMARK"
EMAIL = f"user-{MARK.lower()}@example.com"
PASSWORD = f"pw-{MARK}-correct"
WRONG_PASSWORD = f"pw-{MARK}-wrong"
TITLE = f"title-{MARK}"
RENAMED = f"renamed-{MARK}"
SYSTEM_PROMPT = f"system-{MARK}"
REST_CONTENT = f"rest-content-{MARK}"
WS_CONTENT = f"ws-content-{MARK}"
ANSWER = [f"answer-{MARK} ", "and more"]
COOKIE = f"cookie-{MARK}"
FORGED_CSRF = f"csrf-{MARK}"
AUTHORIZATION = f"Bearer auth-{MARK}"
API_KEY = f"sk-{MARK}-provider-key"
QUERY = f"query-{MARK}"
FORGED_REQUEST_ID = f"rid {MARK}!"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def instance(backend: Backend, fake: FakeOpenAI, tmp_path: Path) -> Iterator[Instance]:
    providers = [
        {"name": name, "base_url": fake.base_url(name), "api_key": API_KEY, "model": name}
        for name in ("broken", "primary")
    ]
    env = backend.defaults | backend.env | REALTIME_ENV
    env |= {
        "CHATRT_PROVIDERS": json.dumps(providers),
        "CHATRT_LOG_FORMAT": "json",
        # The most talkative setting: whatever info would print, debug prints too.
        "CHATRT_LOG_LEVEL": "debug",
    }
    # A failing first provider exercises the fallback path with the key in use.
    fake.script("broken", Script(status=503))
    fake.script("primary", Script(tokens=ANSWER))
    with Instance(env, tmp_path, "secrets") as served:
        yield served


@pytest.fixture
async def http(instance: Instance) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=instance.url, timeout=30) as client:
        yield client


async def _exercise(instance: Instance, http: httpx.AsyncClient) -> dict[str, str]:
    """Every route family and the socket, with markers; the session secrets it saw."""
    client = Client(http)
    await client.register(EMAIL, PASSWORD)
    assert (await client.post("/api/auth/logout")).status_code == 204
    wrong = await client.post("/api/auth/login", json={"email": EMAIL, "password": WRONG_PASSWORD})
    assert wrong.status_code == 401
    right = await client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert right.status_code == 200
    assert (
        await client.post("/api/auth/register", json={"email": EMAIL, "password": PASSWORD})
    ).status_code == 409
    secrets = {"session": client.session, "csrftoken": http.cookies["csrftoken"]}

    titled = await client.create_conversation(title=TITLE, system_prompt=SYSTEM_PROMPT)
    renamed = await client.request(
        "PATCH", f"/api/conversations/{titled['id']}", json={"title": RENAMED}
    )
    assert renamed.status_code == 200
    sent = await client.post(
        f"/api/conversations/{titled['id']}/messages",
        json={"content": REST_CONTENT},
        headers={"x-request-id": "probe-send"},
    )
    assert sent.status_code == 202
    answer = sent.json()["assistant_message"]
    finished = await client.wait_finished(titled["id"], answer["id"])
    assert finished["content"] == "".join(ANSWER)
    stream = await http.get(
        f"/api/conversations/{titled['id']}/messages/{answer['id']}/stream",
        headers={"authorization": AUTHORIZATION},
    )
    assert stream.status_code == 200
    assert MARK in stream.text

    # Secrets in places a careless log would pick up: headers, cookies, query, bad bodies.
    raw_cookie = f"session={client.session}; csrftoken={secrets['csrftoken']}; tracker={COOKIE}"
    me = await http.get(
        "/api/auth/me",
        headers={"cookie": raw_cookie, "authorization": AUTHORIZATION, "x-api-key": API_KEY},
    )
    assert me.status_code == 200
    forged = await client.post(
        "/api/conversations", json={"title": TITLE}, headers={"x-csrftoken": FORGED_CSRF}
    )
    assert forged.status_code == 403
    assert (await client.get("/api/conversations", params={"cursor": QUERY})).status_code == 422
    too_long = await client.post("/api/conversations", json={"title": TITLE * 100})
    assert too_long.status_code == 422
    broken_json = await client.post(
        "/api/conversations",
        content=b'{"title": "' + TITLE.encode() + b'"',
        headers={"content-type": "application/json"},
    )
    assert broken_json.status_code == 400
    odd_id = await http.get("/health/live", headers={"x-request-id": FORGED_REQUEST_ID})
    assert odd_id.headers["x-request-id"] != FORGED_REQUEST_ID

    # The WebSocket: a send into an untitled conversation (so the model names it too).
    untitled = await client.create_conversation()
    socket = await WsClient.connect(instance.url, client.session)
    try:
        await socket.send({"type": "subscribe", "conversation_id": untitled["id"]})
        await socket.recv_until(lambda f: f["type"] == "subscribed")
        await socket.send(f'{{"type": "send", "content": "{WS_CONTENT}"}}')  # malformed
        await socket.recv_until(lambda f: f["type"] == "error")
        await socket.send(
            {
                "type": "send",
                "conversation_id": untitled["id"],
                "content": WS_CONTENT,
                "client_message_id": "ws-1",
            }
        )
        created = await socket.recv_until(
            lambda f: f["type"] == "message.created" and f["message"]["role"] == "assistant"
        )
        assistant_id = created[-1]["message"]["id"]
        done = await socket.recv_until(done_of(assistant_id))
        assert done[-1]["message"]["content"] == "".join(ANSWER)
    finally:
        await socket.close()
    return secrets


def _lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text().splitlines():
        if raw.strip():
            line = json.loads(raw)  # every line of the process is one JSON object
            assert isinstance(line, dict), raw
            lines.append(line)
    return lines


async def test_no_secret_reaches_the_logs(instance: Instance, http: httpx.AsyncClient) -> None:
    secrets = await _exercise(instance, http)
    assert instance.terminate() in (0, -15)
    text = instance.log_path.read_text()
    for name, secret in secrets.items():
        assert secret not in text, name
    for marker in (MARK, MARK.lower(), API_KEY, AUTHORIZATION, COOKIE, EMAIL):
        assert marker not in text, marker

    lines = _lines(instance.log_path)
    assert any(line["message"] == "Application shutdown complete." for line in lines)
    access = [line for line in lines if line["logger"] == "chatrt.access"]
    assert len(access) >= 15
    for line in access:
        assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", line["request_id"]), line
        assert isinstance(line["status"], int), line
        assert line["route"] is None or not UUID.search(line["route"]), line
    routes = {(line["method"], line["route"], line["status"]) for line in access}
    assert ("POST", "/api/auth/login", 401) in routes
    assert (
        "GET",
        "/api/conversations/{conversation_id}/messages/{message_id}/stream",
        200,
    ) in routes
    assert ("PATCH", "/api/conversations/{conversation_id}", 200) in routes
    sockets = [line for line in access if line.get("websocket")]
    assert [(s["route"], s["status"]) for s in sockets] == [("/ws", 101)]
    assert sockets[0]["close_code"] is not None
    assert "user_id" in sockets[0]

    ended = [line for line in lines if line["message"] == "generation ended"]
    assert len(ended) == 2
    by_request = {line["request_id"]: line for line in ended}
    assert "probe-send" in by_request
    assert sockets[0]["request_id"] in by_request
    for line in ended:
        assert line["status"] == "complete"
        assert line["provider"] == "primary"
        assert line["completion_tokens"] > 0
        assert line["ttft_ms"] is not None
