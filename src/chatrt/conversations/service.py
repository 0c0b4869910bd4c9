"""Conversation reads and writes, always scoped to the signed-in user.

A conversation of someone else's, a soft-deleted one and a missing one all give the same 404.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from uuid import UUID

import msgspec

from chatrt.clock import utcnow
from chatrt.conversations.schemas import (
    ConversationCreate,
    ConversationOut,
    ConversationPage,
    ConversationPatch,
    LastMessage,
)
from chatrt.db.dialect import as_uuid
from chatrt.db.tables import Conversation
from chatrt.errors import AppError
from chatrt.pagination import AwareDatetime, decode_cursor, encode_cursor

PREVIEW_CHARS = 200

# The latest message is the one at index message_count - 1: message_count and the indexes
# are allocated in the same transaction, so this join is exact, portable (PostgreSQL and
# SQLite) and one unique-index probe per row of the page.
_SELECT = f"""
SELECT c.id, c.title, c.system_prompt, c.model, c.created_at, c.updated_at, c.message_count,
       m.id AS last_id, m.role AS last_role, substr(m.content, 1, {PREVIEW_CHARS}) AS last_preview,
       m.created_at AS last_created_at
FROM conversations c
LEFT JOIN messages m ON m.conversation_id = c.id AND m.message_index = c.message_count - 1
WHERE c.user_id = {{}} AND c.status = 'active'
"""

_ORDER = " ORDER BY c.updated_at DESC, c.id DESC LIMIT {}"
_FIRST_PAGE = _SELECT + _ORDER
_NEXT_PAGE = _SELECT + " AND (c.updated_at, c.id) < ({}, {})" + _ORDER


class _ListKey(msgspec.Struct, array_like=True, frozen=True):
    updated_at: AwareDatetime
    id: UUID


def not_found() -> AppError:
    return AppError(404, "conversation_not_found")


def _to_out(row: dict[str, Any]) -> ConversationOut:
    last = None
    if row["last_id"] is not None:
        last = LastMessage(
            id=as_uuid(row["last_id"]),
            role=row["last_role"],
            preview=row["last_preview"] or "",
            created_at=row["last_created_at"],
        )
    return ConversationOut(
        id=as_uuid(row["id"]),
        title=row["title"],
        system_prompt=row["system_prompt"],
        model=row["model"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        message_count=row["message_count"],
        last_message=last,
    )


async def create(user_id: UUID, data: ConversationCreate) -> ConversationOut:
    now = utcnow()
    conversation_id = uuid.uuid4()
    await Conversation.insert(
        Conversation(
            id=conversation_id,
            user_id=user_id,
            title=data.title,
            system_prompt=data.system_prompt,
            model=data.model,
            status="active",
            message_count=0,
            created_at=now,
            updated_at=now,
        )
    )
    return ConversationOut(
        id=conversation_id,
        title=data.title,
        system_prompt=data.system_prompt,
        model=data.model,
        created_at=now,
        updated_at=now,
        message_count=0,
        last_message=None,
    )


async def get(user_id: UUID, conversation_id: UUID) -> ConversationOut:
    rows = await Conversation.raw(_SELECT + " AND c.id = {}", user_id, conversation_id)
    if not rows:
        raise not_found()
    return _to_out(rows[0])


async def is_active(conversation_id: UUID) -> bool:
    exists: bool = await Conversation.exists().where(
        Conversation.id == conversation_id, Conversation.status == "active"
    )
    return exists


async def list_page(user_id: UUID, limit: int, cursor: str | None) -> ConversationPage:
    """Most recently active first, keyset-paginated on ``(updated_at, id)``."""
    if cursor is None:
        rows = await Conversation.raw(_FIRST_PAGE, user_id, limit + 1)
    else:
        key = decode_cursor(cursor, _ListKey)
        rows = await Conversation.raw(
            _NEXT_PAGE,
            user_id,
            key.updated_at,
            key.id,
            limit + 1,
        )
    items = [_to_out(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor(_ListKey(last.updated_at, last.id))
    return ConversationPage(items=items, next_cursor=next_cursor)


async def patch(user_id: UUID, conversation_id: UUID, data: ConversationPatch) -> ConversationOut:
    values: dict[Any, Any] = {Conversation.updated_at: utcnow()}
    if data.title is not msgspec.UNSET:
        values[Conversation.title] = data.title
    if data.system_prompt is not msgspec.UNSET:
        values[Conversation.system_prompt] = data.system_prompt
    if data.model is not msgspec.UNSET:
        values[Conversation.model] = data.model
    updated = (
        await Conversation.update(values)
        .where(
            Conversation.id == conversation_id,
            Conversation.user_id == user_id,
            Conversation.status == "active",
        )
        .returning(Conversation.id)
    )
    if not updated:
        raise not_found()
    return await get(user_id, conversation_id)


async def soft_delete(user_id: UUID, conversation_id: UUID) -> None:
    deleted = (
        await Conversation.update(
            {Conversation.status: "deleted", Conversation.deleted_at: utcnow()}
        )
        .where(
            Conversation.id == conversation_id,
            Conversation.user_id == user_id,
            Conversation.status == "active",
        )
        .returning(Conversation.id)
    )
    if not deleted:
        raise not_found()


async def restore(user_id: UUID, conversation_id: UUID, retention: timedelta) -> ConversationOut:
    """Undo a soft delete made within ``retention``; restoring an active one is a no-op."""
    await Conversation.update({Conversation.status: "active", Conversation.deleted_at: None}).where(
        Conversation.id == conversation_id,
        Conversation.user_id == user_id,
        Conversation.status == "deleted",
        Conversation.deleted_at > utcnow() - retention,
    )
    return await get(user_id, conversation_id)


async def purge_deleted(older_than: timedelta) -> int:
    """Delete for good the conversations soft-deleted more than ``older_than`` ago."""
    purged = (
        await Conversation.delete()
        .where(
            Conversation.status == "deleted",
            Conversation.deleted_at < utcnow() - older_than,
        )
        .returning(Conversation.id)
    )
    return len(purged)
