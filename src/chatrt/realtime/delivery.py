"""Gap-free, duplicate-free delivery of each answer's deltas to one consumer (socket or SSE).

Per message the consumer has a ``last_sent`` seq. A live delta right after it is sent; one at
or below it is dropped; one further ahead means pub/sub lost something, and the missing range
is read from the message's log first. A message seen for the first time mid-stream is
backfilled from seq 1, and ``message.done`` is preceded by any deltas still missing, so the
deltas a consumer gets, joined, always equal the final content. When the log cannot fill a
gap the consumer gets ``stream_history_lost`` instead of a silent hole.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

from chatrt.bus.base import EventBus
from chatrt.realtime.channels import CREATED, DELTA, DONE, Envelope, message_log, unpack

Send = Callable[[bytes], Awaitable[None]]
HistoryLost = Callable[[UUID], Awaitable[None]]


class Delivery:
    def __init__(self, bus: EventBus, send: Send, history_lost: HistoryLost) -> None:
        self._bus = bus
        self._send = send
        self._history_lost = history_lost
        self._last_sent: dict[UUID, int] = {}
        self._finished: set[UUID] = set()

    def forget(self, message_id: UUID) -> None:
        self._last_sent.pop(message_id, None)
        self._finished.discard(message_id)

    def tracked(self) -> list[UUID]:
        """Answers being followed (started, not yet done)."""
        return list(self._last_sent)

    def is_finished(self, message_id: UUID) -> bool:
        return message_id in self._finished

    async def on_event(self, data: bytes) -> None:
        """Handle one live bus payload."""
        envelope = unpack(data)
        if envelope.kind == DELTA and envelope.message_id is not None:
            await self._on_delta(envelope.message_id, envelope)
        elif envelope.kind == DONE and envelope.message_id is not None:
            await self.finish(envelope.message_id, envelope.frame)
        elif envelope.kind == CREATED and envelope.message_id is not None:
            if envelope.message_id not in self._finished:
                self._last_sent.setdefault(envelope.message_id, 0)
            await self._send(envelope.frame)
        else:
            await self._send(envelope.frame)

    async def _on_delta(self, message_id: UUID, envelope: Envelope) -> None:
        if message_id in self._finished:
            return
        last = self._last_sent.get(message_id, 0)
        if envelope.seq <= last:
            return
        if envelope.seq > last + 1:
            await self.catch_up(message_id, upto=envelope.seq - 1)
        await self._send(envelope.frame)
        self._last_sent[message_id] = envelope.seq

    async def catch_up(self, message_id: UUID, upto: int | None = None) -> bool:
        """Send the logged deltas after ``last_sent`` (up to ``upto``); False if lost."""
        last = self._last_sent.get(message_id, 0)
        entries = await self._bus.read_log(message_log(message_id), last)
        if entries is None or (entries and entries[0].seq != last + 1):
            await self._history_lost(message_id)
            if upto is not None:
                self._last_sent[message_id] = upto
            return False
        for entry in entries:
            if upto is not None and entry.seq > upto:
                break
            await self._send(unpack(entry.data).frame)
            self._last_sent[message_id] = entry.seq
        if upto is not None and self._last_sent.get(message_id, 0) < upto:
            await self._history_lost(message_id)
            self._last_sent[message_id] = upto
            return False
        return True

    async def resume(self, message_id: UUID, after_seq: int) -> bool:
        """Every logged delta after ``after_seq``, then live ones; False if the log is lost."""
        self._finished.discard(message_id)
        self._last_sent[message_id] = after_seq
        entries = await self._bus.read_log(message_log(message_id), after_seq)
        if entries is None or (entries and entries[0].seq != after_seq + 1):
            await self._history_lost(message_id)
            if entries:
                self._last_sent[message_id] = entries[-1].seq
            return False
        for entry in entries:
            await self._send(unpack(entry.data).frame)
            self._last_sent[message_id] = entry.seq
        return True

    async def finish(self, message_id: UUID, done_frame: bytes, backfill: bool = True) -> None:
        """Send ``message.done`` once, after any deltas this consumer is still missing."""
        if message_id in self._finished:
            return
        if backfill and message_id in self._last_sent:
            await self.catch_up(message_id)
        self._finished.add(message_id)
        self._last_sent.pop(message_id, None)
        await self._send(done_frame)
