"""500 answers over two instances while clients keep dropping and resuming.

Two real ``chatrt serve`` processes share PostgreSQL and Redis; the model is
``bench.upstream`` in its own process, 20 tokens at 0.8 a second. 100 WebSocket clients
(20 users with five tabs each, every tab following five conversations) connect to a random
instance. 500 answers are started over REST, spread over both instances, and while they
stream each client keeps dropping its connection (half of the time abruptly, without a
close handshake) after a random spell of 3-6 s, reconnecting to a random instance and
resuming every answer it follows from the last seq it processed (and any answer its
``subscribed`` frame lists as streaming), until at least 1,000 resumes have been sent. Then
each client stays connected until every one of its answers has ended.

For every client and answer the test counts the deltas it received: ``doubled`` (a seq
twice) and ``missing`` (a seq in 1..N, N being the answer's last seq in its log, that never
arrived) must both be 0, the deltas joined must equal the stored content, and every answer
must be stored ``complete`` with the full text. By contract, a resume that reaches the
server after the answer ended gets just ``message.done`` (which carries the whole text);
the deltas that reply stood in for are counted apart (``tails_from_done``), not as missing.

The random choices (instance, spell length, abrupt or clean close) come from a seeded RNG;
the seed is printed and recorded, and ``CHATRT_TEST_SEED`` replays it (the network timing
still varies from run to run). Faster churn (spells under a second) overloads a busy
2-core machine: resume replies then come after the answers ended, and the test, still
passing, exercises mostly the ``message.done``-only path; the figures show which happened.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
import redis.asyncio as aredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chatrt.realtime.channels import message_log
from tests.conftest import Backend
from tests.support.client import Client
from tests.support.evidence import Evidence
from tests.support.instances import Instance
from tests.support.ws import ORIGIN

pytestmark = [pytest.mark.fault, pytest.mark.multi, pytest.mark.anyio]

ANSWERS = 500
USERS = 20
CLIENTS_PER_USER = 5
RESUMES = 1_000
# Short answers from a cheap upstream in its own process (``bench.upstream``, raw asyncio):
# 20 deltas over 25 s, so the answers overlap and most resumes land mid-stream. The suite's
# scripted fake would share this process's CPU with the 100 clients and slow both.
TOKENS = 20
TOKENS_PER_S = 0.8
EXPECTED = "".join(f"tok{i} " for i in range(TOKENS))
# How long a client stays connected before it drops, while churning.
SPELL_S = (3.0, 6.0)
SEND_CONCURRENCY = 32
FINISH_WITHIN_S = 150
QUIET_S = 10.0


@pytest.fixture
def upstream() -> Iterator[str]:
    """``bench.upstream`` on a free port; its base URL."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.upstream",
            *("--tokens", str(TOKENS), "--rate", str(TOKENS_PER_S)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("PORT "), line
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def cluster(
    postgres_backend: Backend, upstream: str, tmp_path: Path
) -> Iterator[tuple[Instance, Instance]]:
    provider = {"name": "upstream", "base_url": upstream, "api_key": "k", "model": "m"}
    env = postgres_backend.defaults | postgres_backend.env
    env |= {
        "CHATRT_PROVIDERS": json.dumps([provider]),
        "CHATRT_FLUSH_INTERVAL_MS": "20",
        "CHATRT_DB_POOL_MAX": "20",
        # Answers last seconds: checkpoints would only add database load here.
        "CHATRT_CHECKPOINT_INTERVAL_S": "10",
        # A reconnecting client sends a burst of resumes and subscribes.
        "CHATRT_WS_FRAMES_PER_SECOND": "1000",
        "CHATRT_WS_FRAME_BURST": "1000",
        "CHATRT_LOG_LEVEL": "warning",
    }
    a, b = Instance(env, tmp_path, "a"), Instance(env, tmp_path, "b")
    try:
        # Side by side: each start is seconds of imports and migrations checks.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(Instance.start, (a, b)))
        yield a, b
    finally:
        b.stop()
        a.stop()


@pytest.fixture
async def client_on() -> AsyncIterator[Callable[[Instance], Client]]:
    """A new HTTP client for an instance; all of them are closed at teardown."""
    async with AsyncExitStack() as stack:

        def connect(instance: Instance) -> Client:
            # Idle connections are dropped well before uvicorn's 5 s keep-alive ends: a
            # POST sent on one the server is closing just then fails with ReadError.
            http = httpx.AsyncClient(
                base_url=instance.url, timeout=30, limits=httpx.Limits(keepalive_expiry=1)
            )
            stack.push_async_callback(http.aclose)
            return Client(http)

        yield connect


@dataclass
class Track:
    """What one client received of one answer, over all its connections."""

    seqs: list[int] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    done: dict[str, Any] | None = None
    # A resume was sent and nothing of this answer came back since.
    awaiting_reply: bool = False
    done_only_reply: bool = False
    trail: list[str] = field(default_factory=list)  # for the failure report


@dataclass
class Shared:
    rng: random.Random
    urls: list[str]
    resumes: int = 0
    reconnects: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    all_sent: asyncio.Event = field(default_factory=asyncio.Event)
    message_of: dict[str, str] = field(default_factory=dict)  # conversation -> answer

    @property
    def churning(self) -> bool:
        return self.resumes < RESUMES


class ChurnClient:
    """One browser tab following some conversations; drops and resumes on a schedule."""

    def __init__(self, shared: Shared, session: str, conversations: list[str]) -> None:
        self.shared = shared
        self.session = session
        self.conversations = conversations
        self.tracks: dict[str, Track] = {}
        self._resumed: set[str] = set()  # on the current connection
        self._outbox: list[dict[str, Any]] = []
        self.ready = asyncio.Event()
        self._subscribed = 0
        # Reconnects because nothing came for a while with answers still open (see _read).
        self.quiet_reconnects = 0

    def _open(self) -> list[str]:
        """Answers this client knows of that have not ended for it."""
        known = (self.shared.message_of.get(c) for c in self.conversations)
        return [m for m in known if m is not None and self._track(m).done is None]

    def _track(self, message_id: str) -> Track:
        return self.tracks.setdefault(message_id, Track())

    def finished(self) -> bool:
        return self.shared.all_sent.is_set() and not self._open()

    async def run(self) -> None:
        first = True
        while not self.finished():
            url = self.shared.rng.choice(self.shared.urls)
            spell = self.shared.rng.uniform(*SPELL_S) if self.shared.churning else None
            abrupt = self.shared.rng.random() < 0.5
            if not first:
                self.shared.reconnects += 1
            ws = await connect(
                url.replace("http://", "ws://") + "/ws",
                additional_headers={"cookie": f"session={self.session}", "origin": ORIGIN},
                max_size=None,
            )
            try:
                await self._greet(ws)
                if first:
                    # Every conversation followed before the first answer starts.
                    await self._read(ws, None, until=self.ready.is_set)
                await self._read(ws, spell)
            finally:
                if abrupt and ws.transport is not None:
                    ws.transport.abort()
                with anyio.move_on_after(5):
                    await ws.close()
            first = False

    async def _greet(self, ws: ClientConnection) -> None:
        """Resume what it follows from the last seq it processed; subscribe the rest.

        Resumes go first: a subscribe alone would replay a followed answer from seq 1.
        """
        self._resumed = set()
        for message_id in self._open():
            self._resume(message_id)
        await self._flush(ws)
        for conversation_id in self.conversations:
            if conversation_id not in self.shared.message_of:
                await ws.send(json.dumps({"type": "subscribe", "conversation_id": conversation_id}))

    def _resume(self, message_id: str) -> None:
        if message_id in self._resumed:
            return
        self._resumed.add(message_id)
        track = self._track(message_id)
        after = track.seqs[-1] if track.seqs else 0
        track.awaiting_reply = True
        track.trail.append(f"resume>{after}:{time.monotonic():.2f}")
        self._outbox.append({"type": "resume", "message_id": message_id, "after_seq": after})
        self.shared.resumes += 1

    async def _flush(self, ws: ClientConnection) -> None:
        while self._outbox:
            await ws.send(json.dumps(self._outbox.pop(0)))

    async def _read(
        self, ws: ClientConnection, spell: float | None, until: Callable[[], bool] | None = None
    ) -> None:
        """Take frames until the spell ends (then drop) or, with no spell, until finished.

        With no spell, a socket quiet for ``QUIET_S`` while answers are open reconnects and
        resumes them: an answer whose id came back from REST only after a reconnect's
        subscribe, and which ended before that subscribe, is never announced on the socket.
        """
        done = until or self.finished
        deadline = None if spell is None else time.monotonic() + spell
        heard = time.monotonic()
        while not done():
            wait = QUIET_S if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                return
            if deadline is None and until is None and time.monotonic() - heard > QUIET_S:
                self.quiet_reconnects += 1
                return
            try:
                with anyio.move_on_after(wait):
                    raw = await ws.recv()
                    heard = time.monotonic()
                    self._take(json.loads(raw))
                    await self._flush(ws)
            except ConnectionClosed:
                return  # dropped by the server (say, too slow): reconnect and resume

    def _take(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if "message_id" in frame or "message" in frame:
            mid = frame.get("message_id") or frame["message"]["id"]
            self._track(mid).trail.append(f"{kind}:{frame.get('seq', '')}:{time.monotonic():.2f}")
        if kind == "message.delta":
            track = self._track(frame["message_id"])
            track.seqs.append(frame["seq"])
            track.text.append(frame["delta"])
            track.awaiting_reply = False
        elif kind == "message.done" and frame["message"]["role"] == "assistant":
            track = self._track(frame["message"]["id"])
            if track.done is None:
                track.done_only_reply = track.awaiting_reply
            track.done = frame["message"]
            track.awaiting_reply = False
        elif kind == "message.created" and frame["message"]["role"] == "assistant":
            message = frame["message"]
            self.shared.message_of.setdefault(message["conversation_id"], message["id"])
        elif kind == "subscribed":
            # Answers already streaming there: their deltas so far come only on a resume.
            for streaming in frame["streaming"]:
                message_id = streaming["message_id"]
                self.shared.message_of.setdefault(frame["conversation_id"], message_id)
                if self._track(message_id).done is None:
                    self._resume(message_id)
            self._subscribed += 1
            if self._subscribed >= len(self.conversations):
                self.ready.set()
        elif kind == "error":
            self.shared.errors.append(frame)


async def _stored(dsn: str) -> tuple[dict[str, tuple[str, str]], int]:
    """Each answer's status and content, and how many streamed at once at the peak."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT id, status, content, created_at, completed_at FROM messages"
            " WHERE role = 'assistant'"
        )
    finally:
        await connection.close()
    moments = sorted(
        [(r["created_at"], 1) for r in rows] + [(r["completed_at"], -1) for r in rows],
        key=lambda m: (m[0], m[1]),
    )
    running = peak = 0
    for _, step in moments:
        running += step
        peak = max(peak, running)
    return {str(r["id"]): (r["status"], r["content"]) for r in rows}, peak


async def _last_seqs(url: str, message_ids: list[str]) -> dict[str, int]:
    client = aredis.from_url(url)
    try:
        last: dict[str, int] = {}
        for message_id in message_ids:
            entries = await client.xrevrange(message_log(uuid.UUID(message_id)), count=1)
            last[message_id] = int(entries[0][0].decode().split("-")[0]) if entries else 0
        return last
    finally:
        await client.aclose()


# About 60 s on a busy 2-core machine; the answers alone may take FINISH_WITHIN_S under load.
@pytest.mark.timeout(240)
async def test_no_delta_is_missed_or_doubled_while_clients_churn(
    cluster: tuple[Instance, Instance],
    postgres_backend: Backend,
    client_on: Callable[[Instance], Client],
    evidence: Evidence,
) -> None:
    seed = int(os.environ.get("CHATRT_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"churn seed: {seed} (replay with CHATRT_TEST_SEED={seed})")
    a, b = cluster
    shared = Shared(random.Random(seed), [a.url, b.url])

    # Users, their conversations (titled: no title requests), spread over both instances.
    users: list[tuple[Client, Client]] = []
    for n in range(USERS):
        first = client_on(a if n % 2 == 0 else b)
        users.append((first, client_on(b if n % 2 == 0 else a)))
    async with anyio.create_task_group() as group:
        for first, _ in users:
            group.start_soon(first.register)
    for first, other in users:
        other.sign_in_as(first)
    conversations: list[tuple[int, str]] = []

    async def create(user: int, n: int) -> None:
        made = await users[user][n % 2].create_conversation(title=f"churn {n}")
        conversations.append((user, made["id"]))

    per_user = ANSWERS // USERS
    async with anyio.create_task_group() as group:
        for user in range(USERS):
            for n in range(per_user):
                group.start_soon(create, user, n)
    clients: list[ChurnClient] = []
    for user, (first, _) in enumerate(users):
        own = [c for u, c in conversations if u == user]
        share = len(own) // CLIENTS_PER_USER
        for k in range(CLIENTS_PER_USER):
            part = own[k * share : (k + 1) * share]
            clients.append(ChurnClient(shared, first.session, part))

    limit = anyio.Semaphore(SEND_CONCURRENCY)
    sent_ids: list[str] = []

    async def send(n: int, user: int, conversation_id: str) -> None:
        async with limit:
            response = await users[user][n % 2].send(conversation_id, f"question {n}")
        assert response.status_code == 202, response.text
        message_id = response.json()["assistant_message"]["id"]
        shared.message_of[conversation_id] = message_id
        sent_ids.append(message_id)

    began = time.monotonic()
    with anyio.fail_after(FINISH_WITHIN_S):
        async with anyio.create_task_group() as group:
            for client in clients:
                group.start_soon(client.run)
            for client in clients:
                await client.ready.wait()

            async def send_all() -> None:
                async with anyio.create_task_group() as senders:
                    for n, (user, conversation_id) in enumerate(conversations):
                        senders.start_soon(send, n, user, conversation_id)
                shared.all_sent.set()

            group.start_soon(send_all)
    took = time.monotonic() - began

    assert len(sent_ids) == ANSWERS
    pg, redis, db_name = postgres_backend.pg, postgres_backend.redis, postgres_backend.db_name
    assert pg is not None
    assert redis is not None
    assert db_name is not None
    stored, peak = await _stored(pg.dsn(db_name))
    last_seq = await _last_seqs(redis.url(), sent_ids)
    expected = EXPECTED
    assert {m: stored[m] for m in sent_ids} == dict.fromkeys(sent_ids, ("complete", expected))
    assert shared.errors == []

    checked = missing = doubled = tails_from_done = out_of_order = 0
    for client in clients:
        for conversation_id in client.conversations:
            message_id = shared.message_of[conversation_id]
            track = client.tracks[message_id]
            assert track.done is not None
            assert track.done["content"] == expected
            seqs, n = track.seqs, last_seq[message_id]
            checked += len(seqs)
            doubled += len(seqs) - len(set(seqs))
            out_of_order += sum(1 for x, y in itertools.pairwise(seqs) if y < x)
            got = set(seqs)
            upto = max(got, default=0)
            missing += sum(1 for s in range(1, upto + 1) if s not in got)
            if track.done_only_reply:
                tails_from_done += n - upto  # the answer had ended when the resume came
            else:
                missing += n - upto
            if upto != len(got) or (n != upto and not track.done_only_reply):
                print(f"MISSING {message_id}: seqs {seqs}, last seq {n}, trail {track.trail}")
            assert expected.startswith("".join(track.text))
    evidence.record(
        "churn_resume_two_instances",
        answers=ANSWERS,
        peak_concurrent_answers=peak,
        clients=len(clients),
        reconnects=shared.reconnects,
        resumes=shared.resumes,
        deltas_checked=checked,
        missing=missing,
        doubled=doubled,
        tails_from_done=tails_from_done,
        quiet_reconnects=sum(c.quiet_reconnects for c in clients),
        seconds=round(took, 1),
        seed=str(seed),
    )
    print(
        f"churn: {shared.resumes} resumes, {shared.reconnects} reconnects, {checked} deltas, "
        f"{missing} missing, {doubled} doubled, {tails_from_done} tails from done, {took:.1f} s"
    )
    assert shared.resumes >= RESUMES
    assert (missing, doubled, out_of_order) == (0, 0, 0)
