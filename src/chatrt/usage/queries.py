"""A user's token usage, read from the messages table: the one record of what was spent.

Every query starts from the user's conversations touched since the period began (a send
sets ``updated_at`` to the time it creates its messages, and later writes only move it
forward), then reads those conversations' assistant messages created in the period. Both
steps are index range scans (``conversations_user_updated_idx``,
``messages_assistant_created_idx``), so the cost follows the conversations used in the
period, not the user's whole history. ``CLOCK_SKEW`` widens the first step, so an instance
whose clock runs behind cannot hide a message by writing an older ``updated_at``.

Deleted conversations count too: their tokens were spent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec

from chatrt.db.dialect import utc_day
from chatrt.db.tables import Conversation, Message

CLOCK_SKEW = timedelta(hours=1)

_PERIOD = """
FROM conversations c
JOIN messages m ON m.conversation_id = c.id
WHERE c.user_id = {} AND c.updated_at >= {}
  AND m.role = 'assistant' AND m.created_at >= {} AND m.created_at < {}
"""

_TOKENS_BY_MODEL = (
    "SELECT m.ai_model AS model, "
    "COALESCE(SUM(COALESCE(m.prompt_tokens, 0) + COALESCE(m.completion_tokens, 0)), 0) AS tokens"
    + _PERIOD
    + "GROUP BY m.ai_model"
)


def _by_day_sql() -> str:
    day = utc_day("m.created_at")
    return (
        f"SELECT {day} AS day, m.ai_model AS model, m.provider AS provider, "
        "COUNT(*) AS answers, "
        "COALESCE(SUM(m.prompt_tokens), 0) AS prompt_tokens, "
        "COALESCE(SUM(m.completion_tokens), 0) AS completion_tokens"
        + _PERIOD
        + f"AND m.ai_model IS NOT NULL GROUP BY {day}, m.ai_model, m.provider "
        f"ORDER BY {day}, m.ai_model, m.provider"
    )


class DayUsage(msgspec.Struct, frozen=True, kw_only=True):
    """Answers of one model (through one provider) on one UTC day."""

    day: str
    model: str
    provider: str | None
    answers: int
    prompt_tokens: int
    completion_tokens: int


async def tokens_by_model(user_id: UUID, start: datetime, end: datetime) -> dict[str | None, int]:
    """Prompt plus completion tokens of answers created in ``[start, end)``, by model.

    Estimated usage counts like reported usage; an answer still streaming counts nothing
    yet (its tokens are written with its final row).
    """
    rows: list[dict[str, Any]] = await Message.raw(
        _TOKENS_BY_MODEL, user_id, start - CLOCK_SKEW, start, end
    )
    return {row["model"]: int(row["tokens"]) for row in rows}


async def usage_by_day(user_id: UUID, start: datetime, end: datetime) -> list[DayUsage]:
    """Answers that reached a model in ``[start, end)``, by UTC day, model and provider."""
    rows: list[dict[str, Any]] = await Message.raw(
        _by_day_sql(), user_id, start - CLOCK_SKEW, start, end
    )
    return [
        DayUsage(
            day=str(row["day"]),
            model=row["model"],
            provider=row["provider"],
            answers=int(row["answers"]),
            prompt_tokens=int(row["prompt_tokens"]),
            completion_tokens=int(row["completion_tokens"]),
        )
        for row in rows
    ]


async def conversation_model(conversation_id: UUID) -> str | None:
    """The model a conversation asks for (``None``: the configured default)."""
    row = (
        await Conversation.select(Conversation.model)
        .where(Conversation.id == conversation_id)
        .first()
    )
    return row["model"] if row else None
