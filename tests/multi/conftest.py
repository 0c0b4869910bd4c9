"""Fixtures shared by the tests that run real chatrt processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from tests.support.client import Client
from tests.support.instances import Instance

ClientOn = Callable[[Instance], Client]


@pytest.fixture
async def client_on() -> AsyncIterator[ClientOn]:
    """A new HTTP client for an instance; all of them are closed at teardown."""
    opened: list[httpx.AsyncClient] = []

    def connect(instance: Instance) -> Client:
        # uvicorn drops idle keep-alive connections after 5 s; reusing one as it goes away
        # fails the request with a ReadError, so idle connections are let go first.
        http = httpx.AsyncClient(
            base_url=instance.url, timeout=30, limits=httpx.Limits(keepalive_expiry=1)
        )
        opened.append(http)
        return Client(http)

    yield connect
    for http in opened:
        await http.aclose()
