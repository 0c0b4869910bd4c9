"""The ``message.done`` frame of an answer that has ended, read from its row.

Used to repair a consumer after a bus gap: a lost ``message.done`` is rebuilt from the
database, which is the record.
"""

from __future__ import annotations

from uuid import UUID

from chatrt.conversations import messages
from chatrt.realtime.frames import ENCODER, MessageDone
from chatrt.settings import Locale


async def ended_frame(message_id: UUID, locale: Locale) -> bytes | None:
    """``message.done`` for an answer no longer streaming; None while it streams."""
    current = await messages.get_by_id(message_id, locale)
    if current is None or current.status == "streaming":
        return None  # still running, or purged (then nothing more will come for it)
    return ENCODER.encode(MessageDone(message=current))
