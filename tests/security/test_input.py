"""Hostile input: oversized bodies and frames, SQL- and HTML-looking text, NUL, and the logs.

- A body over ``CHATRT_MAX_BODY_BYTES`` on any unsafe route (declared or chunked) gets 413
  ``payload_too_large``; an oversized WebSocket frame closes the socket with 1009; the
  instance keeps serving.
- Text that looks like SQL, HTML, format strings, SSE framing or JSON, and unusual Unicode,
  stored as titles, system prompts and message content, comes back byte for byte over REST,
  the WebSocket and Server-Sent Events, and a model answer made of it streams back exactly
  (the same deltas over SSE as over the WebSocket, joined equal to the stored answer).
- U+0000 (which PostgreSQL text cannot hold) is refused with 422 / an ``error`` frame on
  both backends, never a 500; sent by the model, it is dropped and the answer completes.
- A real ``chatrt serve`` fed all of this at debug level writes no password, session id,
  CSRF token, API key or message text into any log line.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from litestar.routes import HTTPRoute

from chatrt.app import create_app
from chatrt.errors import MESSAGES
from chatrt.settings import Settings
from tests.conftest import Backend
from tests.realtime.conftest import REALTIME_ENV, Live, providers_env, start_live
from tests.support.client import PASSWORD, UNSAFE, Client, new_email
from tests.support.evidence import Evidence
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.instances import Instance
from tests.support.sse import SseEvent, read_sse, sse_deltas
from tests.support.wait import wait_until
from tests.support.ws import WsClient, deltas_of, done_of

pytestmark = [pytest.mark.security, pytest.mark.anyio]

MAX_BODY = 65_536  # the suite's CHATRT_MAX_BODY_BYTES (tests/conftest.py)
MAX_FRAME = 65_536  # CHATRT_WS_MAX_FRAME_BYTES, its default
HOSTILE = [
    "'; DROP TABLE messages; --",
    "Robert'); DROP TABLE users;--",
    '" OR "1"="1',
    "1; SELECT pg_sleep(5)",
    "%s %d %(x)s {0} {} $1 ? :name",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "&lt;b&gt; &amp; &#x27; &#0;",
    "]]><!-- --> </textarea>",
    "\\x00 \\u0000 \\n \\",
    "สวัสดีครับ ภาษาไทย",
    "👩🏽‍💻🚀 emoji",
    "e\u0301 zero\u200bwidth \u202eright-to-left",
    "שלום مرحبا",
    "line1\r\nline2\ttab\u2028\u2029\u0085end",
    "event: message.done\ndata: {}\n\n",
    '{"type":"message.done","message":null}',
    "${jndi:ldap://x/a} {{7*7}}",
    "   padded   ",
]
ANSWER = "".join(HOSTILE)


def _unsafe_routes(tmp_path: Path) -> list[tuple[str, str]]:
    settings = Settings.from_env({"CHATRT_DATABASE_URL": f"sqlite:///{tmp_path}/r.sqlite3"})
    return sorted(
        (method, route.path)
        for route in create_app(settings).routes
        if isinstance(route, HTTPRoute)
        for method in route.methods & UNSAFE
    )


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"] == MESSAGES[code][0]


@pytest.fixture
async def live(backend: Backend, fake: FakeOpenAI) -> AsyncIterator[Live]:
    # The answer is the hostile strings, one per delta, after a pause that lets an SSE
    # reader attach while it is still streaming.
    fake.script("echo", Script(tokens=HOSTILE, first_token_delay_s=1.0))
    env = {
        "CHATRT_PROVIDERS": providers_env(fake, "echo"),
        "CHATRT_WS_FRAME_BURST": "500",
    }
    async for running in start_live(backend, **env):
        yield running


async def _healthy(live: Live, client: Client) -> None:
    async with httpx.AsyncClient(base_url=live.url) as http:
        assert (await http.get("/health/ready")).status_code == 200
    assert (await client.get("/api/auth/me")).status_code == 200
    socket = await live.ws(client)
    await socket.send({"type": "ping"})
    assert await socket.recv() == {"type": "pong"}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_oversized_bodies_and_frames_are_refused(
    live: Live, tmp_path: Path, evidence: Evidence
) -> None:
    alice = await live.user()
    conversation = await alice.create_conversation()
    message = str(conversation["id"])  # any id: the size is checked first
    padding = "x" * MAX_BODY
    oversized = json.dumps({"title": padding}).encode()
    tried = 0
    for method, template in _unsafe_routes(tmp_path):
        path = template.replace("{conversation_id:str}", conversation["id"])
        path = path.replace("{message_id:str}", message)
        response = await alice.request(
            method, path, content=oversized, headers={"content-type": "application/json"}
        )
        _assert_error(response, 413, "payload_too_large")
        tried += 1

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": "'
        for _ in range(MAX_BODY // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    for path in ("/api/conversations", "/api/auth/login", "/api/auth/register"):
        chunked = await alice.request(
            "POST", path, content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in chunked.request.headers
        _assert_error(chunked, 413, "payload_too_large")
        tried += 1
    await _healthy(live, alice)

    frames = {
        "text just over the limit": json.dumps({"type": "ping", "pad": "x" * MAX_FRAME}),
        "send with huge content": json.dumps(
            {"type": "send", "conversation_id": conversation["id"], "content": padding}
        ),
        "binary over the limit": b"x" * (MAX_FRAME + 1),
        "far over the limit": "x" * (MAX_FRAME * 8),
    }
    for what, frame in frames.items():
        socket = await live.ws(alice)
        await socket.connection.send(frame)
        assert await socket.close_code() == 1009, what
        tried += 1
    # Under the frame limit but over the content limit: an error frame, the socket lives.
    socket = await live.ws(alice)
    long = {"type": "send", "conversation_id": conversation["id"], "content": "x" * 3000}
    await socket.send(long)
    error = await socket.recv()
    assert (error["type"], error["code"], error["ref"]) == ("error", "content_too_long", "send")
    await socket.send({"type": "ping"})
    assert await socket.recv() == {"type": "pong"}
    await _healthy(live, alice)
    assert await alice.history(conversation["id"]) == [], "nothing oversized was stored"
    evidence.record("oversized_input", inputs_tried=tried + 1, accepted=0, instance_down=0)


async def test_nul_is_refused_alike_on_both_backends(
    live: Live, fake: FakeOpenAI, evidence: Evidence
) -> None:
    alice = await live.user()
    conversation = await alice.create_conversation(title="plain")
    cid = conversation["id"]
    nul = "before\u0000after"
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/conversations", {"title": nul}),
        ("POST", "/api/conversations", {"system_prompt": nul}),
        ("POST", "/api/conversations", {"model": nul}),
        ("PATCH", f"/api/conversations/{cid}", {"title": nul}),
        ("POST", f"/api/conversations/{cid}/messages", {"content": nul}),
        ("POST", f"/api/conversations/{cid}/messages", {"content": "x", "client_message_id": nul}),
        ("POST", "/api/auth/register", {"email": f"a{nul}@example.com", "password": PASSWORD}),
        ("POST", "/api/auth/register", {"email": new_email(), "password": PASSWORD,
                                        "display_name": nul}),
        ("POST", "/api/auth/login", {"email": f"a{nul}@example.com", "password": PASSWORD}),
    ]  # fmt: skip
    for method, path, body in attempts:
        response = await alice.request(method, path, json=body)
        _assert_error(response, 422, "validation_error")
    socket = await live.ws(alice)
    await socket.send({"type": "send", "conversation_id": cid, "content": nul})
    error = await socket.recv()
    assert (error["type"], error["code"], error["ref"]) == ("error", "bad_frame", "send")
    await socket.send({"type": "ping"})
    assert await socket.recv() == {"type": "pong"}
    assert await alice.history(cid) == []
    assert (await alice.get(f"/api/conversations/{cid}")).json()["conversation"]["title"] == "plain"

    # A model may send U+0000 too: the answer (and the title made from it) still completes.
    fake.script("echo", Script(tokens=["be\u0000fore ", "\u0000", "after"]))
    untitled = await alice.create_conversation()
    await socket.send({"type": "subscribe", "conversation_id": untitled["id"]})
    await socket.recv_until(lambda f: f["type"] == "subscribed")
    sent = await alice.send(untitled["id"], "say it")
    answer = sent.json()["assistant_message"]["id"]
    done = (await socket.recv_until(done_of(answer)))[-1]["message"]
    assert (done["status"], done["content"]) == ("complete", "before after")
    assert "".join(f["delta"] for f in deltas_of(socket.frames, answer)) == "before after"
    assert (await alice.history(untitled["id"]))[0]["content"] == "before after"

    async def titled() -> bool:
        read = await alice.get(f"/api/conversations/{untitled['id']}")
        return read.json()["conversation"]["title"] is not None

    await wait_until(titled, within_s=20)
    title = (await alice.get(f"/api/conversations/{untitled['id']}")).json()["conversation"]
    assert "\u0000" not in title["title"]
    evidence.record("nul_refused", backends=1, inputs_tried=len(attempts) + 2, server_errors=0)


async def test_hostile_text_comes_back_verbatim_everywhere(live: Live, evidence: Evidence) -> None:
    alice = await live.user()
    socket = await live.ws(alice)
    conversations: dict[str, str] = {}  # id -> the text it was made with
    for text in HOSTILE:
        created = await alice.create_conversation(title=text, system_prompt=text)
        assert (created["title"], created["system_prompt"]) == (text, text)
        conversations[created["id"]] = text
        await socket.send({"type": "subscribe", "conversation_id": created["id"]})
        await socket.recv_until(lambda f: f["type"] == "subscribed")

    streams: dict[str, list[SseEvent]] = {}
    async with anyio.create_task_group() as readers:
        for n, (cid, text) in enumerate(conversations.items()):
            if n % 2 == 0:
                sent = await alice.send(cid, text)
                assert sent.status_code == 202, sent.text
                assert sent.json()["user_message"]["content"] == text
                answer = sent.json()["assistant_message"]["id"]
            else:
                await socket.send(
                    {
                        "type": "send",
                        "conversation_id": cid,
                        "content": text,
                        "client_message_id": f"cm-{n}",
                    }
                )
                frames = await socket.recv_until(
                    lambda f, cid=cid: (
                        f["type"] == "message.created"
                        and f["message"]["conversation_id"] == cid
                        and f["message"]["role"] == "assistant"
                    )
                )
                answer = frames[-1]["message"]["id"]
            streams[answer] = []
            url = f"/api/conversations/{cid}/messages/{answer}/stream"
            readers.start_soon(read_sse, alice.http, url, streams[answer])
        # Frames read while sending may already hold some of the ends.
        with anyio.fail_after(30):
            while not all(any(done_of(a)(f) for f in socket.frames) for a in streams):
                await socket.recv(within_s=30)

    by_conversation = {cid: await alice.history(cid) for cid in conversations}
    checked = 0
    for answer, events in streams.items():
        # Tokens may be coalesced into fewer deltas; joined, they are the answer exactly.
        over_sse = [(d["seq"], d["delta"]) for d in sse_deltas(events)]
        over_ws = [(f["seq"], f["delta"]) for f in deltas_of(socket.frames, answer)]
        assert [seq for seq, _ in over_ws] == list(range(1, len(over_ws) + 1))
        assert over_sse == over_ws, "the same deltas over SSE and the WebSocket"
        assert "".join(delta for _, delta in over_ws) == ANSWER
        assert events[-1].name == "message.done"
        assert events[-1].data["message"]["content"] == ANSWER
        done = next(f for f in socket.frames if done_of(answer)(f))
        assert done["message"]["content"] == ANSWER
        checked += 4
    for cid, text in conversations.items():
        user, assistant = reversed(by_conversation[cid])
        assert (user["content"], assistant["content"]) == (text, ANSWER)
        created = [
            f["message"]["content"]
            for f in socket.frames
            if f["type"] == "message.created"
            and f["message"]["conversation_id"] == cid
            and f["message"]["role"] == "user"
        ]
        assert created == [text]
        read = (await alice.get(f"/api/conversations/{cid}")).json()["conversation"]
        assert (read["title"], read["system_prompt"]) == (text, text)
        updated = [
            f["conversation"]["title"]
            for f in socket.frames
            if f["type"] == "conversation.updated" and f["conversation"]["id"] == cid
        ]
        assert updated
        assert set(updated) == {text}
        checked += 6
    listed = (await alice.get("/api/conversations", params={"limit": 100})).json()["items"]
    assert {c["id"]: c["title"] for c in listed} == conversations
    # An update stores the text as sent, too.
    cid, text = next(iter(conversations.items()))
    patched = await alice.request("PATCH", f"/api/conversations/{cid}", json={"title": text * 2})
    assert patched.json()["conversation"]["title"] == text * 2
    checked += len(listed) + 1
    evidence.record(
        "hostile_text_verbatim",
        backends=1,
        inputs_tried=len(HOSTILE),
        values_checked=checked,
        altered=0,
    )


# -- the logs ----------------------------------------------------------------

MARK = "LEAKMARK"
API_KEY = f"sk-{MARK}-provider-key"
LOG_PASSWORD = f"pw-{MARK}-correct"


@pytest.fixture
def instance(postgres_backend: Backend, fake: FakeOpenAI, tmp_path: Path) -> Instance:
    providers = [
        {"name": "echo", "base_url": fake.base_url("echo"), "api_key": API_KEY, "model": "m"}
    ]
    env = postgres_backend.defaults | postgres_backend.env | REALTIME_ENV
    env |= {
        "CHATRT_PROVIDERS": json.dumps(providers),
        "CHATRT_LOG_FORMAT": "json",
        "CHATRT_LOG_LEVEL": "debug",
    }
    fake.script("echo", Script(tokens=[f"answer-{MARK} ", *HOSTILE]))
    return Instance(env, tmp_path, "hostile")


async def _feed(instance: Instance, http: httpx.AsyncClient) -> list[str]:
    """Every kind of hostile input, each carrying the marker; the secrets it saw."""
    client = Client(http)
    email = f"{MARK.lower()}@example.com"
    planted = f"planted-{MARK}"
    client.use_session(planted)
    await client.register(email, LOG_PASSWORD)
    assert client.session != planted
    wrong = {"email": email, "password": f"wrong-{MARK}"}
    assert (await client.post("/api/auth/login", json=wrong)).status_code == 401
    nul_login = {"email": f"{MARK}\u0000@example.com", "password": LOG_PASSWORD}
    assert (await client.post("/api/auth/login", json=nul_login)).status_code == 422
    right = {"email": email, "password": LOG_PASSWORD}
    assert (await client.post("/api/auth/login", json=right)).status_code == 200
    secrets = [client.session, http.cookies["csrftoken"], planted, LOG_PASSWORD, API_KEY]

    conversation = await client.create_conversation(title=f"{MARK} {HOSTILE[0]}")
    cid = conversation["id"]
    bad_bodies = [
        {"title": f"{MARK}\u0000"},
        {"title": MARK * 100},
        {"title": MARK, "is_admin": True},
        {"title": MARK * (MAX_BODY // len(MARK))},
    ]
    for body in bad_bodies:
        assert (await client.post("/api/conversations", json=body)).status_code in (413, 422)
    broken = b'{"title": "' + MARK.encode() + b'", '
    response = await client.post(
        "/api/conversations", content=broken, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    forged = await client.post(
        "/api/conversations", json={"title": MARK}, headers={"x-csrftoken": f"csrf-{MARK}"}
    )
    assert forged.status_code == 403
    sent = await client.send(cid, f"{MARK} {HOSTILE[5]}")
    assert sent.status_code == 202
    await client.wait_finished(cid, sent.json()["assistant_message"]["id"])

    socket = await WsClient.connect(instance.url, client.session)
    try:
        for frame in (
            f'{{"type": "send", "content": "{MARK}"}}',
            f'{{"type": "{MARK}"}}',
            f"not json {MARK}",
            json.dumps({"type": "send", "conversation_id": cid, "content": f"{MARK}\u0000"}),
        ):
            await socket.send(frame)
            assert (await socket.recv())["type"] == "error"
        await socket.send(json.dumps({"type": "ping", "pad": MARK * (MAX_FRAME // 8)}))
        assert await socket.close_code() == 1009
    finally:
        await socket.close()
    evil = await WsClient.connect(instance.url, client.session, origin=f"https://{MARK}.example")
    assert await evil.close_code() == 4403
    return secrets


async def test_no_secret_or_text_reaches_the_logs(instance: Instance, evidence: Evidence) -> None:
    with instance:
        async with httpx.AsyncClient(base_url=instance.url, timeout=30) as http:
            secrets = await _feed(instance, http)
        assert instance.terminate() in (0, -15)
    lines = [line for line in instance.log_path.read_text().splitlines() if line.strip()]
    assert len(lines) > 20
    leaks = []
    for raw in lines:
        assert isinstance(json.loads(raw), dict), raw  # one JSON object per line
        lowered = raw.lower()
        if MARK.lower() in lowered or any(s in raw for s in secrets):
            leaks.append(raw)
        # Not one of the hostile strings, as logged JSON would spell it.
        if any(json.dumps(h)[1:-1] in raw for h in HOSTILE[:9]):
            leaks.append(raw)
    assert leaks == []
    assert re.search(r'"status": ?4(13|22)', "\n".join(lines)), "the refusals were logged"
    evidence.record("logs_scanned", log_lines=len(lines), secrets_checked=len(secrets), leaks=0)
