"""Fixtures for the real-time tests: the fake model server and a live chatrt on a port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from litestar import Litestar

from chatrt.app import create_app
from chatrt.bus.base import EventBus
from tests.conftest import Backend
from tests.support.client import Client
from tests.support.fake_openai import FakeOpenAI
from tests.support.live import live_server
from tests.support.ws import WsClient


def providers_env(
    fake: FakeOpenAI, *names: str, prices: Mapping[str, tuple[float, float]] | None = None
) -> str:
    """``CHATRT_PROVIDERS`` for the fake server's ``names``; prices are per million tokens."""
    return json.dumps(
        [
            {
                "name": name,
                "base_url": fake.base_url(name),
                "api_key": "test-key",
                "model": f"model-{name}",
                "input_price_per_mtok": (prices or {}).get(name, (1.0, 2.0))[0],
                "output_price_per_mtok": (prices or {}).get(name, (1.0, 2.0))[1],
            }
            for name in names
        ]
    )


REALTIME_ENV = {
    "CHATRT_PROVIDER_CONNECT_TIMEOUT_S": "2",
    "CHATRT_PROVIDER_READ_TIMEOUT_S": "3",
    "CHATRT_LEASE_TTL_S": "1.5",
    "CHATRT_SWEEP_INTERVAL_S": "0.5",
    "CHATRT_CHECKPOINT_INTERVAL_S": "0.3",
    "CHATRT_FLUSH_INTERVAL_MS": "20",
}


@dataclass
class Live:
    url: str
    app: Litestar
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    sockets: list[WsClient] = field(default_factory=list)

    @property
    def bus(self) -> EventBus:
        bus: EventBus = self.app.state.bus
        return bus

    async def user(self) -> Client:
        http = httpx.AsyncClient(base_url=self.url, timeout=30)
        self.clients.append(http)
        client = Client(http)
        await client.register()
        return client

    async def ws(self, client: Client) -> WsClient:
        socket = await WsClient.connect(self.url, client.session)
        self.sockets.append(socket)
        return socket


async def start_live(backend: Backend, **env: str) -> AsyncIterator[Live]:
    settings = backend.settings(**(REALTIME_ENV | env))
    app = create_app(settings)
    async with live_server(app, ws_max_size=settings.realtime.max_frame_bytes + 1024) as url:
        live = Live(url, app)
        try:
            yield live
        finally:
            for socket in live.sockets:
                await socket.close()
            for http in live.clients:
                await http.aclose()


@asynccontextmanager
async def serving(backend: Backend, **env: str) -> AsyncIterator[Live]:
    """``start_live`` that shuts down at once, also when the test fails inside it."""
    async with aclosing(start_live(backend, **env)) as running:
        async for live in running:
            yield live
            return


@pytest.fixture
async def live(backend: Backend, fake: FakeOpenAI) -> AsyncIterator[Live]:
    """chatrt on the current backend with the fake server as its only provider."""
    async for running in start_live(backend, CHATRT_PROVIDERS=providers_env(fake, "primary")):
        yield running
