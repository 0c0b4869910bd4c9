"""Helpers for the fault tests that kill and restart servers: sockets, checks and SQL reads."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import anyio
import httpx
from websockets.exceptions import ConnectionClosed

from tests.conftest import Backend
from tests.realtime.conftest import REALTIME_ENV, providers_env
from tests.support.client import Client
from tests.support.fake_openai import FakeOpenAI
from tests.support.instances import Instance
from tests.support.servers import PostgresServer
from tests.support.wait import wait_until
from tests.support.ws import Frame, WsClient, deltas_of


@contextmanager
def running(*instances: Instance) -> Iterator[None]:
    """Start the instances side by side (a start is mostly waiting), stop them all on exit."""
    try:
        with ThreadPoolExecutor(len(instances)) as pool:
            list(pool.map(Instance.start, instances))
        yield
    finally:
        with ThreadPoolExecutor(len(instances)) as pool:
            list(pool.map(Instance.stop, instances))


@contextmanager
def two_instances(
    backend: Backend, fake: FakeOpenAI, log_dir: Path, **env: str
) -> Iterator[tuple[Instance, Instance]]:
    """Instances a and b on ``backend``, the fake as their provider, running side by side."""
    settings = backend.defaults | backend.env | REALTIME_ENV
    settings |= {"CHATRT_PROVIDERS": providers_env(fake, "primary"), **env}
    a, b = Instance(settings, log_dir, "a"), Instance(settings, log_dir, "b")
    with running(a, b):
        yield a, b


class Connections:
    """HTTP and WebSocket clients that are all closed on exit, also when the test fails."""

    def __init__(self) -> None:
        self.opened: list[WsClient] = []
        self.https: list[httpx.AsyncClient] = []

    def client(self, instance: Instance) -> Client:
        http = httpx.AsyncClient(base_url=instance.url, timeout=30)
        self.https.append(http)
        return Client(http)

    async def open(self, url: str, session: str) -> WsClient:
        socket = await WsClient.connect(url, session)
        self.opened.append(socket)
        return socket

    async def __aenter__(self) -> Connections:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for socket in self.opened:
            # A socket whose instance was killed is already gone; closing it may hang.
            with anyio.move_on_after(2) as scope:
                await socket.close()
            if scope.cancelled_caught:
                drop(socket)  # no closing handshake with a killed or stalled server
        for http in self.https:
            await http.aclose()


async def pump(ws: WsClient) -> None:
    """Read frames into ``ws.frames`` until the connection ends, as a browser tab does.

    Run beside the test for every socket it watches: a socket nobody reads fills up, and
    the server rightly closes it as too slow.
    """
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.recv(within_s=3600)


def drop(ws: WsClient) -> None:
    """Cut the client's connection without a closing handshake, as a lost network does."""
    ws.connection.transport.abort()


async def frames_show(check: Callable[[], bool], within_s: float) -> None:
    """Wait until ``check`` (on frames pumped in the background) holds."""

    async def holds() -> bool:
        return check()

    await wait_until(holds, within_s=within_s)


def seq_reached(ws: WsClient, message_ids: Iterable[str], seq: int) -> Callable[[], bool]:
    """True once ``ws`` has a delta with at least ``seq`` for every one of ``message_ids``."""
    wanted = set(message_ids)

    def check() -> bool:
        reached = {
            f["message_id"] for f in ws.frames if f["type"] == "message.delta" and f["seq"] >= seq
        }
        return wanted <= reached

    return check


def all_done(ws: WsClient, message_ids: Iterable[str]) -> Callable[[], bool]:
    wanted = set(message_ids)
    return lambda: wanted <= done_ids(ws.frames)


def last_seqs(ws: WsClient, message_ids: Iterable[str]) -> dict[str, int]:
    """The highest seq ``ws`` received of each answer (0 for none)."""
    return {m: max((d["seq"] for d in deltas_of(ws.frames, m)), default=0) for m in message_ids}


async def subscribe_all(ws: WsClient, conversation_ids: list[str], pumped: bool = False) -> None:
    """Subscribe to each conversation and wait for the last confirmation.

    ``pumped``: the socket is already read by :func:`pump`, so wait on its frames.
    """
    for conversation_id in conversation_ids:
        await ws.send({"type": "subscribe", "conversation_id": conversation_id})
    last = conversation_ids[-1]

    def confirmed(frame: Frame) -> bool:
        return bool(frame["type"] == "subscribed" and frame["conversation_id"] == last)

    if pumped:
        await frames_show(lambda: any(confirmed(f) for f in ws.frames), within_s=15)
    else:
        await ws.recv_until(confirmed)


def done_ids(frames: Iterable[Frame]) -> set[str]:
    return {f["message"]["id"] for f in frames if f["type"] == "message.done"}


async def recv_until_done(ws: WsClient, message_ids: Iterable[str], within_s: float) -> None:
    """Read frames until ``message.done`` of every one of ``message_ids`` has arrived."""
    wanted = set(message_ids)
    with anyio.fail_after(within_s):
        while not wanted <= done_ids(ws.frames):
            await ws.recv(within_s)


@dataclass
class Tally:
    """Deltas checked against ``seq`` 1..n exactly once, and what was missing or doubled."""

    answers: int = 0
    deltas_checked: int = 0
    missing: int = 0
    doubled: int = 0
    problems: list[str] = field(default_factory=list)

    def check(self, who: str, message_id: str, deltas: list[Frame], content: str) -> None:
        """``deltas`` must carry seq 1..n once each and join to ``content``, byte for byte."""
        self.answers += 1
        seqs = [d["seq"] for d in deltas]
        self.deltas_checked += len(seqs)
        top = max(seqs, default=0)
        missing = len(set(range(1, top + 1)) - set(seqs))
        doubled = len(seqs) - len(set(seqs))
        self.missing += missing
        self.doubled += doubled
        if missing or doubled or seqs != sorted(seqs):
            self.problems.append(f"{who} {message_id}: seqs {seqs}")
        elif "".join(d["delta"] for d in deltas) != content:
            self.problems.append(f"{who} {message_id}: deltas do not join to the content")


def check_frames(tally: Tally, who: str, frames: list[Frame], final: Mapping[str, str]) -> None:
    """Check every answer in ``final`` (message id -> stored content) on one socket's frames."""
    for message_id, content in final.items():
        tally.check(who, message_id, deltas_of(frames, message_id), content)


def is_token_prefix(content: str, tokens: list[str]) -> bool:
    """True when ``content`` is the first k tokens joined, for some k."""
    joined = ""
    for token in tokens:
        if joined == content:
            return True
        joined += token
    return joined == content


def sql(pg: PostgresServer, database: str, query: str) -> list[list[str]]:
    """Rows of a query, each a list of text cells (``|``-separated by psql)."""
    out = pg.psql(query, database)
    return [line.split("|") for line in out.splitlines() if line]
