"""Two real chatrt processes sharing PostgreSQL and Redis, clients on different instances."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from tests.conftest import Backend
from tests.multi.conftest import ClientOn
from tests.realtime.conftest import REALTIME_ENV, providers_env
from tests.support.client import Client
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.instances import Instance
from tests.support.ws import WsClient, deltas_of, done_of

pytestmark = [pytest.mark.multi, pytest.mark.anyio]


@pytest.fixture
def cluster(
    postgres_backend: Backend, fake: FakeOpenAI, tmp_path: Path
) -> Iterator[tuple[Instance, Instance]]:
    env = postgres_backend.defaults | postgres_backend.env | REALTIME_ENV
    env |= {
        "CHATRT_PROVIDERS": providers_env(fake, "primary"),
        "CHATRT_SHUTDOWN_GRACE_S": "10",
        # One watcher follows 100 conversations at once in the load test.
        "CHATRT_WS_FRAME_BURST": "500",
    }
    a, b = Instance(env, tmp_path, "a"), Instance(env, tmp_path, "b")
    with a, b:
        yield a, b


@pytest.fixture
async def ws_open() -> AsyncIterator[Callable[[str, str], Awaitable[WsClient]]]:
    """Connect sockets that are closed at teardown, also when the test fails."""
    opened: list[WsClient] = []

    async def connect(url: str, session: str) -> WsClient:
        socket = await WsClient.connect(url, session)
        opened.append(socket)
        return socket

    yield connect
    for socket in opened:
        await socket.close()


async def _user_on(client: Client) -> Client:
    await client.register()
    return client


def _as(client: Client, other: Client) -> Client:
    """The same browser session, talking to another instance."""
    other.sign_in_as(client)
    return other


async def test_a_subscriber_on_b_sees_exactly_the_deltas_of_a_generation_on_a(
    cluster: tuple[Instance, Instance],
    fake: FakeOpenAI,
    client_on: ClientOn,
    ws_open: Callable[[str, str], Awaitable[WsClient]],
) -> None:
    a, b = cluster
    fake.script("primary", Script(tokens=[f"t{i} " for i in range(200)], delay_s=0.002))
    alice = await _user_on(client_on(a))
    conversation = await alice.create_conversation()
    on_a = await ws_open(a.url, alice.session)
    on_b = await ws_open(b.url, alice.session)
    for ws in (on_a, on_b):
        await ws.send({"type": "subscribe", "conversation_id": conversation["id"]})
        await ws.recv()
    sent = await alice.send(conversation["id"], "stream it")
    message_id = sent.json()["assistant_message"]["id"]
    await on_a.recv_until(done_of(message_id))
    await on_b.recv_until(done_of(message_id))
    from_a, from_b = deltas_of(on_a.frames, message_id), deltas_of(on_b.frames, message_id)
    assert from_b == from_a
    assert [d["seq"] for d in from_b] == list(range(1, len(from_b) + 1))
    content = "".join(f"t{i} " for i in range(200))
    assert "".join(d["delta"] for d in from_b) == content
    assert on_b.frames[-1]["message"]["content"] == content
    rest_on_b = _as(alice, client_on(b))
    assert (await rest_on_b.history(conversation["id"]))[0]["content"] == content
    await on_a.close()
    await on_b.close()


async def test_one_client_message_id_sent_to_both_instances_runs_once(
    cluster: tuple[Instance, Instance],
    fake: FakeOpenAI,
    client_on: ClientOn,
    ws_open: Callable[[str, str], Awaitable[WsClient]],
) -> None:
    a, b = cluster
    fake.script("primary", Script(tokens=5, delay_s=0.05))
    alice = await _user_on(client_on(a))
    also_alice = _as(alice, client_on(b))
    conversation = await alice.create_conversation(title="no title request")
    results = []

    async def send(client: Client) -> None:
        results.append(await client.send(conversation["id"], "once", client_message_id="same"))

    async with anyio.create_task_group() as group:
        group.start_soon(send, alice)
        group.start_soon(send, also_alice)
    assert [r.status_code for r in results] == [202, 202]
    assert len({r.json()["assistant_message"]["id"] for r in results}) == 1
    await alice.wait_finished(conversation["id"], results[0].json()["assistant_message"]["id"])
    assert fake.requests("primary") == 1
    assert len(await alice.history(conversation["id"])) == 2


@pytest.mark.parametrize("moment", ["before the first token", "mid-stream"])
async def test_cancel_from_b_stops_the_generation_on_a(
    cluster: tuple[Instance, Instance],
    fake: FakeOpenAI,
    client_on: ClientOn,
    ws_open: Callable[[str, str], Awaitable[WsClient]],
    moment: str,
) -> None:
    a, b = cluster
    if moment == "before the first token":
        fake.script("primary", Script(tokens=5, first_token_delay_s=60))
    else:
        fake.script("primary", Script(tokens=400, delay_s=0.02))
    alice = await _user_on(client_on(a))
    conversation = await alice.create_conversation()
    on_b = await ws_open(b.url, alice.session)
    await on_b.send({"type": "subscribe", "conversation_id": conversation["id"]})
    await on_b.recv()
    sent = await alice.send(conversation["id"], "long answer")  # runs on A
    message_id = sent.json()["assistant_message"]["id"]
    if moment == "mid-stream":
        await on_b.recv_until(lambda f: f["type"] == "message.delta" and f["seq"] >= 3)
    else:
        await fake.wait_for_async(lambda: fake.requests("primary") == 1)
    await on_b.send({"type": "cancel", "message_id": message_id})
    await on_b.recv_until(done_of(message_id))
    done = on_b.frames[-1]["message"]
    assert done["status"] == "cancelled"
    joined = "".join(d["delta"] for d in deltas_of(on_b.frames, message_id))
    assert done["content"] == joined
    if moment == "mid-stream":
        assert joined
    else:
        assert joined == ""
    await fake.wait_for_async(lambda: fake.disconnects("primary") == 1, within_s=5)
    await on_b.close()


async def test_kill_9_of_the_generating_instance_is_swept_by_the_other(
    cluster: tuple[Instance, Instance],
    fake: FakeOpenAI,
    client_on: ClientOn,
    ws_open: Callable[[str, str], Awaitable[WsClient]],
) -> None:
    a, b = cluster
    fake.script("primary", Script(tokens=1000, delay_s=0.02))
    alice = await _user_on(client_on(a))
    conversation = await alice.create_conversation()
    on_b = await ws_open(b.url, alice.session)
    await on_b.send({"type": "subscribe", "conversation_id": conversation["id"]})
    await on_b.recv()
    sent = await alice.send(conversation["id"], "then die")
    message_id = sent.json()["assistant_message"]["id"]
    await on_b.recv_until(lambda f: f["type"] == "message.delta" and f["seq"] >= 5)
    a.kill()
    await on_b.recv_until(done_of(message_id), within_s=30)
    done = on_b.frames[-1]["message"]
    assert done["status"] == "failed"
    assert done["error"]["code"] == "instance_lost"
    joined = "".join(d["delta"] for d in deltas_of(on_b.frames, message_id))
    assert done["content"] == joined
    assert joined.startswith("tok0 tok1 tok2 ")
    rest_on_b = _as(alice, client_on(b))
    history = await rest_on_b.history(conversation["id"])
    assert (history[0]["status"], history[0]["content"]) == ("failed", joined)
    await on_b.close()


@pytest.mark.parametrize("where", ["same instance", "other instance"])
async def test_a_client_reconnecting_anywhere_misses_nothing(
    cluster: tuple[Instance, Instance],
    fake: FakeOpenAI,
    client_on: ClientOn,
    ws_open: Callable[[str, str], Awaitable[WsClient]],
    where: str,
) -> None:
    a, b = cluster
    tokens = [f"r{i} " for i in range(150)]
    fake.script("primary", Script(tokens=tokens, delay_s=0.01))
    alice = await _user_on(client_on(a))
    conversation = await alice.create_conversation()
    first = await ws_open(a.url, alice.session)
    await first.send({"type": "subscribe", "conversation_id": conversation["id"]})
    await first.recv()
    sent = await alice.send(conversation["id"], "go")
    message_id = sent.json()["assistant_message"]["id"]
    await first.recv_until(lambda f: f["type"] == "message.delta" and f["seq"] >= 4)
    await first.close()
    received = deltas_of(first.frames, message_id)
    last = received[-1]["seq"]
    second = await ws_open((a if where == "same instance" else b).url, alice.session)
    await second.send({"type": "resume", "message_id": message_id, "after_seq": last})
    await second.recv_until(done_of(message_id))
    resumed = deltas_of(second.frames, message_id)
    seqs = [d["seq"] for d in received + resumed]
    assert seqs == list(range(1, len(seqs) + 1)), "no gap, no duplicate"
    assert "".join(d["delta"] for d in received + resumed) == "".join(tokens)
    await second.close()


async def test_100_concurrent_generations_across_two_instances(
    cluster: tuple[Instance, Instance],
    fake: FakeOpenAI,
    client_on: ClientOn,
    ws_open: Callable[[str, str], Awaitable[WsClient]],
) -> None:
    a, b = cluster
    fake.script("primary", Script(tokens=[f"x{i} " for i in range(30)], delay_s=0.01))
    alice = await _user_on(client_on(a))
    on_b = _as(alice, client_on(b))
    conversations = [await alice.create_conversation() for _ in range(100)]
    watchers = [await ws_open(i.url, alice.session) for i in (a, b)]
    for ws in watchers:
        for conversation in conversations:
            await ws.send({"type": "subscribe", "conversation_id": conversation["id"]})
        await ws.recv_until(
            lambda f, last=conversations[-1]["id"]: (
                f["type"] == "subscribed" and f["conversation_id"] == last
            )
        )
    message_ids: list[str] = []

    async def send(n: int, conversation_id: str) -> None:
        client = alice if n % 2 == 0 else on_b
        response = await client.send(conversation_id, f"question {n}")
        assert response.status_code == 202, response.text
        message_ids.append(response.json()["assistant_message"]["id"])

    async with anyio.create_task_group() as group:
        for n, conversation in enumerate(conversations):
            group.start_soon(send, n, conversation["id"])
    for ws in watchers:
        while sum(1 for x in ws.frames if x["type"] == "message.done") < 100:
            await ws.recv_until(lambda f: f["type"] == "message.done", within_s=60)
    expected = "".join(f"x{i} " for i in range(30))
    for ws in watchers:
        done = {f["message"]["id"]: f["message"] for f in ws.frames if f["type"] == "message.done"}
        assert set(done) == set(message_ids)
        for message_id in message_ids:
            deltas = deltas_of(ws.frames, message_id)
            assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
            assert "".join(d["delta"] for d in deltas) == done[message_id]["content"] == expected
    for conversation in conversations[:10]:
        history = await on_b.history(conversation["id"])
        assert history[0]["content"] == expected
    for ws in watchers:
        await ws.close()


async def test_sigterm_closes_sockets_with_1012_and_lets_answers_finish(
    cluster: tuple[Instance, Instance],
    fake: FakeOpenAI,
    client_on: ClientOn,
    ws_open: Callable[[str, str], Awaitable[WsClient]],
) -> None:
    a, b = cluster
    tokens = [f"g{i} " for i in range(100)]
    fake.script("primary", Script(tokens=tokens, delay_s=0.02))  # about 2 s of answer
    alice = await _user_on(client_on(a))
    conversation = await alice.create_conversation(title="shutdown")
    on_a = await ws_open(a.url, alice.session)
    await on_a.send({"type": "subscribe", "conversation_id": conversation["id"]})
    await on_a.recv()
    sent = await alice.send(conversation["id"], "keep going")  # generated on A
    message_id = sent.json()["assistant_message"]["id"]
    await on_a.recv_until(lambda f: f["type"] == "message.delta" and f["seq"] >= 2)
    async with anyio.create_task_group() as group:
        group.start_soon(anyio.to_thread.run_sync, a.terminate)
        assert await on_a.close_code() == 1012
        last = deltas_of(on_a.frames, message_id)[-1]["seq"]
        # The client resumes on B while A finishes the answer within its grace period.
        on_b = await ws_open(b.url, alice.session)
        await on_b.send({"type": "resume", "message_id": message_id, "after_seq": last})
        await on_b.recv_until(done_of(message_id), within_s=30)
    done = on_b.frames[-1]["message"]
    assert done["status"] == "complete"
    joined = "".join(
        d["delta"] for d in deltas_of(on_a.frames, message_id) + deltas_of(on_b.frames, message_id)
    )
    assert joined == done["content"] == "".join(tokens)
    await on_b.close()
