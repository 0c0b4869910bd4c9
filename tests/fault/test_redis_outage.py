"""A Redis outage is survived without restarting the process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aredis

from chatrt.bus.base import Event
from chatrt.bus.redis import RedisBus
from tests.support.servers import RedisServer
from tests.support.wait import wait_until

pytestmark = [pytest.mark.fault, pytest.mark.anyio]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, so killing it disturbs no one else."""
    with RedisServer(tmp_path, appendonly=True) as server:
        yield server


async def test_subscribers_get_a_gap_marker_and_then_live_events_again(
    own_redis: RedisServer,
) -> None:
    client = aredis.from_url(own_redis.url())
    bus = RedisBus(client, own_redis.url(), reconnect_max_s=0.2)
    async with bus, bus.subscribe() as subscription:
        await subscription.add("chatrt:c:outage")
        await bus.publish("chatrt:c:outage", b"before")
        items: list[Event | None] = []
        feed = subscription.__aiter__()
        with anyio.fail_after(5):
            while not items or items[-1] is None:
                items.append(await feed.__anext__())
        assert items[-1] == Event("chatrt:c:outage", b"before")
        own_redis.kill()
        own_redis.restart()
        with anyio.fail_after(15):
            while (item := await feed.__anext__()) is not None:
                pass  # anything that was in flight before the outage
        assert item is None, "the outage is reported as a possible gap"

        # After the reconnect the subscription is live again, with no restart.
        async def published() -> bool:
            try:
                await bus.publish("chatrt:c:outage", b"after")
            except Exception:
                return False
            return True

        await wait_until(published, within_s=15, every_s=0.1)
        with anyio.fail_after(15):
            while (item := await feed.__anext__()) is None or item.data != b"after":
                pass
        assert item == Event("chatrt:c:outage", b"after")
    await client.aclose()
