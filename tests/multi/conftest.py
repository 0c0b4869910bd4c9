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
        http = httpx.AsyncClient(base_url=instance.url, timeout=30)
        opened.append(http)
        return Client(http)

    yield connect
    for http in opened:
        await http.aclose()
