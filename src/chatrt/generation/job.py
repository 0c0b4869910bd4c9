"""What a generation needs to know to start."""

from __future__ import annotations

from uuid import UUID

import msgspec


class Job(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    conversation_id: UUID
    message_id: UUID
    message_index: int
    system_prompt: str | None
    model: str | None
    title: str | None
    question: str
