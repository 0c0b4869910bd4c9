"""Per-consumer delivery state stays bounded on long-lived sockets."""

from __future__ import annotations

import uuid

import pytest

from chatrt.bus.base import Event
from chatrt.bus.memory import MemoryBus
from chatrt.realtime.channels import CREATED, DELTA, DONE, message_log, pack
from chatrt.realtime.delivery import FINISHED_REMEMBERED, Delivery

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def _delivery(bus: MemoryBus | None = None) -> tuple[Delivery, list[bytes]]:
    sent: list[bytes] = []

    async def send(frame: bytes) -> None:
        sent.append(frame)

    async def lost(message_id: uuid.UUID) -> None:
        sent.append(b"lost " + str(message_id).encode())

    return Delivery(bus or MemoryBus(), send, lost), sent


async def test_unsubscribing_forgets_the_answers_of_that_conversation() -> None:
    delivery, sent = _delivery()
    kept, dropped, heard = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await delivery.on_event(Event("chatrt:c:kept", pack(CREATED, b"k", kept)))
    await delivery.on_event(Event("chatrt:c:gone", pack(CREATED, b"d", dropped)))
    delivery.follow(heard, "chatrt:c:gone")
    assert set(delivery.tracked()) == {kept, dropped, heard}
    delivery.drop_channel("chatrt:c:gone")
    assert delivery.tracked() == [kept]
    assert not delivery.is_tracked(heard)
    assert sent == [b"k", b"d"]


async def test_finished_answers_are_remembered_up_to_a_bound() -> None:
    delivery, sent = _delivery()
    first = uuid.uuid4()
    for message_id in [first] + [uuid.uuid4() for _ in range(FINISHED_REMEMBERED)]:
        await delivery.on_event(Event("chatrt:c:x", pack(DONE, b"done", message_id)))
    assert len(sent) == FINISHED_REMEMBERED + 1
    assert not delivery.is_finished(first), "the oldest is forgotten"
    assert delivery.tracked() == []


async def test_a_late_delta_of_a_finished_answer_is_dropped() -> None:
    delivery, sent = _delivery()
    message_id = uuid.uuid4()
    await delivery.on_event(Event("chatrt:c:x", pack(DONE, b"done", message_id)))
    await delivery.on_event(Event("chatrt:c:x", pack(DELTA, b"late", message_id, 1)))
    assert sent == [b"done"]
    assert delivery.tracked() == []


async def test_a_done_for_an_answer_never_heard_of_comes_after_its_logged_deltas() -> None:
    """Its created and deltas were lost in a gap and it ended before the repair."""
    bus = MemoryBus()
    delivery, sent = _delivery(bus)
    message_id = uuid.uuid4()
    log = message_log(message_id)
    await bus.open_log(log, 60)
    for seq in (1, 2):
        frame = b"delta %d" % seq
        await bus.append_and_publish(
            log, seq, "chatrt:c:x", pack(DELTA, frame, message_id, seq), 60
        )
    await delivery.on_event(Event("chatrt:c:x", pack(DONE, b"done", message_id)))
    assert sent == [b"delta 1", b"delta 2", b"done"]
