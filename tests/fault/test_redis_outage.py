"""A Redis outage is survived without restarting the process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aredis

from chatrt.bus.base import Event
from chatrt.bus.redis import RedisBus
from tests.support.proxy import SilentProxy
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


async def test_a_silent_partition_is_noticed_and_reported_as_a_gap(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """No reset, no error, just silence: the keepalive notices and the reader reconnects."""
    client = aredis.from_url(own_redis.url())
    with SilentProxy("127.0.0.1", own_redis.port) as proxy:
        bus = RedisBus(client, proxy.url(), reconnect_max_s=0.2, keepalive_s=0.2, timeout_s=1)
        async with bus, bus.subscribe() as subscription:
            await subscription.add("chatrt:c:dark")
            feed = subscription.__aiter__()
            await bus.publish("chatrt:c:dark", b"before")
            with anyio.fail_after(5):
                while (item := await feed.__anext__()) is None:
                    pass
            assert item == Event("chatrt:c:dark", b"before")
            proxy.silent = True
            await bus.publish("chatrt:c:dark", b"lost in the dark")
            caplog.set_level(logging.WARNING, logger="chatrt.bus")

            async def noticed() -> bool:
                return any("pub/sub lost" in r.getMessage() for r in caplog.records)

            await wait_until(noticed, within_s=10)
            proxy.silent = False
            seen: list[Event | None] = []
            after = Event("chatrt:c:dark", b"after")

            async def collect() -> None:
                async for event in feed:
                    seen.append(event)

            async def heard_again() -> bool:
                await bus.publish("chatrt:c:dark", b"after")
                return after in seen

            async with anyio.create_task_group() as group:
                group.start_soon(collect)
                await wait_until(heard_again, within_s=15, every_s=0.1)
                group.cancel_scope.cancel()
            assert Event("chatrt:c:dark", b"lost in the dark") not in seen
            first_after = seen.index(after)
            assert None in seen[:first_after], "the silent loss is reported before live events"
    await client.aclose()
