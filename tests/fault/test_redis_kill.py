"""kill -9 of Redis (with its append-only file) in the middle of 50 answers, then a restart.

Two instances share PostgreSQL and a Redis of this test's own. Fifty answers stream, half
generated on each instance, watched by a socket on each. Four more clients, each following
a quarter of the conversations, drop off just before Redis dies and come back after the
restart on the other instance with ``resume``. Redis stays down longer than a generation
lease, so every lease lapses; meanwhile a request gets a 503 ``service_unavailable``.

Checked: every answer ends ``complete`` or ``failed`` with the text the provider produced
up to its end; both watchers recover without any process restart (every seq once, then
``message.done``, and new answers arrive live); the resuming clients miss nothing and get
nothing twice; no stream history was lost; no row stays ``streaming``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import SECRET, Backend
from tests.fault.servers_support import (
    Connections,
    Tally,
    all_done,
    done_ids,
    drop,
    frames_show,
    is_token_prefix,
    last_seqs,
    pump,
    running,
    seq_reached,
    sql,
    subscribe_all,
)
from tests.realtime.conftest import REALTIME_ENV, providers_env
from tests.support.client import Client
from tests.support.evidence import Evidence
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.instances import Instance
from tests.support.servers import PostgresServer, RedisServer
from tests.support.ws import Frame, deltas_of

pytestmark = [pytest.mark.fault, pytest.mark.multi, pytest.mark.anyio]

ANSWERS = 50
TOKENS = [f"k{i} " for i in range(40)]  # about 10 s at 250 ms a token: outlasts the outage
LEAVERS = 4


@dataclass
class Cluster:
    a: Instance
    b: Instance
    redis: RedisServer
    pg: PostgresServer
    database: str


@pytest.fixture
def cluster(
    pg_server: PostgresServer, pg_template: str, fake: FakeOpenAI, tmp_path: Path
) -> Iterator[Cluster]:
    database = f"chatrt_redis_kill_{os.getpid()}"
    pg_server.create_database(database, template=pg_template)
    try:
        with RedisServer(tmp_path / "redis", appendonly=True) as redis:
            env = Backend("postgres", {}).defaults | REALTIME_ENV
            env |= {
                "CHATRT_DATABASE_URL": pg_server.dsn(database),
                "CHATRT_REDIS_URL": redis.url(),
                "CHATRT_SECRET_KEY": SECRET,
                "CHATRT_DB_POOL_MIN": "1",
                "CHATRT_DB_POOL_MAX": "10",
                "CHATRT_PROVIDERS": providers_env(fake, "primary"),
                # Each socket subscribes to every conversation and resumes every answer.
                "CHATRT_WS_FRAME_BURST": "500",
            }
            a, b = Instance(env, tmp_path, "a"), Instance(env, tmp_path, "b")
            with running(a, b):
                yield Cluster(a, b, redis, pg_server, database)
    finally:
        pg_server.drop_database(database)


async def test_redis_kill_9_mid_stream_loses_no_delta_and_everyone_recovers(
    cluster: Cluster, fake: FakeOpenAI, evidence: Evidence
) -> None:
    a, b = cluster.a, cluster.b
    fake.script("primary", Script(tokens=TOKENS, delay_s=0.25))
    async with Connections() as connections, anyio.create_task_group() as pumps:
        alice = connections.client(a)
        await alice.register()
        alice_b = connections.client(b)
        alice_b.sign_in_as(alice)
        conversations = [(await alice.create_conversation())["id"] for _ in range(ANSWERS + 2)]
        watchers = [await connections.open(i.url, alice.session) for i in (a, b)]
        # Each leaving client follows a quarter of the conversations, on A or on B.
        theirs = [conversations[:ANSWERS][n::LEAVERS] for n in range(LEAVERS)]
        leaving = [await connections.open((a, b)[n % 2].url, alice.session) for n in range(LEAVERS)]
        followers = [*((w, conversations) for w in watchers), *zip(leaving, theirs, strict=True)]
        for ws, followed in followers:
            await subscribe_all(ws, followed)
            pumps.start_soon(pump, ws)

        answer_in: dict[str, str] = {}

        async def send(n: int, conversation_id: str) -> None:
            response = await (alice if n % 2 == 0 else alice_b).send(conversation_id, f"q{n}")
            assert response.status_code == 202, response.text
            answer_in[conversation_id] = response.json()["assistant_message"]["id"]

        async with anyio.create_task_group() as group:
            for n, conversation_id in enumerate(conversations[:ANSWERS]):
                group.start_soon(send, n, conversation_id)
        message_ids = [answer_in[c] for c in conversations[:ANSWERS]]
        resuming = [[answer_in[c] for c in followed] for followed in theirs]
        for ws in watchers:
            await frames_show(seq_reached(ws, message_ids, 2), within_s=30)
        # The leaving clients drop off; where each was is what it will resume from.
        for ws in leaving:
            drop(ws)
        left_at = [last_seqs(ws, mine) for ws, mine in zip(leaving, resuming, strict=True)]
        sweeps_failed = [i.log_path.read_text().count("sweep failed") for i in (a, b)]
        await anyio.to_thread.run_sync(cluster.redis.kill)
        killed_at = time.monotonic()
        mid_stream = len(set(message_ids) - done_ids(watchers[1].frames))
        # Meanwhile a request gets a 503 in the contract's shape, not a 500.
        for client in (alice, alice_b):
            refused = await client.get("/api/conversations")
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "service_unavailable"
        # Down for longer than a generation lease (four failed sweeps on each instance), so
        # every lease lapses and the sweepers must not mistake a live answer for a dead one.
        for instance, failed in zip((a, b), sweeps_failed, strict=True):
            await frames_show(lambda i=instance, n=failed: sweeps(i) >= n + 4, within_s=30)
        outage_s = time.monotonic() - killed_at
        await anyio.to_thread.run_sync(cluster.redis.restart)

        # Each comes back on the other instance and resumes its answers.
        back = [await connections.open((b, a)[n % 2].url, alice.session) for n in range(LEAVERS)]
        for ws, seqs in zip(back, left_at, strict=True):
            pumps.start_soon(pump, ws)
            for message_id, seq in seqs.items():
                await ws.send({"type": "resume", "message_id": message_id, "after_seq": seq})
        for ws in watchers:
            await frames_show(all_done(ws, message_ids), within_s=60)
        for ws, mine in zip(back, resuming, strict=True):
            await frames_show(all_done(ws, mine), within_s=30)

        # Recovered in place: new answers on either instance reach both watchers live.
        after: list[str] = []
        for client, conversation_id in zip((alice, alice_b), conversations[ANSWERS:], strict=True):
            sent = await client.send(conversation_id, "after the restart")
            assert sent.status_code == 202, sent.text
            after.append(sent.json()["assistant_message"]["id"])
        for ws in watchers:
            await frames_show(all_done(ws, after), within_s=30)
        history = {m["id"]: m for c in conversations for m in await alice.history(c)}
        # What each instance says of the resumes it served: the clients that left A came
        # back on B, and the other way round.
        served = {"b": await resumes_served(alice_b), "a": await resumes_served(alice)}
        pumps.cancel_scope.cancel()

    stored = {m: history[m]["content"] for m in [*message_ids, *after]}
    statuses = {m: history[m]["status"] for m in stored}
    for message_id, content in stored.items():
        assert statuses[message_id] in ("complete", "failed"), history[message_id]
        if statuses[message_id] == "complete":
            assert content == "".join(TOKENS)
        else:
            assert is_token_prefix(content, TOKENS), "a failed answer keeps what was generated"
    assert all(statuses[m] == "complete" for m in after)

    tally = Tally()
    for n, ws in enumerate(watchers):
        for message_id, content in stored.items():
            tally.check(f"watcher {n}", message_id, deltas_of(ws.frames, message_id), content)
            assert done_of_message(ws.frames, message_id)["content"] == content
        for message_id in after:
            assert deltas_of(ws.frames, message_id), "the new answer streamed live"
    ended = {"a": 0, "b": 0}
    no_deltas = {"a": 0, "b": 0}
    for n, (gone, ws, mine) in enumerate(zip(leaving, back, resuming, strict=True)):
        on = "b" if n % 2 == 0 else "a"
        for message_id in mine:
            content = stored[message_id]
            assert done_of_message(ws.frames, message_id)["content"] == content
            before = deltas_of(gone.frames, message_id)
            resumed = deltas_of(ws.frames, message_id)
            no_deltas[on] += not resumed
            if resumed or (before and _joined(before) == content):
                tally.check(f"resumed {n}", message_id, before + resumed, content)
            else:
                # The answer had ended when the resume was served: the contract sends just
                # ``message.done`` with the whole text, and the instance counts it so.
                ended[on] += 1
                tally.check(f"left {n}", message_id, before, content[: len(_joined(before))])
    for on in ("a", "b"):
        assert ended[on] <= served[on].get("ended", 0) <= no_deltas[on], (on, served, ended)
        assert served[on].get("history_lost", 0) == 0
    resumed_after_end = int(sum(s.get("ended", 0) for s in served.values()))
    assert resumed_after_end < len(message_ids) / 2, "most resumes were served mid-stream"
    assert not tally.problems, tally.problems[:5]
    lost = [f for ws in [*watchers, *back] for f in ws.frames if f["type"] == "error"]
    assert not lost, lost[:3]
    streaming = sql(
        cluster.pg, cluster.database, "SELECT count(*) FROM messages WHERE status = 'streaming'"
    )
    assert streaming == [["0"]]
    assert a.process is not None
    assert b.process is not None
    assert (a.process.poll(), b.process.poll()) == (None, None), "no process restarted"
    # The outage is logged as what it is: warnings that the sweep will retry, no tracebacks.
    for instance in (a, b):
        sweep_lines = [line for line in log_lines(instance) if "sweep failed" in line["message"]]
        assert sweep_lines, "the instance noticed the outage"
        assert {line["level"] for line in sweep_lines} == {"warning"}, sweep_lines[:3]
    evidence.record(
        "redis_kill_9",
        answers=len(message_ids),
        answers_mid_stream_at_kill=mid_stream,
        ended_complete=sum(1 for m in message_ids if statuses[m] == "complete"),
        ended_failed=sum(1 for m in message_ids if statuses[m] == "failed"),
        resumes=sum(len(mine) for mine in resuming),
        resumed_after_the_end=resumed_after_end,
        deltas_checked=tally.deltas_checked,
        missing=tally.missing,
        doubled=tally.doubled,
        history_lost=len(lost),
        outage_seconds=round(outage_s, 1),
        lease_seconds=float(REALTIME_ENV["CHATRT_LEASE_TTL_S"]),
        left_streaming=0,
    )


def done_of_message(frames: list[Frame], message_id: str) -> dict[str, str]:
    found = [
        f["message"]
        for f in frames
        if f["type"] == "message.done" and f["message"]["id"] == message_id
    ]
    assert len(found) == 1, f"one message.done for {message_id}, got {len(found)}"
    message: dict[str, str] = found[0]
    return message


def _joined(deltas: list[Frame]) -> str:
    return "".join(d["delta"] for d in deltas)


async def resumes_served(client: Client) -> dict[str, float]:
    """``chatrt_resumes_total`` of one instance's WebSocket, by outcome (ok, ended, ...)."""
    served: dict[str, float] = {}
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith("chatrt_resumes_total{") and 'transport="ws"' in line:
            outcome = re.search(r'outcome="(\w+)"', line)
            assert outcome is not None
            served[outcome.group(1)] = float(line.rsplit(" ", 1)[1])
    return served


def log_lines(instance: Instance) -> list[dict[str, Any]]:
    """The instance's JSON log lines (uvicorn's own plain lines are skipped)."""
    found: list[dict[str, Any]] = []
    for text in instance.log_path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            line = json.loads(text)
            if isinstance(line, dict) and "message" in line:
                found.append(line)
    return found


def sweeps(instance: Instance) -> int:
    return instance.log_path.read_text().count("sweep failed")
