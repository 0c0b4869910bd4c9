"""``message.done`` carries the answer's last seq, so a consumer that has every delta sends
the done without reading the log (one Redis read per socket per answer, found by
``bench.fanout``), while one that lacks deltas is still backfilled before the done."""

from __future__ import annotations

import uuid

import pytest

from chatrt.bus.base import Event, LogEntry
from chatrt.bus.memory import MemoryBus
from chatrt.realtime.channels import DELTA, DONE, conversation_channel, message_log, pack
from chatrt.realtime.delivery import Delivery

pytestmark = [pytest.mark.anyio]


class CountingBus(MemoryBus):
    def __init__(self) -> None:
        super().__init__()
        self.log_reads = 0

    async def read_log(self, log_key: str, after_seq: int) -> list[LogEntry] | None:
        self.log_reads += 1
        return await super().read_log(log_key, after_seq)


async def _setup() -> tuple[CountingBus, Delivery, list[bytes], uuid.UUID, str]:
    bus = CountingBus()
    sent: list[bytes] = []

    async def send(frame: bytes) -> None:
        sent.append(frame)

    async def lost(_: uuid.UUID) -> None:
        raise AssertionError("nothing is lost here")

    message_id = uuid.uuid4()
    channel = conversation_channel(uuid.uuid4())
    await bus.open_log(message_log(message_id), 60)
    for seq in (1, 2, 3):
        payload = pack(DELTA, b"d%d" % seq, message_id, seq)
        await bus.append_and_publish(message_log(message_id), seq, channel, payload, 60)
    return bus, Delivery(bus, send, lost), sent, message_id, channel


async def test_a_done_after_every_delta_reads_no_log() -> None:
    bus, delivery, sent, message_id, channel = await _setup()
    for seq in (1, 2, 3):
        await delivery.on_event(Event(channel, pack(DELTA, b"d%d" % seq, message_id, seq)))
    await delivery.on_event(Event(channel, pack(DONE, b"done", message_id, 3)))
    assert sent == [b"d1", b"d2", b"d3", b"done"]
    assert bus.log_reads == 0


@pytest.mark.parametrize(
    "done_seq", [pytest.param(3, id="ahead of what was sent"), pytest.param(0, id="no seq")]
)
async def test_a_done_a_consumer_may_lack_deltas_for_checks_the_log(done_seq: int) -> None:
    """Ahead of what was sent, the done is backfilled first; without a seq (0, an older
    publisher) the log is still checked."""
    bus, delivery, sent, message_id, channel = await _setup()
    await delivery.on_event(Event(channel, pack(DELTA, b"d1", message_id, 1)))
    await delivery.on_event(Event(channel, pack(DONE, b"done", message_id, done_seq)))
    assert sent == [b"d1", b"d2", b"d3", b"done"]
    assert bus.log_reads == 1
