"""Cancelling an answer, from any instance, at any moment."""

from __future__ import annotations

from uuid import UUID

from chatrt.bus.base import EventBus
from chatrt.conversations.messages import MESSAGE_COLUMNS, to_message
from chatrt.db.tables import Conversation, Message
from chatrt.errors import AppError
from chatrt.generation.runner import GenerationRunner
from chatrt.generation.store import Outcome, finish
from chatrt.generation.sweeper import logged_text
from chatrt.realtime import publish
from chatrt.settings import Locale


async def owned_message(user_id: UUID, message_id: UUID) -> dict[str, object]:
    """The message row if it is in one of the user's active conversations, else 404."""
    row = (
        await Message.select(*MESSAGE_COLUMNS)
        .where(
            Message.id == message_id,
            Message.conversation_id.is_in(
                Conversation.select(Conversation.id).where(
                    Conversation.user_id == user_id, Conversation.status == "active"
                )
            ),
        )
        .first()
    )
    if row is None:
        raise AppError(404, "message_not_found")
    return row


async def cancel(
    user_id: UUID,
    message_id: UUID,
    bus: EventBus,
    generations: GenerationRunner,
    locale: Locale,
) -> None:
    """Stop the answer wherever it runs; it ends ``cancelled`` with its text so far.

    A message that already ended is left as it is. One whose instance is gone (no lease) is
    ended right here, so a cancel always takes effect.
    """
    row = await owned_message(user_id, message_id)
    if row["status"] != "streaming" or row["role"] != "assistant":
        return
    if generations.cancel_local(message_id):
        return
    await generations.request_cancel(message_id)
    if await generations.owner_of(message_id) is not None:
        return
    # Nobody holds the lease: the instance died, or has not taken it yet (it hears the
    # signal above). End it here; whoever writes the row first wins, the other is a no-op.
    text = await logged_text(bus, message_id)
    checkpointed = str(row["content"])
    if text is None or len(text) < len(checkpointed):
        text = checkpointed  # a trimmed or recreated log holds only a fragment
    ended = await finish(
        message_id,
        Outcome(
            status="cancelled",
            content=text,
        ),
    )
    if ended is not None:
        await publish.message_done(bus, to_message(ended, locale))
