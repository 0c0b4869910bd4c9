"""kill -9 of the instance that runs a generation: its answers end ``failed``, nothing hangs.

Three answers run on instance A, one on B. A is killed mid-stream. Within the sweeper's
bound (two lease periods after the message started, plus two sweeps) B ends A's answers
``failed`` / ``instance_lost`` with the text A had logged; a subscriber on B hears
``message.done`` after exactly the deltas it joins to; a client whose socket died with A
resumes on B and misses nothing; B's own answer finishes ``complete``; and no row is left
``streaming``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from websockets.protocol import State

from tests.conftest import Backend
from tests.fault.servers_support import (
    Connections,
    Tally,
    all_done,
    check_frames,
    frames_show,
    is_token_prefix,
    last_seqs,
    pump,
    seq_reached,
    sql,
    subscribe_all,
    two_instances,
)
from tests.realtime.conftest import REALTIME_ENV
from tests.support.evidence import Evidence
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.instances import Instance
from tests.support.ws import deltas_of

pytestmark = [pytest.mark.fault, pytest.mark.multi, pytest.mark.anyio]

TOKENS = [f"tok{i} " for i in range(300)]  # about 6 s at 20 ms a token
LEASE_TTL_S = float(REALTIME_ENV["CHATRT_LEASE_TTL_S"])
SWEEP_S = float(REALTIME_ENV["CHATRT_SWEEP_INTERVAL_S"])
# The sweeper's own rule (two lease periods of age, lease gone on two sweeps in a row),
# plus room for a busy 2-core machine.
SWEPT_WITHIN_S = 2 * LEASE_TTL_S + 3 * SWEEP_S + 8


@pytest.fixture
def cluster(
    postgres_backend: Backend, fake: FakeOpenAI, tmp_path: Path
) -> Iterator[tuple[Instance, Instance]]:
    with two_instances(postgres_backend, fake, tmp_path) as pair:
        yield pair


async def test_kill_9_ends_the_answers_failed_with_their_text_and_tells_the_other_instance(
    cluster: tuple[Instance, Instance],
    postgres_backend: Backend,
    fake: FakeOpenAI,
    evidence: Evidence,
) -> None:
    a, b = cluster
    fake.script("primary", Script(tokens=TOKENS, delay_s=0.02))
    async with Connections() as sockets, anyio.create_task_group() as pumps:
        alice = sockets.client(a)
        await alice.register()
        alice_b = sockets.client(b)
        alice_b.sign_in_as(alice)
        conversations = [(await alice.create_conversation())["id"] for _ in range(4)]
        watcher = await sockets.open(b.url, alice.session)
        doomed = await sockets.open(a.url, alice.session)  # dies with A, resumes on B
        await subscribe_all(watcher, conversations)
        await subscribe_all(doomed, conversations[:3])
        for ws in (watcher, doomed):
            pumps.start_soon(pump, ws)
        on_a: list[str] = []
        for conversation_id in conversations[:3]:
            sent = await alice.send(conversation_id, "then die")
            on_a.append(sent.json()["assistant_message"]["id"])
        sent = await alice_b.send(conversations[3], "survive")
        on_b = sent.json()["assistant_message"]["id"]
        await frames_show(seq_reached(doomed, on_a, 5), within_s=15)
        a.kill()
        killed_at = time.monotonic()
        # The socket on A is gone: its client reconnects to B at once and resumes where it
        # was, while the answers are still ``streaming`` (after the end a resume gets only
        # ``message.done``).
        await frames_show(lambda: doomed.connection.state is State.CLOSED, within_s=10)
        resumed = await sockets.open(b.url, alice.session)
        pumps.start_soon(pump, resumed)
        for message_id, seq in last_seqs(doomed, on_a).items():
            await resumed.send({"type": "resume", "message_id": message_id, "after_seq": seq})
        await frames_show(all_done(watcher, on_a), within_s=SWEPT_WITHIN_S)
        swept_after_s = time.monotonic() - killed_at
        await frames_show(all_done(resumed, on_a), within_s=15)
        await frames_show(all_done(watcher, [on_b]), within_s=30)
        history = {
            m["id"]: m
            for conversation_id in conversations
            for m in await alice_b.history(conversation_id)
        }
        pumps.cancel_scope.cancel()

    done = {f["message"]["id"]: f["message"] for f in watcher.frames if f["type"] == "message.done"}
    tally = Tally()
    for message_id in on_a:
        final = done[message_id]
        assert (final["status"], final["error"]["code"]) == ("failed", "instance_lost")
        assert final["content"], "A had generated text before it died"
        assert is_token_prefix(final["content"], TOKENS), "the stored text is what A generated"
        assert history[message_id]["status"] == "failed"
        assert history[message_id]["content"] == final["content"]
    assert (done[on_b]["status"], done[on_b]["content"]) == ("complete", "".join(TOKENS))
    stored = {m: history[m]["content"] for m in [*on_a, on_b]}
    check_frames(tally, "watcher on B", watcher.frames, stored)
    for message_id in on_a:
        both = deltas_of(doomed.frames, message_id) + deltas_of(resumed.frames, message_id)
        tally.check("resumed on B", message_id, both, stored[message_id])
    assert not tally.problems, tally.problems
    assert not [f for f in resumed.frames if f["type"] == "error"]
    assert swept_after_s < SWEPT_WITHIN_S

    assert postgres_backend.pg is not None
    assert postgres_backend.db_name is not None
    streaming = sql(
        postgres_backend.pg,
        postgres_backend.db_name,
        "SELECT count(*) FROM messages WHERE status = 'streaming'",
    )
    assert streaming == [["0"]], "no message stays streaming"
    evidence.record(
        "instance_kill_9",
        answers_killed=len(on_a),
        answers_ended_failed=sum(1 for m in on_a if done[m]["status"] == "failed"),
        deltas_checked=tally.deltas_checked,
        missing=tally.missing,
        doubled=tally.doubled,
        left_streaming=0,
        max_seconds_to_failed=round(swept_after_s, 2),
    )
