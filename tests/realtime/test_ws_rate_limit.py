"""`send` frames are limited per user, across all of the user's sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from prometheus_client import REGISTRY

from tests.conftest import Backend
from tests.realtime.conftest import Live, start_live
from tests.support.ws import Frame, WsClient

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

WINDOW_S = 4


@pytest.fixture
async def limited(backend: Backend) -> AsyncIterator[Live]:
    """The demo model, two sends per window per user."""
    env = {"CHATRT_WS_SENDS_PER_WINDOW": "2", "CHATRT_RATE_LIMIT_WINDOW_S": str(WINDOW_S)}
    async for running in start_live(backend, **env):
        yield running


def _send(conversation_id: str, tag: str) -> dict[str, Any]:
    return {
        "type": "send",
        "conversation_id": conversation_id,
        "content": f"hello {tag}",
        "client_message_id": tag,
    }


def _answer_to(conversation_id: str) -> Any:
    """The sender's own result: its user message created, or an error for a send."""

    def done(frame: Frame) -> bool:
        if frame["type"] == "error":
            return bool(frame["ref"] == "send")
        return bool(
            frame["type"] == "message.created"
            and frame["message"]["conversation_id"] == conversation_id
            and frame["message"]["role"] == "user"
        )

    return done


async def _result(socket: WsClient, conversation_id: str) -> Frame:
    frames = await socket.recv_until(_answer_to(conversation_id))
    return frames[-1]


async def test_sends_over_the_limit_get_a_retryable_error_and_the_socket_stays_open(
    limited: Live,
) -> None:
    alice = await limited.user()
    bob = await limited.user()
    conversations = [(await alice.create_conversation())["id"] for _ in range(3)]
    phone, laptop = await limited.ws(alice), await limited.ws(alice)
    before = REGISTRY.get_sample_value("chatrt_rate_limited_total", {"scope": "ws_send"}) or 0

    # One send from each socket: both count against alice.
    await phone.send(_send(conversations[0], "s1"))
    assert (await _result(phone, conversations[0]))["type"] == "message.created"
    await laptop.send(_send(conversations[1], "s2"))
    assert (await _result(laptop, conversations[1]))["type"] == "message.created"

    await phone.send(_send(conversations[2], "s3"))
    error = await _result(phone, conversations[2])
    assert error["type"] == "error"
    assert error["code"] == "rate_limited"
    assert error["retryable"] is True
    assert 1 <= error["retry_after"] <= WINDOW_S
    assert error["message"]
    after = REGISTRY.get_sample_value("chatrt_rate_limited_total", {"scope": "ws_send"})
    assert after == before + 1
    await laptop.send(_send(conversations[2], "s3"))
    assert (await _result(laptop, conversations[2]))["code"] == "rate_limited"

    # Still open: other frames are served.
    await phone.send({"type": "ping"})
    await phone.recv_until(lambda f: f["type"] == "pong")
    await phone.send({"type": "subscribe", "conversation_id": conversations[2]})
    await phone.recv_until(lambda f: f["type"] == "subscribed")

    # Another user's sends are their own.
    bob_socket = await limited.ws(bob)
    bob_conversation = (await bob.create_conversation())["id"]
    await bob_socket.send(_send(bob_conversation, "b1"))
    assert (await _result(bob_socket, bob_conversation))["type"] == "message.created"

    # When the window ends, the same send goes through.
    with anyio.fail_after(WINDOW_S + 10):
        while True:
            await laptop.send(_send(conversations[2], "s3"))
            result = await _result(laptop, conversations[2])
            if result["type"] == "message.created":
                break
            assert result["code"] == "rate_limited"
            await anyio.sleep(0.25)
    assert result["message"]["content"] == "hello s3"

    # Read every answer to its end, so no socket closes with a full receive queue.
    for socket, answers in ((phone, 2), (laptop, 2), (bob_socket, 1)):
        await _read_dones(socket, answers)


async def _read_dones(socket: WsClient, count: int) -> None:
    def enough(_: Frame) -> bool:
        return sum(f["type"] == "message.done" for f in socket.frames) >= count

    if not enough({}):
        await socket.recv_until(enough)
