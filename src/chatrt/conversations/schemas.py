"""Wire schemas for conversations and messages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from chatrt.text import NO_NUL

Title = Annotated[str, msgspec.Meta(max_length=200, pattern=NO_NUL)]
SystemPrompt = Annotated[str, msgspec.Meta(max_length=32_000, pattern=NO_NUL)]
ModelName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
ClientMessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=NO_NUL)]
Content = Annotated[str, msgspec.Meta(min_length=1, pattern=NO_NUL)]
Role = Literal["user", "assistant", "system"]
MessageStatus = Literal["complete", "streaming", "cancelled", "failed"]


class ConversationCreate(msgspec.Struct, forbid_unknown_fields=True):
    title: Title | None = None
    system_prompt: SystemPrompt | None = None
    model: ModelName | None = None


class ConversationPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields present change; ``null`` clears a field."""

    title: Title | msgspec.UnsetType | None = msgspec.UNSET
    system_prompt: SystemPrompt | msgspec.UnsetType | None = msgspec.UNSET
    model: ModelName | msgspec.UnsetType | None = msgspec.UNSET


class LastMessage(msgspec.Struct, frozen=True):
    id: UUID
    role: Role
    preview: str
    created_at: datetime


class ConversationOut(msgspec.Struct, frozen=True):
    id: UUID
    title: str | None
    system_prompt: str | None
    model: str | None
    created_at: datetime
    updated_at: datetime
    message_count: int
    last_message: LastMessage | None


class ConversationEnvelope(msgspec.Struct, frozen=True):
    conversation: ConversationOut


class ConversationPage(msgspec.Struct, frozen=True):
    items: list[ConversationOut]
    next_cursor: str | None


class MessageCreate(msgspec.Struct, forbid_unknown_fields=True):
    # The configured CHATRT_MAX_CONTENT_CHARS is checked by the service (413).
    content: Content
    client_message_id: ClientMessageId | None = None


class MessageError(msgspec.Struct, frozen=True):
    """Why an answer ended ``failed``: a stable code and a friendly text (default locale)."""

    code: str
    message: str


class MessageOut(msgspec.Struct, frozen=True):
    id: UUID
    conversation_id: UUID
    message_index: int
    role: Role
    content: str
    status: MessageStatus
    client_message_id: str | None
    created_at: datetime
    completed_at: datetime | None
    ai_model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    response_time_ms: int | None
    time_to_first_token_ms: int | None
    provider: str | None = None
    usage_estimated: bool = False
    error: MessageError | None = None


class MessagePage(msgspec.Struct, frozen=True):
    items: list[MessageOut]
    next_cursor: str | None


class SendResult(msgspec.Struct, frozen=True):
    user_message: MessageOut
    assistant_message: MessageOut
