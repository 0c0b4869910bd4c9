"""Writes of the generating instance to the assistant message row."""

from __future__ import annotations

from uuid import UUID

import msgspec

from chatrt.clock import utcnow
from chatrt.db.tables import Message


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How an answer ended; written to its row in one UPDATE."""

    status: str
    content: str
    ai_model: str | None
    provider: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    response_time_ms: int
    time_to_first_token_ms: int | None
    error_code: str | None = None


async def finish(message_id: UUID, outcome: Outcome) -> bool:
    """End a ``streaming`` message; False if it had already ended (another writer won)."""
    updated = (
        await Message.update(
            {
                Message.status: outcome.status,
                Message.content: outcome.content,
                Message.ai_model: outcome.ai_model,
                Message.provider: outcome.provider,
                Message.prompt_tokens: outcome.prompt_tokens,
                Message.completion_tokens: outcome.completion_tokens,
                Message.response_time_ms: outcome.response_time_ms,
                Message.time_to_first_token_ms: outcome.time_to_first_token_ms,
                Message.error_code: outcome.error_code,
                Message.completed_at: utcnow(),
            }
        )
        .where(Message.id == message_id, Message.status == "streaming")
        .returning(Message.id)
    )
    return bool(updated)
