"""Live streaming over the WebSocket on one instance, on both backends."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.realtime.conftest import Live
from tests.support.client import PASSWORD, Client
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.ws import WsClient, deltas_of, done_of

pytestmark = [pytest.mark.integration, pytest.mark.anyio]
MISSING = "3f1c7f3e-0000-4000-8000-000000000000"


async def _send(ws: WsClient, conversation_id: str, content: str, cmid: str | None = None) -> str:
    """Send over the socket; the assistant message id from its message.created frame."""
    await ws.send(
        {
            "type": "send",
            "conversation_id": conversation_id,
            "content": content,
            "client_message_id": cmid or uuid.uuid4().hex,
        }
    )
    frames = await ws.recv_until(
        lambda f: f["type"] == "message.created" and f["message"]["role"] == "assistant"
    )
    return str(frames[-1]["message"]["id"])


async def test_an_answer_streams_token_by_token_and_matches_history(
    live: Live, fake: FakeOpenAI
) -> None:
    fake.script("primary", Script(tokens=[f"ค{i} " for i in range(120)], delay_s=0.002))
    alice = await live.user()
    conversation = await alice.create_conversation()
    ws = await live.ws(alice)
    await ws.send({"type": "subscribe", "conversation_id": conversation["id"]})
    subscribed = await ws.recv()
    assert subscribed == {
        "type": "subscribed",
        "conversation_id": conversation["id"],
        "streaming": [],
    }
    message_id = await _send(ws, conversation["id"], "count in Thai")
    frames = await ws.recv_until(done_of(message_id))
    deltas = deltas_of(ws.frames, message_id)
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert all(d["conversation_id"] == conversation["id"] for d in deltas)
    done = frames[-1]["message"]
    joined = "".join(d["delta"] for d in deltas)
    assert joined == "".join(f"ค{i} " for i in range(120))
    assert done["content"] == joined
    assert done["status"] == "complete"
    assert done["ai_model"] == "model-primary"
    assert done["provider"] == "primary"
    assert done["usage_estimated"] is False
    assert done["completion_tokens"] > 0
    history = await alice.history(conversation["id"])
    assert history[0]["content"] == joined
    assert fake.bodies("primary")[0]["stream"] is True
    assert fake.bodies("primary")[0]["stream_options"] == {"include_usage": True}
    assert fake.bodies("primary")[0]["messages"][-1] == {"role": "user", "content": "count in Thai"}


async def test_the_sender_gets_both_created_frames_without_subscribing(live: Live) -> None:
    alice = await live.user()
    conversation = await alice.create_conversation()
    ws = await live.ws(alice)
    await ws.send(
        {
            "type": "send",
            "conversation_id": conversation["id"],
            "content": "hi",
            "client_message_id": "x",
        }
    )
    frames = await ws.recv_until(lambda f: f["type"] == "message.done")
    created = [f["message"]["role"] for f in frames if f["type"] == "message.created"]
    assert created == ["user", "assistant"]


async def test_a_rest_send_streams_to_subscribers_and_other_tabs_hear_updates(
    live: Live,
) -> None:
    alice = await live.user()
    conversation = await alice.create_conversation()
    watcher = await live.ws(alice)
    other_tab = await live.ws(alice)
    await watcher.send({"type": "subscribe", "conversation_id": conversation["id"]})
    await watcher.recv()
    response = await alice.send(conversation["id"], "name this chat")
    message_id = response.json()["assistant_message"]["id"]
    await watcher.recv_until(done_of(message_id))
    assert deltas_of(watcher.frames, message_id)
    # The other tab is not subscribed: it hears only list updates, among them the new title.
    titled = await other_tab.recv_until(
        lambda f: f["type"] == "conversation.updated" and f["conversation"]["title"] is not None
    )
    assert all(f["type"] == "conversation.updated" for f in titled)
    assert titled[-1]["conversation"]["title"]
    assert (
        await alice.request("DELETE", f"/api/conversations/{conversation['id']}")
    ).status_code == 204
    deleted = await other_tab.recv_until(lambda f: f["type"] == "conversation.deleted")
    assert deleted[-1]["conversation_id"] == conversation["id"]


async def test_someone_elses_conversation_cannot_be_followed(live: Live) -> None:
    alice, bob = await live.user(), await live.user()
    conversation = await alice.create_conversation()
    ws = await live.ws(bob)
    for frame in (
        {"type": "subscribe", "conversation_id": conversation["id"]},
        {"type": "send", "conversation_id": conversation["id"], "content": "hi"},
    ):
        await ws.send(frame)
        error = await ws.recv()
        assert error["type"] == "error"
        assert error["code"] == "conversation_not_found"
        assert error["ref"] == frame["type"]
    sent = await alice.send(conversation["id"], "private")
    await ws.send({"type": "resume", "message_id": sent.json()["assistant_message"]["id"]})
    assert (await ws.recv())["code"] == "message_not_found"
    await ws.send({"type": "ping"})
    assert await ws.recv() == {"type": "pong"}
    assert not [f for f in ws.frames if f["type"] == "message.delta"]


@pytest.mark.parametrize(
    ("raw", "ref"),
    [
        ("not json", None),
        ("[]", None),
        ('{"type": "launch"}', None),
        ('{"type": "subscribe"}', "subscribe"),
        ('{"type": "subscribe", "conversation_id": "nope"}', "subscribe"),
        (
            json.dumps({"type": "resume", "message_id": MISSING, "after_seq": -1}),
            "resume",
        ),
        (
            json.dumps({"type": "send", "conversation_id": MISSING, "content": ""}),
            "send",
        ),
        ('{"type": "ping", "extra": 1}', "ping"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_open(
    live: Live, raw: str, ref: str | None
) -> None:
    alice = await live.user()
    ws = await live.ws(alice)
    await ws.send(raw)
    error = await ws.recv()
    assert error["type"] == "error"
    assert error["code"] == "bad_frame"
    assert error["ref"] == ref
    assert error["retryable"] is False
    assert error["message"]
    await ws.send({"type": "ping"})
    assert await ws.recv() == {"type": "pong"}


async def test_errors_follow_the_sockets_language(live: Live) -> None:
    alice = await live.user()
    socket = await WsClient.connect(live.url, alice.session)
    live.sockets.append(socket)
    await socket.send("{")
    thai = await socket.recv()
    from websockets.asyncio.client import connect

    english = WsClient(
        await connect(
            live.url.replace("http", "ws") + "/ws",
            additional_headers={
                "cookie": f"session={alice.session}",
                "origin": "http://127.0.0.1:8000",
                "accept-language": "en",
            },
        )
    )
    live.sockets.append(english)
    await english.send("{")
    assert (await english.recv())["message"] == "The frame is malformed."
    assert thai["message"] != "The frame is malformed."


async def test_unauthenticated_and_foreign_origin_sockets_are_closed(live: Live) -> None:
    anonymous = await WsClient.connect(live.url, None)
    assert await anonymous.close_code() == 4401
    alice = await live.user()
    planted = await WsClient.connect(live.url, "f" * 64)
    assert await planted.close_code() == 4401
    evil = await WsClient.connect(live.url, alice.session, origin="https://evil.example")
    assert await evil.close_code() == 4403
    own = await WsClient.connect(live.url, alice.session, origin=live.url)
    await own.send({"type": "ping"})
    assert await own.recv() == {"type": "pong"}
    await own.close()


async def test_oversized_frames_close_with_1009(live: Live) -> None:
    alice = await live.user()
    ws = await WsClient.connect(live.url, alice.session)
    await ws.send(json.dumps({"type": "ping", "pad": "x" * 70_000}))
    assert await ws.close_code() == 1009


async def test_a_flood_closes_with_4429(live: Live) -> None:
    alice = await live.user()
    ws = await WsClient.connect(live.url, alice.session)
    for _ in range(200):
        await ws.send({"type": "ping"})
    assert await ws.close_code() == 4429


async def test_logout_closes_that_sessions_sockets_only(live: Live) -> None:
    alice = await live.user()
    assert alice.user is not None
    # The same user signed in on a second device: a second session.
    http = httpx.AsyncClient(base_url=live.url)
    live.clients.append(http)
    other_device = Client(http)
    login = await other_device.post(
        "/api/auth/login", json={"email": alice.user["email"], "password": PASSWORD}
    )
    assert login.status_code == 200
    assert other_device.session != alice.session
    leaving = await WsClient.connect(live.url, alice.session)
    staying = await live.ws(other_device)
    assert (await alice.post("/api/auth/logout")).status_code == 204
    assert await leaving.close_code() == 4401
    await staying.send({"type": "ping"})
    assert await staying.recv() == {"type": "pong"}
