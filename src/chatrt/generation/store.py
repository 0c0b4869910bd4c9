"""Writes of the generating instance (and the sweeper) to the assistant message row."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from chatrt.clock import utcnow
from chatrt.conversations.messages import MESSAGE_COLUMNS
from chatrt.db.tables import Message


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How an answer ended; written to its row in one UPDATE."""

    status: str
    content: str
    ai_model: str | None = None
    provider: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_estimated: bool = False
    response_time_ms: int | None = None
    time_to_first_token_ms: int | None = None
    error_code: str | None = None


async def finish(message_id: UUID, outcome: Outcome) -> dict[str, Any] | None:
    """End a ``streaming`` message; its new row, or None if it had already ended."""
    rows = (
        await Message.update(
            {
                Message.status: outcome.status,
                Message.content: outcome.content,
                Message.ai_model: outcome.ai_model,
                Message.provider: outcome.provider,
                Message.prompt_tokens: outcome.prompt_tokens,
                Message.completion_tokens: outcome.completion_tokens,
                Message.usage_estimated: outcome.usage_estimated,
                Message.response_time_ms: outcome.response_time_ms,
                Message.time_to_first_token_ms: outcome.time_to_first_token_ms,
                Message.error_code: outcome.error_code,
                Message.completed_at: utcnow(),
            }
        )
        .where(Message.id == message_id, Message.status == "streaming")
        .returning(*MESSAGE_COLUMNS)
    )
    return rows[0] if rows else None


async def checkpoint(message_id: UUID, content: str) -> bool:
    """Save the text so far; False when the message is no longer ``streaming``."""
    rows = (
        await Message.update({Message.content: content})
        .where(Message.id == message_id, Message.status == "streaming")
        .returning(Message.id)
    )
    return bool(rows)


async def stale_streaming(older_than: datetime, limit: int = 100) -> list[dict[str, Any]]:
    """``streaming`` messages created before ``older_than`` (candidates for the sweeper)."""
    rows: list[dict[str, Any]] = (
        await Message.select(Message.id, Message.conversation_id, Message.content)
        .where(Message.status == "streaming", Message.created_at < older_than)
        .order_by(Message.created_at)
        .limit(limit)
    )
    return rows
