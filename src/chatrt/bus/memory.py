"""In-process bus for the embedded default: one process, no network."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from chatrt.bus.base import Event, EventBus, LogEntry, Subscription
from chatrt.bus.inbox import InboxSubscription

T = TypeVar("T")


class MemorySubscription(InboxSubscription):
    def __init__(self, bus: MemoryBus, size: int) -> None:
        super().__init__(size)
        self._bus = bus

    async def add(self, *channels: str) -> None:
        for channel in channels:
            self.channels.add(channel)
            self._bus._subscribers[channel].add(self)

    async def remove(self, *channels: str) -> None:
        for channel in channels:
            self.channels.discard(channel)
            subscribers = self._bus._subscribers.get(channel)
            if subscribers is not None:
                subscribers.discard(self)
                if not subscribers:
                    del self._bus._subscribers[channel]


class _Log:
    __slots__ = ("entries", "expires_at")

    def __init__(self, expires_at: float) -> None:
        self.entries: list[LogEntry] = []
        self.expires_at = expires_at


class MemoryBus(EventBus):
    def __init__(self, inbox_size: int = 4096, max_log_entries: int = 20_000) -> None:
        self._subscribers: defaultdict[str, set[MemorySubscription]] = defaultdict(set)
        self._logs: dict[str, _Log] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._flags: dict[str, float] = {}
        self._inbox_size = inbox_size
        self._max_log = max_log_entries

    async def publish(self, channel: str, data: bytes) -> None:
        event = Event(channel, data)
        for subscription in tuple(self._subscribers.get(channel, ())):
            subscription.inbox.put(event)

    def _log(self, log_key: str) -> _Log | None:
        log = self._logs.get(log_key)
        if log is not None and log.expires_at <= time.monotonic():
            del self._logs[log_key]
            return None
        return log

    async def open_log(self, log_key: str, ttl_s: float) -> None:
        if self._log(log_key) is None:
            self._logs[log_key] = _Log(time.monotonic() + ttl_s)
        _drop_expired(self._logs, lambda log: log.expires_at)

    async def append_and_publish(
        self, log_key: str, seq: int, channel: str, data: bytes, ttl_s: float
    ) -> None:
        log = self._log(log_key)
        if log is None:
            log = self._logs[log_key] = _Log(0.0)
        last = log.entries[-1].seq if log.entries else 0
        if seq <= last:
            raise ValueError(f"seq {seq} is not after {last}")
        log.entries.append(LogEntry(seq, data))
        if len(log.entries) > self._max_log:
            del log.entries[: len(log.entries) - self._max_log]
        log.expires_at = time.monotonic() + ttl_s
        await self.publish(channel, data)

    async def read_log(self, log_key: str, after_seq: int) -> list[LogEntry] | None:
        log = self._log(log_key)
        if log is None:
            return None
        return [entry for entry in log.entries if entry.seq > after_seq]

    async def last_seq(self, log_key: str) -> int | None:
        log = self._log(log_key)
        if log is None:
            return None
        return log.entries[-1].seq if log.entries else 0

    async def expire_log(self, log_key: str, ttl_s: float) -> None:
        log = self._log(log_key)
        if log is not None:
            log.expires_at = time.monotonic() + ttl_s

    async def acquire_lease(self, key: str, owner: str, ttl_s: float) -> bool:
        _drop_expired(self._leases, lambda held: held[1])
        if await self.lease_holder(key) is not None:
            return False
        self._leases[key] = (owner, time.monotonic() + ttl_s)
        return True

    async def renew_lease(self, key: str, owner: str, ttl_s: float) -> bool:
        if await self.lease_holder(key) != owner:
            return False
        self._leases[key] = (owner, time.monotonic() + ttl_s)
        return True

    async def release_lease(self, key: str, owner: str) -> None:
        if await self.lease_holder(key) == owner:
            del self._leases[key]

    async def lease_holder(self, key: str) -> str | None:
        held = self._leases.get(key)
        if held is None:
            return None
        if held[1] <= time.monotonic():
            del self._leases[key]
            return None
        return held[0]

    async def set_flag(self, key: str, ttl_s: float) -> None:
        _drop_expired(self._flags, lambda expires_at: expires_at)
        self._flags[key] = time.monotonic() + ttl_s

    async def flag_raised(self, key: str) -> bool:
        return self._flags.get(key, 0.0) > time.monotonic()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        subscription = MemorySubscription(self, self._inbox_size)
        try:
            yield subscription
        finally:
            await subscription.remove(*subscription.channels)

    async def ping(self) -> None:
        return None


def _drop_expired(items: dict[str, T], expiry: Callable[[T], float]) -> None:
    """Forget what has expired, so keys nobody asks about again do not pile up."""
    now = time.monotonic()
    for key in [k for k, value in items.items() if expiry(value) <= now]:
        del items[key]
