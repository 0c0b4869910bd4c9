"""Putting server frames on the bus, wrapped in their routing envelope."""

from __future__ import annotations

from uuid import UUID

from chatrt.bus.base import EventBus
from chatrt.conversations.schemas import ConversationOut, MessageOut
from chatrt.observability import metrics
from chatrt.realtime.channels import (
    CREATED,
    DONE,
    OTHER,
    REVOKED,
    conversation_channel,
    pack,
    user_channel,
)
from chatrt.realtime.frames import (
    ENCODER,
    ConversationDeleted,
    ConversationUpdated,
    MessageCreated,
    MessageDone,
)


async def _publish(bus: EventBus, channel: str, payload: bytes) -> None:
    with metrics.timed(metrics.BUS_PUBLISH, "publish"):
        await bus.publish(channel, payload)


async def message_created(bus: EventBus, message: MessageOut) -> None:
    frame = ENCODER.encode(MessageCreated(message=message))
    if message.role == "assistant" and message.status == "streaming":
        payload = pack(CREATED, frame, message.id)
    else:
        payload = pack(OTHER, frame)
    await _publish(bus, conversation_channel(message.conversation_id), payload)


async def message_done(bus: EventBus, message: MessageOut, last_seq: int = 0) -> None:
    """``last_seq``: the answer's last logged delta, if known; a consumer that has sent it
    skips reading the log for missing deltas (one read per socket per answer otherwise)."""
    frame = ENCODER.encode(MessageDone(message=message))
    await _publish(
        bus,
        conversation_channel(message.conversation_id),
        pack(DONE, frame, message.id, last_seq),
    )


async def conversation_updated(bus: EventBus, user_id: UUID, conversation: ConversationOut) -> None:
    frame = ENCODER.encode(ConversationUpdated(conversation=conversation))
    await _publish(bus, user_channel(user_id), pack(OTHER, frame))


async def conversation_deleted(bus: EventBus, user_id: UUID, conversation_id: UUID) -> None:
    frame = ENCODER.encode(ConversationDeleted(conversation_id=conversation_id))
    await _publish(bus, user_channel(user_id), pack(OTHER, frame))


async def session_revoked(bus: EventBus, user_id: UUID, session_id: str) -> None:
    """Tell every instance that ``session_id`` is over, so its open sockets close."""
    await _publish(bus, user_channel(user_id), pack(REVOKED, session_id.encode()))
