"""A silent network partition between one instance and Redis loses nothing.

Instance B reaches Redis through a proxy that goes dark (no reset, no error) while the
answer it relays, running on A, ends. B's keepalive notices, reconnects once the path is
back, and repairs its WebSocket and SSE clients from the log and the row.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import httpx
import pytest

from tests.conftest import Backend
from tests.realtime.conftest import REALTIME_ENV, providers_env
from tests.support.client import Client
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.instances import Instance
from tests.support.proxy import SilentProxy
from tests.support.sse import SseEvent, read_sse, sse_deltas
from tests.support.wait import wait_until
from tests.support.ws import WsClient, deltas_of, done_of

pytestmark = [pytest.mark.fault, pytest.mark.multi, pytest.mark.anyio]

TOKENS = [f"p{i} " for i in range(300)]


@pytest.fixture
def partitioned(
    postgres_backend: Backend, fake: FakeOpenAI, tmp_path: Path
) -> Iterator[tuple[Instance, Instance, SilentProxy]]:
    env = postgres_backend.defaults | postgres_backend.env | REALTIME_ENV
    env |= {"CHATRT_PROVIDERS": providers_env(fake, "primary")}
    redis = urlsplit(env["CHATRT_REDIS_URL"])
    assert redis.hostname is not None
    assert redis.port is not None
    with SilentProxy(redis.hostname, redis.port) as proxy:
        b_env = env | {
            "CHATRT_REDIS_URL": proxy.url(),
            "CHATRT_REDIS_KEEPALIVE_S": "0.2",
            "CHATRT_REDIS_TIMEOUT_S": "1",
        }
        a, b = Instance(env, tmp_path, "a"), Instance(b_env, tmp_path, "b")
        with a, b:
            yield a, b, proxy


async def test_an_answer_that_ends_during_a_silent_partition_reaches_both_clients(
    partitioned: tuple[Instance, Instance, SilentProxy], fake: FakeOpenAI
) -> None:
    a, b, proxy = partitioned
    fake.script("primary", Script(tokens=TOKENS, delay_s=0.005))
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
    ):
        alice = Client(on_a)
        await alice.register()
        alice_b = Client(on_b)
        alice_b.sign_in_as(alice)
        conversation = await alice.create_conversation(title="partition")
        ws = await WsClient.connect(b.url, alice.session)
        try:
            await ws.send({"type": "subscribe", "conversation_id": conversation["id"]})
            await ws.recv()
            sent = await alice.send(conversation["id"], "through the dark")  # runs on A
            message_id = sent.json()["assistant_message"]["id"]
            url = f"/api/conversations/{conversation['id']}/messages/{message_id}/stream"
            events: list[SseEvent] = []

            async def sse_started() -> bool:
                return len(events) >= 3

            with anyio.fail_after(60):
                async with anyio.create_task_group() as group:
                    group.start_soon(read_sse, on_b, url, events)
                    await ws.recv_until(lambda f: f["type"] == "message.delta" and f["seq"] >= 3)
                    await wait_until(sse_started, within_s=10)
                    proxy.silent = True
                    done = await alice.wait_finished(conversation["id"], message_id)
                    assert done["status"] == "complete"

                    async def b_noticed() -> bool:
                        return "pub/sub lost" in b.log_path.read_text()

                    await wait_until(b_noticed, within_s=15, every_s=0.05)
                    proxy.silent = False
                    await ws.recv_until(done_of(message_id), within_s=30)
            content = "".join(TOKENS)
            for deltas, final in (
                (deltas_of(ws.frames, message_id), ws.frames[-1]["message"]),
                (sse_deltas(events), events[-1].data["message"]),
            ):
                assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
                assert "".join(d["delta"] for d in deltas) == final["content"] == content
            assert not [f for f in ws.frames if f["type"] == "error"]
        finally:
            await ws.close()
