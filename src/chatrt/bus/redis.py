"""Redis bus: pub/sub for the live path, one Stream per message as its log, SET NX leases.

One pub/sub connection per instance carries every channel its local subscribers want; a
supervised reader task fans events out to them. When that connection fails the reader
reconnects with backoff, re-subscribes, and hands every subscriber a gap marker so it repairs
from the logs: a Redis outage is recovered without restarting the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from chatrt.bus.base import Event, EventBus, LogEntry, Subscription
from chatrt.bus.inbox import InboxSubscription
from chatrt.tasks import stop

logger = logging.getLogger("chatrt.bus")

MAX_LOG_ENTRIES = 20_000
# Missed keepalive replies before the pub/sub link counts as lost.
SILENCE_PINGS = 3
KEEPALIVE_CHANNEL = "chatrt:bus:keepalive"
# Stream ids are "<seq>-0"; the empty-log sentinel is "0-1" (0-0 is not a valid id).
_OPEN = "0-1"

_APPEND = """
local ok = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], ARGV[1] .. '-0', 'd', ARGV[2])
if type(ok) == 'table' and ok.err then return ok end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[3], ARGV[2])
return 1
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def pubsub_client_name(host: str | None = None, pid: int | None = None) -> str:
    """The name an instance's pub/sub link carries in ``CLIENT LIST`` (host and process).

    Lets an operator (or a test) tell which instance a link belongs to, e.g. to drop just
    that one with ``CLIENT KILL``.
    """
    return f"chatrt-pubsub-{host or socket.gethostname()}-{pid or os.getpid()}"


def _is_confirmation(message: dict[str, Any], channel: str) -> bool:
    name = message["channel"]
    return (
        message["type"] == "subscribe"
        and (name.decode() if isinstance(name, bytes) else str(name)) == channel
    )


def _seq(stream_id: bytes | str) -> int:
    raw = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    return int(raw.split("-", 1)[0])


class RedisSubscription(InboxSubscription):
    def __init__(self, bus: RedisBus, size: int) -> None:
        super().__init__(size)
        self._bus = bus

    async def add(self, *channels: str) -> None:
        new = [c for c in channels if c not in self.channels]
        self.channels.update(new)
        try:
            await self._bus._attach(self, new)
        except BaseException:
            # Not confirmed: forget them, so a retry waits for confirmation again.
            await self.remove(*new)
            raise

    async def remove(self, *channels: str) -> None:
        gone = [c for c in channels if c in self.channels]
        self.channels.difference_update(gone)
        await self._bus._detach(self, gone)


class RedisBus(EventBus):
    def __init__(
        self,
        client: aredis.Redis,
        url: str,
        inbox_size: int = 4096,
        reconnect_max_s: float = 2.0,
        keepalive_s: float = 5.0,
        timeout_s: float = 5.0,
    ) -> None:
        self._client = client
        # Pub/sub gets its own client: a blocked read must not hold a pooled connection.
        self._url = url
        self._inbox_size = inbox_size
        self._reconnect_max = reconnect_max_s
        self._keepalive = keepalive_s
        self._timeout = timeout_s
        self._local: defaultdict[str, set[RedisSubscription]] = defaultdict(set)
        self._pubsub: Any = None
        self._pubsub_client: aredis.Redis | None = None
        self._confirmed: dict[str, asyncio.Event] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._lock = asyncio.Lock()
        self._append = client.register_script(_APPEND)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    async def __aenter__(self) -> RedisBus:
        self._reader = asyncio.create_task(self._read_forever(), name="redis-bus-reader")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        if self._reader is not None:
            await stop([self._reader])
        await self._close_pubsub()

    async def _close_pubsub(self) -> None:
        pubsub, client = self._pubsub, self._pubsub_client
        self._pubsub = self._pubsub_client = None
        with contextlib.suppress(Exception):
            if pubsub is not None:
                await pubsub.aclose()
        with contextlib.suppress(Exception):
            if client is not None:
                await client.aclose()

    async def _connect(self) -> str:
        """A fresh pub/sub link subscribed to every local channel; the last one asked for."""
        await self._close_pubsub()
        # No client-side retries: the reader must see an outage to mark the gap.
        client = aredis.from_url(
            self._url,
            socket_timeout=None,
            socket_connect_timeout=self._timeout,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
            client_name=pubsub_client_name(),
        )
        pubsub = client.pubsub()
        self._pubsub_client, self._pubsub = client, pubsub
        channels = list(self._local)
        # Keep unset events: a subscriber may be waiting on them across the reconnect.
        self._confirmed = {
            c: e
            if (e := self._confirmed.get(c)) is not None and not e.is_set()
            else asyncio.Event()
            for c in channels
        }
        # A channel of its own keeps the link in pub/sub mode when nobody listens.
        await pubsub.subscribe(KEEPALIVE_CHANNEL, *channels)
        return channels[-1] if channels else KEEPALIVE_CHANNEL

    async def _read_forever(self) -> None:
        backoff = 0.05
        # Not ``while True``: redis-py can turn a cancel into a connection error.
        while not self._closing:
            try:
                async with self._lock:
                    last = await asyncio.wait_for(self._connect(), self._timeout)
                backoff = 0.05
                await self._read_until_silent(last)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Anything at all: the reader is the only way events arrive, so it never dies.
                logger.warning("redis pub/sub lost, reconnecting", extra={"error": repr(exc)})
                # Unlinked at once, so subscribers stop writing to a dead link meanwhile.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._close_pubsub(), self._timeout)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._reconnect_max)

    async def _read_until_silent(self, last_channel: str) -> None:
        """Dispatch events; a link that stops answering our pings counts as lost.

        Once ``last_channel`` is confirmed (Redis confirms in order, so all are), every
        subscriber gets a gap marker: what was published while we were away is unknown, and
        repairing from the logs now misses nothing later. A silent partition never raises
        on its own (no socket timeout, since a quiet channel is normal), so the reader pings
        and watches for any reply.
        """
        heard = pinged = time.monotonic()
        resubscribed = False
        while True:
            message = await self._pubsub.get_message(timeout=min(1.0, self._keepalive))
            now = time.monotonic()
            if message is not None:
                heard = now
                self._dispatch(message)
                if not resubscribed and _is_confirmation(message, last_channel):
                    resubscribed = True
                    self._gap_everywhere()
            if now - pinged >= self._keepalive:
                await asyncio.wait_for(self._pubsub.ping(), self._timeout)
                pinged = now
            if now - heard > SILENCE_PINGS * self._keepalive:
                raise TimeoutError(f"no reply on pub/sub for {now - heard:.1f} s")

    def _gap_everywhere(self) -> None:
        for subscriptions in self._local.values():
            for subscription in subscriptions:
                subscription.inbox.put(None)

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel = message["channel"]
        name = channel.decode() if isinstance(channel, bytes) else str(channel)
        kind = message["type"]
        if kind == "subscribe":
            confirmed = self._confirmed.get(name)
            if confirmed is not None:
                confirmed.set()
            return
        if kind != "message":
            return
        event = Event(name, message["data"])
        for subscription in tuple(self._local.get(name, ())):
            subscription.inbox.put(event)

    async def _attach(self, subscription: RedisSubscription, channels: list[str]) -> None:
        waits: list[asyncio.Event] = []
        async with self._lock:
            for channel in channels:
                first = channel not in self._local
                self._local[channel].add(subscription)
                if first:
                    confirmed = self._confirmed[channel] = asyncio.Event()
                    await self._tell_pubsub("subscribe", channel)
                    waits.append(confirmed)
                elif channel in self._confirmed:
                    waits.append(self._confirmed[channel])
        for confirmed in waits:
            # Redis confirms in order; once confirmed, no later publish is missed.
            await asyncio.wait_for(confirmed.wait(), timeout=10)

    async def _detach(self, subscription: RedisSubscription, channels: list[str]) -> None:
        async with self._lock:
            for channel in channels:
                subscribers = self._local.get(channel)
                if subscribers is None:
                    continue
                subscribers.discard(subscription)
                if not subscribers:
                    del self._local[channel]
                    self._confirmed.pop(channel, None)
                    await self._tell_pubsub("unsubscribe", channel)

    async def _tell_pubsub(self, command: str, channel: str) -> None:
        """Send (un)subscribe if linked; a failure is the reader's to notice and repair."""
        pubsub = self._pubsub
        if pubsub is None:
            return  # the reader subscribes every local channel when it reconnects
        try:
            await asyncio.wait_for(getattr(pubsub, command)(channel), self._timeout)
        except Exception as exc:
            logger.warning("pub/sub %s failed", command, extra={"error": repr(exc)})

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        subscription = RedisSubscription(self, self._inbox_size)
        try:
            yield subscription
        finally:
            await subscription.remove(*subscription.channels)

    async def publish(self, channel: str, data: bytes) -> None:
        await self._client.publish(channel, data)

    async def open_log(self, log_key: str, ttl_s: float) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.xadd(log_key, {"d": b""}, id=_OPEN)
            pipe.pexpire(log_key, int(ttl_s * 1000))
            with contextlib.suppress(ResponseError):
                await pipe.execute()

    async def append_and_publish(
        self, log_key: str, seq: int, channel: str, data: bytes, ttl_s: float
    ) -> None:
        try:
            await self._append(
                keys=[log_key], args=[seq, data, channel, MAX_LOG_ENTRIES, int(ttl_s * 1000)]
            )
        except ResponseError as exc:
            if "equal or smaller" not in str(exc):
                raise  # out of memory, read-only replica, ...: not a duplicate
            # XADD refuses an id at or below the last one: a seq written twice.
            raise ValueError(f"seq {seq} is not after the log's last seq ({exc})") from None

    async def read_log(self, log_key: str, after_seq: int) -> list[LogEntry] | None:
        entries: list[Any] = (
            await self._client.xrange(log_key, min=f"{after_seq + 1}-0", max="+") or []
        )
        if not entries and not await self._client.exists(log_key):
            return None
        return [LogEntry(_seq(entry_id), fields[b"d"]) for entry_id, fields in entries]

    async def last_seq(self, log_key: str) -> int | None:
        entries: list[Any] = await self._client.xrevrange(log_key, max="+", min="-", count=1) or []
        if not entries:
            return None
        return _seq(entries[0][0])

    async def expire_log(self, log_key: str, ttl_s: float) -> None:
        await self._client.pexpire(log_key, int(ttl_s * 1000))

    async def acquire_lease(self, key: str, owner: str, ttl_s: float) -> bool:
        return bool(await self._client.set(key, owner, nx=True, px=int(ttl_s * 1000)))

    async def renew_lease(self, key: str, owner: str, ttl_s: float) -> bool:
        return bool(await self._renew(keys=[key], args=[owner, int(ttl_s * 1000)]))

    async def release_lease(self, key: str, owner: str) -> None:
        await self._release(keys=[key], args=[owner])

    async def lease_holder(self, key: str) -> str | None:
        holder = await self._client.get(key)
        if holder is None:
            return None
        return holder.decode() if isinstance(holder, bytes) else str(holder)

    async def set_flag(self, key: str, ttl_s: float) -> None:
        await self._client.set(key, b"1", px=int(ttl_s * 1000))

    async def flag_raised(self, key: str) -> bool:
        return bool(await self._client.exists(key))

    async def ping(self) -> None:
        await self._client.ping()
