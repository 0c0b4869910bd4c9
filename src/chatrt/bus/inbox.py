"""The bounded queue behind every subscription, shared by both bus implementations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from chatrt.bus.base import Event, Subscription


class BoundedInbox:
    """A subscriber's queue. Overflow policy: drop the event and report a gap (``None``)."""

    def __init__(self, size: int) -> None:
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(size)
        self._lost = False

    def put(self, item: Event | None) -> None:
        if item is not None and self._lost:
            return  # still behind: the consumer repairs from the logs after the gap marker
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._lost = True

    async def get(self) -> Event | None:
        item = await self._queue.get()
        if self._queue.empty() and self._lost:
            self._lost = False
            self._queue.put_nowait(None)
        return item


class InboxSubscription(Subscription):
    """A subscription that reads from its own :class:`BoundedInbox`."""

    def __init__(self, size: int) -> None:
        self.inbox = BoundedInbox(size)
        self.channels: set[str] = set()

    async def __aiter__(self) -> AsyncIterator[Event | None]:
        while True:
            yield await self.inbox.get()
