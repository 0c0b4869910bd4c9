"""A client too slow to keep up is closed with 4408 instead of slowing anyone else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import Backend
from tests.realtime.conftest import Live, providers_env, start_live
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.ws import WsClient, done_of

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
async def small_queue(backend: Backend, fake: FakeOpenAI) -> AsyncIterator[Live]:
    env = {"CHATRT_PROVIDERS": providers_env(fake, "primary"), "CHATRT_WS_SEND_QUEUE_FRAMES": "16"}
    async for running in start_live(backend, send_buffer=16384, **env):
        yield running


async def test_a_stalled_reader_is_closed_and_a_healthy_one_is_not_slowed(
    small_queue: Live, fake: FakeOpenAI
) -> None:
    fake.script("primary", Script(tokens=["x" * 2000] * 5000))
    alice = await small_queue.user()
    conversation = await alice.create_conversation(title="flood")
    # The stalled client reads nothing: its TCP window fills, then its queue.
    stalled = await WsClient.connect(small_queue.url, alice.session, receive_buffer=4096)
    healthy = await small_queue.ws(alice)
    for ws in (stalled, healthy):
        await ws.send({"type": "subscribe", "conversation_id": conversation["id"]})
    await healthy.recv()
    sent = await alice.send(conversation["id"], "flood me")
    message_id = sent.json()["assistant_message"]["id"]
    await healthy.recv_until(done_of(message_id), within_s=60)
    assert healthy.frames[-1]["message"]["status"] == "complete"
    try:
        code = await stalled.close_code(within_s=20)
    except TimeoutError:
        raise AssertionError(
            (
                len(stalled.frames),
                [f["type"] for f in stalled.frames[-3:]],
                stalled.connection.state,
            )
        ) from None
    assert code == 4408
    assert not any(f["type"] == "message.done" for f in stalled.frames)
