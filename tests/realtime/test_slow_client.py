"""A client too slow to keep up is closed with 4408 instead of slowing anyone else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import Backend
from tests.realtime.conftest import Live, providers_env, start_live
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.logs import close_codes, log_records
from tests.support.raw_ws import StalledClient
from tests.support.wait import wait_until
from tests.support.ws import done_of

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
async def small_queue(backend: Backend, fake: FakeOpenAI) -> AsyncIterator[Live]:
    env = {
        "CHATRT_PROVIDERS": providers_env(fake, "primary"),
        "CHATRT_WS_SEND_QUEUE_FRAMES": "16",
        "CHATRT_MAX_ANSWER_CHARS": "10000000",  # the flood below is 10 MB
    }
    async for running in start_live(backend, **env):
        yield running


async def test_a_stalled_reader_is_closed_and_a_healthy_one_is_not_slowed(
    small_queue: Live, fake: FakeOpenAI
) -> None:
    with log_records("chatrt.ws") as closes:
        # 10 MB of deltas: more than the kernel's socket buffers absorb on loopback.
        fake.script("primary", Script(tokens=["x" * 2000] * 5000))
        alice = await small_queue.user()
        conversation = await alice.create_conversation(title="flood")
        stalled = await StalledClient.connect(small_queue.url, alice.session)
        try:
            await stalled.send({"type": "subscribe", "conversation_id": conversation["id"]})
            healthy = await small_queue.ws(alice)
            await healthy.send({"type": "subscribe", "conversation_id": conversation["id"]})
            await healthy.recv()
            sent = await alice.send(conversation["id"], "flood me")
            message_id = sent.json()["assistant_message"]["id"]
            await healthy.recv_until(done_of(message_id), within_s=60)
            assert healthy.frames[-1]["message"]["status"] == "complete"
            assert len(healthy.frames[-1]["message"]["content"]) == 10_000_000

            async def closed_slow() -> bool:
                return 4408 in close_codes(closes)

            await wait_until(closed_slow, within_s=30)
            assert close_codes(closes) == [4408]
        finally:
            # Also when an assertion failed: an open socket would warn in a later test.
            await stalled.aclose()
