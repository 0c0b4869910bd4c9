"""Message history and the write path of a send."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import msgspec

from chatrt.clock import utcnow
from chatrt.conversations.schemas import MessageCreate, MessageError, MessageOut, MessagePage
from chatrt.conversations.service import not_found
from chatrt.db.dialect import as_uuid
from chatrt.db.engine import write_transaction
from chatrt.db.errors import is_unique_violation
from chatrt.db.tables import Conversation, Message
from chatrt.errors import AppError, localize
from chatrt.pagination import MessageIndex, decode_cursor, encode_cursor
from chatrt.settings import Locale

MESSAGE_COLUMNS = (
    Message.id,
    Message.conversation_id,
    Message.message_index,
    Message.role,
    Message.content,
    Message.status,
    Message.client_message_id,
    Message.created_at,
    Message.completed_at,
    Message.ai_model,
    Message.prompt_tokens,
    Message.completion_tokens,
    Message.response_time_ms,
    Message.time_to_first_token_ms,
    Message.provider,
    Message.usage_estimated,
    Message.error_code,
)


def to_message(row: dict[str, Any], locale: Locale = "th") -> MessageOut:
    """A message from its row; a failure's text is in ``locale`` (answers are broadcast)."""
    code = row.pop("error_code", None)
    row["id"] = as_uuid(row["id"])
    row["conversation_id"] = as_uuid(row["conversation_id"])
    row["usage_estimated"] = bool(row.get("usage_estimated"))
    error = MessageError(code=code, message=localize(code, locale)) if code else None
    return MessageOut(**row, error=error)


async def streaming_ids(conversation_id: UUID) -> list[UUID]:
    """The conversation's answers still being generated (at most one, normally)."""
    rows = await Message.select(Message.id).where(
        Message.conversation_id == conversation_id, Message.status == "streaming"
    )
    return [row["id"] for row in rows]


# Fixed SQL on the send and read paths: a Piccolo query is rebuilt on every call, and that
# costs more than running it (docs/benchmarks.md).
_OWNED_ACTIVE = (
    "SELECT 1 AS found FROM conversations WHERE id = {} AND user_id = {} AND status = 'active'"
)
_SEND_BLOCKERS = (
    "SELECT EXISTS (SELECT 1 FROM messages WHERE conversation_id = {} AND client_message_id = {})"
    " AS sent, EXISTS (SELECT 1 FROM messages WHERE conversation_id = {} AND status = 'streaming')"
    " AS busy"
)


async def _owned_active(user_id: UUID, conversation_id: UUID) -> None:
    if not await Conversation.raw(_OWNED_ACTIVE, conversation_id, user_id):
        raise not_found()


# A history page as fixed SQL: Piccolo would rebuild the query on every request, which cost
# more than running it (docs/benchmarks.md). Ownership is joined in, so a page of a
# conversation the user may read is one query: a probe of the conversation's primary key and
# one range scan of the unique (conversation_id, message_index) index, at any depth.
_HISTORY = (
    "SELECT "
    + ", ".join(f"m.{column._meta.db_column_name}" for column in MESSAGE_COLUMNS)
    + " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
    " WHERE m.conversation_id = {} AND c.user_id = {} AND c.status = 'active'"
)
_ORDER = " ORDER BY m.message_index DESC LIMIT {}"
HISTORY_FIRST_PAGE = _HISTORY + _ORDER
HISTORY_NEXT_PAGE = _HISTORY + " AND m.message_index < {}" + _ORDER


async def list_page(
    user_id: UUID, conversation_id: UUID, limit: int, cursor: str | None, locale: Locale = "th"
) -> MessagePage:
    """Newest first, keyset-paginated on the unique ``(conversation_id, message_index)``."""
    before = decode_cursor(cursor, MessageIndex) if cursor is not None else None
    if before is None:
        rows = await Message.raw(HISTORY_FIRST_PAGE, conversation_id, user_id, limit + 1)
    else:
        rows = await Message.raw(HISTORY_NEXT_PAGE, conversation_id, user_id, before, limit + 1)
    if not rows:
        # Nothing readable: an empty page of one's own conversation, or somebody else's.
        await _owned_active(user_id, conversation_id)
    items = [to_message(row, locale) for row in rows[:limit]]
    next_cursor = encode_cursor(items[-1].message_index) if len(rows) > limit else None
    return MessagePage(items=items, next_cursor=next_cursor)


async def get_message(
    user_id: UUID, conversation_id: UUID, message_id: UUID, locale: Locale = "th"
) -> MessageOut:
    await _owned_active(user_id, conversation_id)
    row = (
        await Message.select(*MESSAGE_COLUMNS)
        .where(Message.id == message_id, Message.conversation_id == conversation_id)
        .first()
    )
    if row is None:
        raise AppError(404, "message_not_found")
    return to_message(row, locale)


async def get_by_id(message_id: UUID, locale: Locale = "th") -> MessageOut | None:
    """A message by id alone; callers have already checked who may see it."""
    row = await Message.select(*MESSAGE_COLUMNS).where(Message.id == message_id).first()
    return to_message(row, locale) if row is not None else None


class _AlreadySent(Exception):
    """Rolls back the transaction of a send whose client_message_id was already used."""


class SendOutcome:
    """The two messages of a send, and whether this call created them."""

    __slots__ = ("assistant", "created", "model", "system_prompt", "title", "user")

    def __init__(
        self,
        user: MessageOut,
        assistant: MessageOut,
        created: bool,
        system_prompt: str | None = None,
        model: str | None = None,
        title: str | None = None,
    ) -> None:
        self.user = user
        self.assistant = assistant
        self.created = created
        self.system_prompt = system_prompt
        self.model = model
        self.title = title


async def _existing_send(conversation_id: UUID, client_message_id: str) -> SendOutcome | None:
    first = (
        await Message.select(*MESSAGE_COLUMNS)
        .where(
            Message.conversation_id == conversation_id,
            Message.client_message_id == client_message_id,
        )
        .first()
    )
    if first is None:
        return None
    reply = (
        await Message.select(*MESSAGE_COLUMNS)
        .where(
            Message.conversation_id == conversation_id,
            Message.message_index == first["message_index"] + 1,
        )
        .first()
    )
    if reply is None:  # pragma: no cover - both rows are written in one transaction
        raise AppError(500, "internal_error")
    return SendOutcome(to_message(first), to_message(reply), created=False)


async def send(
    user_id: UUID,
    conversation_id: UUID,
    data: MessageCreate,
    max_content_chars: int,
    admit: Callable[[], Awaitable[None]] | None = None,
) -> SendOutcome:
    """Persist a user message and its ``streaming`` assistant reply in one transaction.

    Indexes come from bumping ``message_count`` by two, which also row-locks the conversation,
    so concurrent sends (from any instance) serialise and never share or skip an index. A
    repeated ``client_message_id`` returns the first send and creates nothing; a send while
    an answer is still streaming is a 409. ``admit`` (the token budget) may refuse a new
    send by raising; it runs after the repeat check, so a repeat is never refused.
    """
    if len(data.content) > max_content_chars:
        raise AppError(413, "content_too_long", details={"max_chars": max_content_chars})
    if not data.content.strip():
        raise AppError(422, "validation_error", details=[{"field": "content"}])
    await _owned_active(user_id, conversation_id)
    client_id = data.client_message_id
    if client_id is not None and (found := await _existing_send(conversation_id, client_id)):
        return found
    if admit is not None:
        await admit()
    now = utcnow()
    try:
        async with write_transaction():
            rows = await Conversation.raw(
                "UPDATE conversations SET message_count = message_count + 2, updated_at = {} "
                "WHERE id = {} AND user_id = {} AND status = 'active' "
                "RETURNING message_count, system_prompt, model, title",
                now,
                conversation_id,
                user_id,
            )
            if not rows:
                raise not_found()
            blockers = await Message.raw(
                _SEND_BLOCKERS, conversation_id, client_id, conversation_id
            )
            if blockers[0]["sent"]:
                raise _AlreadySent
            if blockers[0]["busy"]:
                raise AppError(409, "generation_in_progress")
            count: int = rows[0]["message_count"]
            user = _new_message(conversation_id, count - 2, "user", "complete", now)
            user = _with(user, content=data.content, client_message_id=client_id)
            assistant = _new_message(conversation_id, count - 1, "assistant", "streaming", now)
            await Message.insert(_row(user), _row(assistant))
    except _AlreadySent:
        found = await _existing_send(conversation_id, client_id or "")
        if found is None:  # pragma: no cover - the row was seen under the lock
            raise AppError(500, "internal_error") from None
        return found
    except Exception as exc:
        duplicate = client_id is not None and is_unique_violation(exc)
        if duplicate and (found := await _existing_send(conversation_id, client_id or "")):
            return found
        raise
    return SendOutcome(
        user,
        assistant,
        created=True,
        system_prompt=rows[0]["system_prompt"],
        model=rows[0]["model"],
        title=rows[0]["title"],
    )


def _new_message(conversation_id: UUID, index: int, role: str, status: str, now: Any) -> MessageOut:
    return MessageOut(
        id=uuid.uuid4(),
        conversation_id=conversation_id,
        message_index=index,
        role=role,  # type: ignore[arg-type]
        content="",
        status=status,  # type: ignore[arg-type]
        client_message_id=None,
        created_at=now,
        completed_at=now if status == "complete" else None,
        ai_model=None,
        prompt_tokens=None,
        completion_tokens=None,
        response_time_ms=None,
        time_to_first_token_ms=None,
    )


def _with(message: MessageOut, **changes: Any) -> MessageOut:
    return msgspec.structs.replace(message, **changes)


def _row(message: MessageOut) -> Message:
    fields = msgspec.structs.asdict(message)
    error = fields.pop("error")
    return Message(**fields, error_code=error.code if error else None)
