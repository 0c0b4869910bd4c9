"""The event bus: live fan-out, per-message replay logs, leases and control signals.

Two implementations behave identically (one contract test suite runs on both): Redis, for
production and several instances, and in-process memory, for the embedded default. Feature
code talks only to :class:`EventBus`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import msgspec


class LogEntry(msgspec.Struct, frozen=True, array_like=True):
    seq: int
    data: bytes


class Event(msgspec.Struct, frozen=True, array_like=True):
    """One live message on a channel; ``data`` is an encoded frame."""

    channel: str
    data: bytes


class Subscription(ABC):
    """A live feed of events on a changing set of channels, for one consumer.

    Live delivery is at most once: after a bus outage events may be missing, which the
    subscription reports with a ``None`` item so the consumer can repair from the logs.
    """

    @abstractmethod
    async def add(self, *channels: str) -> None:
        """Start receiving ``channels``; once this returns, no later publish is missed."""

    @abstractmethod
    async def remove(self, *channels: str) -> None:
        """Stop receiving ``channels``."""

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[Event | None]:
        """Events in publish order per channel; ``None`` marks a possible gap."""


class EventBus(ABC):
    @abstractmethod
    async def publish(self, channel: str, data: bytes) -> None:
        """Deliver ``data`` to every current subscriber of ``channel`` on any instance."""

    @abstractmethod
    async def open_log(self, log_key: str, ttl_s: float) -> None:
        """Create an empty log (last seq 0), so "no tokens yet" differs from "log lost"."""

    @abstractmethod
    async def append_and_publish(
        self, log_key: str, seq: int, channel: str, data: bytes, ttl_s: float
    ) -> None:
        """Append entry ``seq`` to the log, then publish ``data``; the log has it first.

        Raises ValueError if ``seq`` is not greater than the last seq in the log.
        """

    @abstractmethod
    async def read_log(self, log_key: str, after_seq: int) -> list[LogEntry] | None:
        """Entries with seq > ``after_seq`` in order, or None when the log does not exist."""

    @abstractmethod
    async def last_seq(self, log_key: str) -> int | None:
        """The highest seq in the log, 0 for an empty one, None when it does not exist."""

    @abstractmethod
    async def expire_log(self, log_key: str, ttl_s: float) -> None:
        """Let the log live ``ttl_s`` more seconds (used when its message ends)."""

    @abstractmethod
    async def acquire_lease(self, key: str, owner: str, ttl_s: float) -> bool:
        """Take ``key`` for ``owner`` unless someone holds it; True on success."""

    @abstractmethod
    async def renew_lease(self, key: str, owner: str, ttl_s: float) -> bool:
        """Extend ``owner``'s lease; False if it lapsed or someone else holds it."""

    @abstractmethod
    async def release_lease(self, key: str, owner: str) -> None:
        """Drop ``owner``'s lease (no-op if it is not theirs)."""

    @abstractmethod
    async def lease_holder(self, key: str) -> str | None:
        """Who holds ``key`` now, or None."""

    @abstractmethod
    async def set_flag(self, key: str, ttl_s: float) -> None:
        """Raise ``key`` for ``ttl_s`` seconds: a signal that survives a lost publish."""

    @abstractmethod
    async def flag_raised(self, key: str) -> bool:
        """True while ``key`` is raised."""

    @abstractmethod
    def subscribe(self) -> AbstractAsyncContextManager[Subscription]:
        """A new subscription with no channels; closed on exit."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise if the bus cannot serve right now (health checks)."""
