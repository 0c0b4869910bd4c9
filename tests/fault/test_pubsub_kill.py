"""Redis drops one instance's pub/sub link mid-stream; that instance repairs from the logs.

Ten answers stream, half generated on A and half on B, watched by a socket on each. Redis
then kills B's subscriber connection only (``CLIENT KILL TYPE pubsub ID ...``, found in
``CLIENT LIST`` by the name the bus gives it). B must notice, re-subscribe and fill what it
missed from the message logs: its socket still gets every seq exactly once and each
``message.done``, with no process restart, and A's link is never touched. An answer sent
after the repair reaches both sockets live.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from chatrt.bus.redis import pubsub_client_name
from tests.conftest import Backend
from tests.fault.servers_support import (
    Connections,
    Tally,
    check_frames,
    recv_until_done,
    subscribe_all,
    two_instances,
)
from tests.support.evidence import Evidence
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.instances import Instance
from tests.support.wait import wait_until
from tests.support.ws import deltas_of

pytestmark = [pytest.mark.fault, pytest.mark.multi, pytest.mark.anyio]

TOKENS = [f"s{i} " for i in range(80)]  # about 1.6 s at 20 ms a token
ANSWERS = 10


@pytest.fixture
def cluster(
    postgres_backend: Backend, fake: FakeOpenAI, tmp_path: Path
) -> Iterator[tuple[Instance, Instance]]:
    with two_instances(postgres_backend, fake, tmp_path, CHATRT_WS_FRAME_BURST="200") as pair:
        yield pair


def pubsub_link(admin: redis.Redis, instance: Instance) -> dict[str, Any]:
    """The ``CLIENT LIST`` entry of ``instance``'s pub/sub connection."""
    assert instance.process is not None
    name = pubsub_client_name(pid=instance.process.pid)
    links = [c for c in admin.client_list() if c["name"] == name]
    assert len(links) == 1, f"one pub/sub link named {name}: {links}"
    return links[0]


async def test_a_killed_pubsub_link_of_one_instance_is_repaired_from_the_logs(
    cluster: tuple[Instance, Instance],
    postgres_backend: Backend,
    fake: FakeOpenAI,
    evidence: Evidence,
) -> None:
    a, b = cluster
    assert postgres_backend.redis is not None
    admin = redis.Redis.from_url(postgres_backend.redis.url())
    fake.script("primary", Script(tokens=TOKENS, delay_s=0.02))
    async with Connections() as connections:
        alice = connections.client(a)
        await alice.register()
        alice_b = connections.client(b)
        alice_b.sign_in_as(alice)
        conversations = [(await alice.create_conversation())["id"] for _ in range(ANSWERS + 1)]
        on_a = await connections.open(a.url, alice.session)
        on_b = await connections.open(b.url, alice.session)
        for ws in (on_a, on_b):
            await subscribe_all(ws, conversations)
        link_a, link_b = pubsub_link(admin, a), pubsub_link(admin, b)
        assert int(link_b["sub"]) > ANSWERS, "B's link carries the conversations it follows"

        message_ids: list[str] = []
        for n, conversation_id in enumerate(conversations[:ANSWERS]):
            sent = await (alice if n % 2 == 0 else alice_b).send(conversation_id, f"q{n}")
            assert sent.status_code == 202, sent.text
            message_ids.append(sent.json()["assistant_message"]["id"])
        for message_id in message_ids:
            await on_b.recv_until(
                lambda f, m=message_id: (
                    f["type"] == "message.delta" and f["message_id"] == m and f["seq"] >= 3
                )
            )
        killed = admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub", "ID", link_b["id"])
        assert killed == 1
        streaming_at_kill = len(message_ids) - sum(
            1 for f in on_b.frames if f["type"] == "message.done"
        )

        async def b_noticed() -> bool:
            return "pub/sub lost" in b.log_path.read_text()

        await wait_until(b_noticed, within_s=15)
        for ws in (on_a, on_b):
            await recv_until_done(ws, message_ids, within_s=30)

        # Recovered in place: a new answer is delivered live to both sockets.
        sent = await alice_b.send(conversations[ANSWERS], "after the repair")
        after = sent.json()["assistant_message"]["id"]
        for ws in (on_a, on_b):
            await recv_until_done(ws, [after], within_s=30)
        history = {m["id"]: m for c in conversations for m in await alice.history(c)}

    assert b.process is not None
    assert a.process is not None
    assert (a.process.poll(), b.process.poll()) == (None, None), "no process restarted"
    assert pubsub_link(admin, a)["id"] == link_a["id"], "A's link was not touched"
    assert pubsub_link(admin, b)["id"] != link_b["id"], "B linked again"
    assert "pub/sub lost" not in a.log_path.read_text()
    stored = {m: history[m]["content"] for m in [*message_ids, after]}
    for message_id in stored:
        assert history[message_id]["status"] == "complete"
        assert stored[message_id] == "".join(TOKENS)
    tally = Tally()
    for name, ws in (("socket on A", on_a), ("socket on B", on_b)):
        check_frames(tally, name, ws.frames, stored)
        done = {f["message"]["id"]: f["message"] for f in ws.frames if f["type"] == "message.done"}
        assert {m: done[m]["content"] for m in stored} == stored
        assert not [f for f in ws.frames if f["type"] == "error"], "no history was lost"
    assert deltas_of(on_b.frames, after), "the new answer streamed live on B"
    assert not tally.problems, tally.problems
    admin.close()
    evidence.record(
        "pubsub_link_kill",
        answers=len(stored),
        answers_streaming_at_kill=streaming_at_kill,
        deltas_checked=tally.deltas_checked,
        missing=tally.missing,
        doubled=tally.doubled,
    )
