"""PostgreSQL killed (kill -9) or stopped, then restarted, behind two running instances.

During each outage a burst of requests hits both instances: sends, reads, a new
conversation and the readiness probe. Every one of them gets a 503 in the contract's error
shape (``service_unavailable``, no stack trace, SQL or internal name), never a 500; a send
over an open WebSocket gets a retryable ``service_unavailable`` error frame. The
instances recover by themselves: ``/health/ready`` is 200 again and sends work, with no
process restart.

What a send that got a 503 leaves behind is defined as: nothing, or its whole effect (the
user message and its answer, together). Each is then retried with the same
``client_message_id``, as the contract allows, and afterwards every accepted send has
exactly one user message and one answer that ended in a terminal state, ``message_index``
has no gaps or duplicates, and no row is ``streaming``. An answer that was streaming when
the database went away ends too, with the text it had.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import SECRET, Backend, run_chatrt
from tests.fault.servers_support import (
    Connections,
    all_done,
    frames_show,
    is_token_prefix,
    pump,
    running,
    sql,
    subscribe_all,
)
from tests.realtime.conftest import REALTIME_ENV, providers_env
from tests.support.client import Client
from tests.support.evidence import Evidence
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.instances import Instance
from tests.support.servers import PostgresServer, RedisServer
from tests.support.wait import wait_until
from tests.support.ws import deltas_of

pytestmark = [pytest.mark.fault, pytest.mark.multi, pytest.mark.anyio]

DATABASE = "chatrt"
BURST = 20  # sends per outage, half on each instance
LONG = [f"L{i} " for i in range(60)]  # about 3 s at 50 ms a token
SHORT = [f"s{i} " for i in range(5)]
# Nothing of the server's insides may reach a client, whatever failed.
INTERNALS = ("Traceback", "asyncpg", "postgres", "Error:", "SELECT", "INSERT", "File ")


@dataclass
class Cluster:
    a: Instance
    b: Instance
    pg: PostgresServer


@pytest.fixture
def cluster(fake: FakeOpenAI, tmp_path: Path) -> Iterator[Cluster]:
    # Not under pytest's temp root (see the pg_server fixture); synchronous commits, so a
    # commit acknowledged before kill -9 survives it and "left nothing" is well defined.
    base = Path(tempfile.mkdtemp(prefix="chatrt-pg-restart-"))
    try:
        with (
            PostgresServer(base, settings={"synchronous_commit": "on"}) as pg,
            RedisServer(tmp_path / "redis") as redis,
        ):
            pg.create_database(DATABASE)
            migrated = run_chatrt("migrate", env={"CHATRT_DATABASE_URL": pg.dsn(DATABASE)})
            assert migrated.returncode == 0, migrated.stderr + migrated.stdout
            env = Backend("postgres", {}).defaults | REALTIME_ENV
            env |= {
                "CHATRT_DATABASE_URL": pg.dsn(DATABASE),
                "CHATRT_REDIS_URL": redis.url(),
                "CHATRT_SECRET_KEY": SECRET,
                "CHATRT_DB_POOL_MIN": "2",
                "CHATRT_DB_POOL_MAX": "10",
                "CHATRT_PROVIDERS": providers_env(fake, "primary"),
            }
            a, b = Instance(env, tmp_path, "a"), Instance(env, tmp_path, "b")
            with running(a, b):
                yield Cluster(a, b, pg)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def assert_unavailable(response: httpx.Response) -> None:
    """A 503 in the contract's error shape, with nothing internal in it."""
    assert response.status_code == 503, (response.request.url, response.status_code, response.text)
    body: Any = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == "service_unavailable", body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    leaked = [word for word in INTERNALS if word in response.text]
    assert not leaked, response.text


async def call(
    into: list[httpx.Response], client: Client, method: str, url: str, body: Any = None
) -> None:
    into.append(await client.request(method, url, json=body))


async def ready(instance: Instance) -> bool:
    async with httpx.AsyncClient(base_url=instance.url, timeout=5) as http:
        try:
            return (await http.get("/health/ready")).status_code == 200
        except httpx.TransportError:
            return False


async def test_requests_during_a_postgres_outage_get_503_and_the_service_recovers_by_itself(
    cluster: Cluster, fake: FakeOpenAI, evidence: Evidence
) -> None:
    a, b, pg = cluster.a, cluster.b, cluster.pg
    outcomes = dict.fromkeys(("requests", "unavailable", "ws_unavailable", "left_whole"), 0)
    outcomes["left_none"] = 0
    spanning: dict[str, str] = {}  # answer id -> how the outage hit it
    sends: dict[str, str] = {}  # client_message_id -> conversation id
    async with Connections() as connections, anyio.create_task_group() as pumps:
        alice = connections.client(a)
        await alice.register()
        alice_b = connections.client(b)
        alice_b.sign_in_as(alice)
        by_instance = (alice, alice_b)
        watcher = await connections.open(b.url, alice.session)
        pumps.start_soon(pump, watcher)

        for how in ("kill", "stop"):
            conversations = [(await alice.create_conversation())["id"] for _ in range(BURST + 2)]
            # One answer is streaming on A when the database goes away.
            await subscribe_all(watcher, conversations[BURST:], pumped=True)
            fake.script("primary", Script(tokens=LONG, delay_s=0.05))
            sent = await alice.send(conversations[-1], "a long answer")
            assert sent.status_code == 202, sent.text
            long_answer = sent.json()["assistant_message"]["id"]
            await frames_show(lambda m=long_answer: len(deltas_of(watcher.frames, m)) >= 3, 15)
            fake.script("primary", Script(tokens=SHORT, delay_s=0.01))

            await anyio.to_thread.run_sync(pg.kill if how == "kill" else pg.stop)
            responses: list[httpx.Response] = []
            async with anyio.create_task_group() as burst:
                for n, conversation_id in enumerate(conversations[:BURST]):
                    client_id = f"{how}-{n}-{uuid.uuid4().hex[:8]}"
                    sends[client_id] = conversation_id
                    body = {"content": f"during the outage {n}", "client_message_id": client_id}
                    url = f"/api/conversations/{conversation_id}/messages"
                    burst.start_soon(call, responses, by_instance[n % 2], "POST", url, body)
                for client in by_instance:
                    burst.start_soon(call, responses, client, "GET", "/api/conversations")
                    burst.start_soon(
                        call, responses, client, "GET", f"/api/conversations/{conversations[0]}"
                    )
                    burst.start_soon(
                        call, responses, client, "POST", "/api/conversations", {"title": "x"}
                    )
                    burst.start_soon(call, responses, client, "GET", "/health/ready")
            # A send over the socket (connected before the outage) gets a retryable error.
            ws_client_id = f"{how}-ws-{uuid.uuid4().hex[:8]}"
            sends[ws_client_id] = conversations[BURST]
            frame = {"type": "send", "conversation_id": conversations[BURST]}
            await watcher.send(frame | {"content": "by socket", "client_message_id": ws_client_id})
            await frames_show(lambda: any(f["type"] == "error" for f in watcher.frames), 15)
            [refused] = [f for f in watcher.frames if f["type"] == "error"]
            watcher.frames.remove(refused)
            outcomes["ws_unavailable"] += 1
            assert (refused["code"], refused["retryable"], refused["ref"]) == (
                "service_unavailable",
                True,
                "send",
            ), refused
            for response in responses:
                assert_unavailable(response)
            # Who is signed in needs no database: the session (in Redis) carries the user.
            for client in by_instance:
                me = await client.get("/api/auth/me")
                assert me.status_code == 200, me.text
                assert me.json()["user"] == alice.user
            for response in responses:
                if response.request.url.path == "/health/ready":
                    assert response.json()["error"]["details"]["failed"] == ["database"]
            outcomes["requests"] += len(responses)
            outcomes["unavailable"] += sum(1 for r in responses if r.status_code == 503)

            await anyio.to_thread.run_sync(pg.start)
            for instance in (a, b):
                await wait_until(lambda i=instance: ready(i), within_s=30, every_s=0.2)

            # What each 503'd send left: nothing, or both of its messages.
            for client_id in [c for c in sends if c.startswith(how)]:
                rows = sql(
                    pg,
                    DATABASE,
                    "SELECT m.role FROM messages m JOIN messages u"
                    " ON u.conversation_id = m.conversation_id"
                    " AND m.message_index IN (u.message_index, u.message_index + 1)"
                    f" WHERE u.client_message_id = '{client_id}' ORDER BY m.message_index",
                )
                assert rows in ([], [["user"], ["assistant"]]), (client_id, rows)
                outcomes["left_whole" if rows else "left_none"] += 1

            # Retried with the same client_message_id, each send is taken exactly once.
            retried: list[str] = []
            for n, client_id in enumerate(c for c in sends if c.startswith(how)):
                again = await by_instance[n % 2].send(
                    sends[client_id], f"during the outage {n}", client_message_id=client_id
                )
                assert again.status_code == 202, again.text
                retried.append(again.json()["assistant_message"]["id"])
            for client_id, message_id in zip(
                [c for c in sends if c.startswith(how)], retried, strict=True
            ):
                done = await alice_b.wait_finished(sends[client_id], message_id, within_s=30)
                assert done["status"] == "complete", done
                assert done["content"] == "".join(SHORT)
            await frames_show(all_done(watcher, [long_answer]), within_s=30)
            spanning[long_answer] = how

        history = {
            m["id"]: m
            for conversation_id in {*sends.values()}
            for m in await alice.history(conversation_id)
        }
        for message_id in spanning:
            conversation_id = next(
                f["message"]["conversation_id"]
                for f in watcher.frames
                if f["type"] == "message.done" and f["message"]["id"] == message_id
            )
            history |= {m["id"]: m for m in await alice.history(conversation_id)}
        pumps.cancel_scope.cancel()

    for message_id in spanning:
        final = history[message_id]
        assert final["status"] in ("complete", "failed"), final
        assert is_token_prefix(final["content"], LONG), final
        joined = "".join(d["delta"] for d in deltas_of(watcher.frames, message_id))
        assert joined == final["content"], "the watcher's deltas join to the stored text"

    rows = sql(
        pg,
        DATABASE,
        "SELECT conversation_id, message_index, role, status, coalesce(client_message_id, '')"
        " FROM messages ORDER BY conversation_id, message_index",
    )
    by_conversation: dict[str, list[list[str]]] = {}
    for row in rows:
        by_conversation.setdefault(row[0], []).append(row)
    for conversation_rows in by_conversation.values():
        indexes = [int(r[1]) for r in conversation_rows]
        assert indexes == list(range(len(indexes))), "message_index has no gaps or doubles"
        assert [r[2] for r in conversation_rows] == ["user", "assistant"] * (len(indexes) // 2)
    assert not [r for r in rows if r[3] == "streaming"], "no row stays streaming"
    users_by_client_id = [r[4] for r in rows if r[2] == "user" and r[4] in sends]
    assert sorted(users_by_client_id) == sorted(sends), "each accepted send exactly once"
    assert a.process is not None
    assert b.process is not None
    assert (a.process.poll(), b.process.poll()) == (None, None), "no process restarted"
    evidence.record(
        "postgres_outage",
        outages=2,
        requests_during_outage=outcomes["requests"],
        answered_503=outcomes["unavailable"],
        answered_other=outcomes["requests"] - outcomes["unavailable"],
        ws_sends_refused_retryable=outcomes["ws_unavailable"],
        sends_refused=len(sends),
        sends_left_nothing=outcomes["left_none"],
        sends_left_whole=outcomes["left_whole"],
        sends_stored_twice=len(users_by_client_id) - len(set(users_by_client_id)),
        answers_spanning_outage=len(spanning),
        spanning_ended_complete=sum(1 for m in spanning if history[m]["status"] == "complete"),
        left_streaming=0,
    )
