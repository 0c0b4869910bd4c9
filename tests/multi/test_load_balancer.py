"""The compose topology without Docker: the project's nginx config in front of two instances."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import Backend
from tests.realtime.conftest import REALTIME_ENV, providers_env
from tests.support.client import Client
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.instances import Instance
from tests.support.nginx import Nginx
from tests.support.sse import SseEvent, read_sse, sse_deltas
from tests.support.ws import WsClient, deltas_of, done_of

pytestmark = [pytest.mark.multi, pytest.mark.anyio]


@pytest.fixture
def balanced(
    postgres_backend: Backend, fake: FakeOpenAI, tmp_path: Path
) -> Iterator[tuple[Nginx, Instance, Instance]]:
    env = postgres_backend.defaults | postgres_backend.env | REALTIME_ENV
    env |= {
        "CHATRT_PROVIDERS": providers_env(fake, "primary"),
        # Not the proxy's origin: a socket through nginx passes the Origin check only as
        # same-origin, which needs the Host header forwarded with its port.
        "CHATRT_ALLOWED_ORIGINS": "https://chat.example.com",
    }
    a, b = Instance(env, tmp_path, "a"), Instance(env, tmp_path, "b")
    folder = tmp_path / "nginx"
    folder.mkdir()
    with a, b, Nginx(folder, (f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}")) as nginx:
        yield nginx, a, b


@pytest.fixture
async def http(balanced: tuple[Nginx, Instance, Instance]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=balanced[0].url, timeout=30) as client:
        yield client


async def _socket(nginx: Nginx, session: str, tag: str) -> WsClient:
    url = nginx.url.replace("http://", "ws://") + "/ws"
    headers = {"cookie": f"session={session}", "origin": nginx.url, "x-request-id": tag}
    return WsClient(await connect(url, additional_headers=headers, max_size=None))


async def test_one_answer_through_nginx_reaches_sockets_and_sse_on_both_instances(
    balanced: tuple[Nginx, Instance, Instance], http: httpx.AsyncClient, fake: FakeOpenAI
) -> None:
    nginx, a, b = balanced
    tokens = [f"n{i} " for i in range(150)]
    fake.script("primary", Script(tokens=tokens, delay_s=0.01))  # about 1.5 s of answer
    alice = Client(http)
    await alice.register()
    conversation = await alice.create_conversation(title="through nginx")
    tag = uuid.uuid4().hex[:12]
    for n in range(4):
        # Our request log keeps no query strings: the request id marks a probe instead.
        probe = await http.get("/api/auth/me", headers={"x-request-id": f"{tag}-probe-{n}"})
        assert probe.status_code == 200
    sockets: list[WsClient] = []
    try:
        # Two handshakes in a row: round robin puts them on different instances.
        for n in (1, 2):
            sockets.append(await _socket(nginx, alice.session, f"{tag}-ws{n}"))
        for ws in sockets:
            await ws.send({"type": "subscribe", "conversation_id": conversation["id"]})
            assert (await ws.recv())["type"] == "subscribed"
        sent = await alice.send(conversation["id"], "through the balancer")
        assert sent.status_code == 202, sent.text
        message_id = sent.json()["assistant_message"]["id"]
        url = f"/api/conversations/{conversation['id']}/messages/{message_id}/stream"
        sse: list[SseEvent] = []
        finished: list[float] = []

        async def follow(ws: WsClient) -> None:
            await ws.recv_until(done_of(message_id), within_s=30)
            finished.append(time.monotonic())

        async with anyio.create_task_group() as group:
            group.start_soon(read_sse, alice.http, url, sse)
            for ws in sockets:
                group.start_soon(follow, ws)
    finally:
        for ws in sockets:
            await ws.close()

    content = "".join(tokens)
    streams = {f"ws{n}": deltas_of(ws.frames, message_id) for n, ws in enumerate(sockets, 1)}
    streams["sse"] = sse_deltas(sse)
    for name, deltas in streams.items():
        assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1)), name
        assert "".join(d["delta"] for d in deltas) == content, name
    for ws in sockets:
        assert ws.frames[-1]["message"]["content"] == content
    assert sse[-1].name == "message.done"
    assert sse[-1].data["message"]["content"] == content
    # Unbuffered: the first event reached the SSE client long before the answer ended.
    assert sse[0].at < min(finished) - 0.3
    assert (await alice.history(conversation["id"]))[0]["content"] == content
    # Metrics are for the scraper on the private network, not for the internet.
    assert (await http.get("/metrics")).status_code == 404

    logs = {instance.name: instance.log_path.read_text() for instance in (a, b)}
    for name, log in logs.items():
        assert f'"request_id": "{tag}-probe-' in log, f"no request via nginx reached {name}"
    socket_on = {
        ws: {name for name, log in logs.items() if f'"request_id": "{tag}-{ws}"' in log}
        for ws in ("ws1", "ws2")
    }
    assert socket_on["ws1"] | socket_on["ws2"] == {"a", "b"}, socket_on
    assert len(socket_on["ws1"]) == len(socket_on["ws2"]) == 1, socket_on
