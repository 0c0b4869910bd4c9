"""Gap-free, duplicate-free delivery of each answer's deltas to one consumer (socket or SSE).

Per message the consumer has a ``last_sent`` seq. A live delta right after it is sent; one at
or below it is dropped; one further ahead means pub/sub lost something, and the missing range
is read from the message's log first. ``message.done`` is preceded by any deltas still
missing, so the deltas a consumer gets, joined, always equal the final content. When the log
cannot fill a gap the consumer gets ``stream_history_lost`` instead of a silent hole.

Nothing is sent twice on one consumer: a ``resume`` below what was already sent continues
after it. An answer first seen mid-stream is backfilled from seq 1, so every subscriber's
deltas join to the whole text; a reconnecting client that resumes *before* it subscribes gets
only what it lacks.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from uuid import UUID

from chatrt.bus.base import Event, EventBus, LogEntry
from chatrt.realtime.channels import CREATED, DELTA, DONE, Envelope, message_log, unpack

Send = Callable[[bytes], Awaitable[None]]
HistoryLost = Callable[[UUID], Awaitable[None]]
# The ``message.done`` frame of an answer that has ended, or None while it still streams.
DoneFrame = Callable[[UUID], Awaitable[bytes | None]]

# Ended answers remembered per consumer, to drop their late deltas; old ones get none.
FINISHED_REMEMBERED = 1024


class Delivery:
    def __init__(self, bus: EventBus, send: Send, history_lost: HistoryLost) -> None:
        self._bus = bus
        self._send = send
        self._history_lost = history_lost
        self._last_sent: dict[UUID, int] = {}
        self._channel_of: dict[UUID, str] = {}
        self._heard_at: dict[UUID, float] = {}
        self._finished: OrderedDict[UUID, None] = OrderedDict()
        self._reported: set[UUID] = set()

    def tracked(self) -> list[UUID]:
        """Answers being followed (started, not yet done)."""
        return list(self._last_sent)

    def is_tracked(self, message_id: UUID) -> bool:
        return message_id in self._last_sent

    def is_finished(self, message_id: UUID) -> bool:
        return message_id in self._finished

    def follow(self, message_id: UUID, channel: str) -> None:
        """Deliver this answer from seq 1 (it started while we were not listening)."""
        if message_id not in self._finished:
            self._last_sent.setdefault(message_id, 0)
            self._channel_of[message_id] = channel
            self._heard_at[message_id] = time.monotonic()

    def drop_channel(self, channel: str) -> None:
        """Forget the answers heard on ``channel`` (the consumer unsubscribed from it)."""
        for message_id in [m for m, c in self._channel_of.items() if c == channel]:
            self._forget_progress(message_id)

    async def on_event(self, event: Event) -> None:
        """Handle one live bus payload."""
        envelope = unpack(event.data)
        message_id = envelope.message_id
        if envelope.kind == DELTA and message_id is not None:
            await self._on_delta(message_id, event.channel, envelope)
        elif envelope.kind == DONE and message_id is not None:
            await self.finish(message_id, envelope.frame, last_seq=envelope.seq)
        elif envelope.kind == CREATED and message_id is not None:
            self.follow(message_id, event.channel)
            await self._send(envelope.frame)
        else:
            await self._send(envelope.frame)

    async def _on_delta(self, message_id: UUID, channel: str, envelope: Envelope) -> None:
        if message_id in self._finished:
            return
        self._channel_of[message_id] = channel
        self._heard_at[message_id] = time.monotonic()
        last = self._last_sent.get(message_id, 0)
        if envelope.seq <= last:
            return
        if envelope.seq > last + 1:
            await self.catch_up(message_id, upto=envelope.seq - 1)
        await self._send(envelope.frame)
        self._last_sent[message_id] = envelope.seq

    async def catch_up(self, message_id: UUID, upto: int | None = None) -> bool:
        """Send the logged deltas after ``last_sent`` (up to ``upto``); False if lost."""
        return await self._send_log(message_id, self._last_sent.get(message_id, 0), upto)

    async def resume(self, message_id: UUID, after_seq: int, channel: str) -> bool:
        """Every logged delta after ``after_seq`` not sent yet, then live ones.

        False if the log is lost.
        """
        self._reported.discard(message_id)  # asked again: a loss is news again
        self._channel_of[message_id] = channel
        self._heard_at[message_id] = time.monotonic()
        sent = self._last_sent.get(message_id, 0)
        if message_id in self._finished:
            # The client asks again after done: it has lost track, so start afresh.
            del self._finished[message_id]
            sent = 0
        after = max(after_seq, sent)
        self._last_sent[message_id] = after
        entries = await self._bus.read_log(message_log(message_id), after)
        if entries is None and after == 0:
            # Nothing sent and no log yet: the row is committed before its generation opens
            # the log. Not a loss; a real one still shows as a gap at the next delta or done.
            return True
        return await self._send_entries(message_id, after, None, entries)

    async def _send_log(self, message_id: UUID, after: int, upto: int | None) -> bool:
        entries = await self._bus.read_log(message_log(message_id), after)
        return await self._send_entries(message_id, after, upto, entries)

    async def _send_entries(
        self, message_id: UUID, after: int, upto: int | None, entries: list[LogEntry] | None
    ) -> bool:
        whole = entries is not None and (not entries or entries[0].seq == after + 1)
        if not whole:
            # Expired, or lost and recreated holding only newer seqs: say so, then go on
            # from what is there (``message.done`` still carries the whole text).
            await self._lost(message_id)
        for entry in entries or ():
            if upto is not None and entry.seq > upto:
                break
            await self._send(unpack(entry.data).frame)
            self._last_sent[message_id] = entry.seq
        if upto is not None and self._last_sent.get(message_id, 0) < upto:
            if whole:
                await self._lost(message_id)
            self._last_sent[message_id] = upto
            return False
        return whole

    async def _lost(self, message_id: UUID) -> None:
        """Report a hole in an answer once; later ones add nothing the client can act on."""
        if message_id not in self._reported:
            self._reported.add(message_id)
            await self._history_lost(message_id)

    async def finish(
        self, message_id: UUID, done_frame: bytes, backfill: bool = True, last_seq: int = 0
    ) -> None:
        """Send ``message.done`` once, after any deltas this consumer is still missing.

        ``last_seq`` (0: unknown) is the answer's last delta; once that is sent, nothing is
        read. With ``backfill``, an answer this consumer has not heard of yet (its created
        and deltas were lost in a gap, and it ended before the repair) is sent from seq 1
        like one first seen mid-stream, when its log still holds all of it.
        """
        if message_id in self._finished:
            return
        sent = self._last_sent.get(message_id)
        if not backfill:
            pass
        elif sent is not None:
            if not 0 < last_seq <= sent:
                await self.catch_up(message_id)
        else:
            entries = await self._bus.read_log(message_log(message_id), 0)
            if entries and entries[0].seq == 1:
                for entry in entries:
                    await self._send(unpack(entry.data).frame)
        self._finished[message_id] = None
        if len(self._finished) > FINISHED_REMEMBERED:
            self._finished.popitem(last=False)
        self._forget_progress(message_id)
        await self._send(done_frame)

    async def repair(self, done_frame: DoneFrame) -> None:
        """After a bus gap: end each followed answer from its row, or fill it from its log."""
        for message_id in list(self._last_sent):
            frame = await done_frame(message_id)
            if frame is not None:
                await self.finish(message_id, frame)
            else:
                await self.catch_up(message_id)

    async def end_quiet(self, done_frame: DoneFrame, quiet_s: float) -> None:
        """End followed answers that have been silent for ``quiet_s`` and whose row ended.

        A ``message.done`` whose publish failed for good (the generating instance lost Redis
        while everyone else kept it) shows no gap anywhere; the row is the record.
        """
        now = time.monotonic()
        for message_id in list(self._last_sent):
            if now - self._heard_at.get(message_id, now) < quiet_s:
                continue
            self._heard_at[message_id] = now  # one row read per quiet period
            frame = await done_frame(message_id)
            if frame is not None:
                await self.finish(message_id, frame)

    def forget(self, message_id: UUID) -> None:
        """Drop what is known of an answer, so its ``message.done`` is sent again."""
        self._forget_progress(message_id)
        self._finished.pop(message_id, None)

    def _forget_progress(self, message_id: UUID) -> None:
        self._last_sent.pop(message_id, None)
        self._channel_of.pop(message_id, None)
        self._heard_at.pop(message_id, None)
        self._reported.discard(message_id)
