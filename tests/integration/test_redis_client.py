"""The shared Redis client absorbs bursts larger than its pool."""

from __future__ import annotations

import anyio
import pytest

from chatrt.redis_client import connect
from chatrt.settings import RedisSettings
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_a_burst_beyond_the_pool_waits_for_a_connection(redis_server: RedisServer) -> None:
    client = connect(RedisSettings(url=redis_server.url(), max_connections=2, timeout_s=5))
    results: list[object] = []

    async def slow_command() -> None:
        # Holds its connection for 50 ms, like a publish under load.
        results.append(await client.blpop(["chatrt:test:never-filled"], timeout=0.05))

    try:
        async with anyio.create_task_group() as group:
            for _ in range(12):
                group.start_soon(slow_command)
        assert results == [None] * 12
        assert len(client.connection_pool._in_use_connections) == 0  # type: ignore[attr-defined]
    finally:
        await client.aclose()
