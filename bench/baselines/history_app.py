"""Baseline for the history benchmark: a bare ASGI app answering the same URLs.

uvicorn + one asyncpg pool + one prepared statement per URL + msgspec, reading the database
that ``chatrt migrate`` created and the bench loaded. Signed in by a ``session`` cookie that
holds the user id itself (no session store, no CSRF, no validation beyond parsing): it is the
practical limit, not a rival product. Cursors use chatrt's encoding, so the URLs are the same.

    BENCH_DSN=postgresql://... python -m uvicorn bench.baselines.history_app:app --port P
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import msgspec

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_LIST = """
SELECT c.id, c.title, c.system_prompt, c.model, c.created_at, c.updated_at, c.message_count,
       m.id, m.role, substr(m.content, 1, 200), m.created_at
FROM conversations c
LEFT JOIN messages m ON m.conversation_id = c.id AND m.message_index = c.message_count - 1
WHERE c.user_id = $1 AND c.status = 'active'
  AND (c.updated_at, c.id) < ($2, $3)
ORDER BY c.updated_at DESC, c.id DESC LIMIT $4
"""
_HISTORY = """
SELECT m.id, m.conversation_id, m.message_index, m.role, m.content, m.status,
       m.client_message_id, m.created_at, m.completed_at, m.ai_model, m.prompt_tokens,
       m.completion_tokens, m.response_time_ms, m.time_to_first_token_ms
FROM messages m JOIN conversations c ON c.id = m.conversation_id
WHERE m.conversation_id = $1 AND c.user_id = $2 AND c.status = 'active'
  AND m.message_index < $3
ORDER BY m.message_index DESC LIMIT $4
"""
_FAR_FUTURE = datetime.fromisoformat("9999-01-01T00:00:00+00:00")
_MAX_UUID = uuid.UUID(int=2**128 - 1)


class LastMessage(msgspec.Struct):
    id: uuid.UUID
    role: str
    preview: str
    created_at: datetime


class ConversationOut(msgspec.Struct):
    id: uuid.UUID
    title: str | None
    system_prompt: str | None
    model: str | None
    created_at: datetime
    updated_at: datetime
    message_count: int
    last_message: LastMessage | None


class MessageOut(msgspec.Struct):
    id: uuid.UUID
    conversation_id: uuid.UUID
    message_index: int
    role: str
    content: str
    status: str
    client_message_id: str | None
    created_at: datetime
    completed_at: datetime | None
    ai_model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    response_time_ms: int | None
    time_to_first_token_ms: int | None


class Page(msgspec.Struct):
    items: list[Any]
    next_cursor: str | None


_encode = msgspec.json.Encoder().encode
_pool: asyncpg.Pool | None = None


def _cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


def _uncursor(cursor: str) -> Any:
    return msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


def _user(scope: Scope) -> uuid.UUID | None:
    for name, value in scope["headers"]:
        if name == b"cookie":
            for part in value.decode().split(";"):
                key, _, val = part.strip().partition("=")
                if key == "session":
                    return uuid.UUID(val)
    return None


async def _list(user: uuid.UUID, limit: int, cursor: str | None) -> Page:
    updated, last_id = _FAR_FUTURE, _MAX_UUID
    if cursor:
        stamp, raw_id = _uncursor(cursor)
        updated, last_id = datetime.fromisoformat(stamp), uuid.UUID(raw_id)
    assert _pool is not None
    rows = await _pool.fetch(_LIST, user, updated, last_id, limit + 1)
    items = [
        ConversationOut(
            id=row[0],
            title=row[1],
            system_prompt=row[2],
            model=row[3],
            created_at=row[4],
            updated_at=row[5],
            message_count=row[6],
            last_message=LastMessage(*row[7:]) if row[7] is not None else None,
        )
        for row in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = _cursor([items[-1].updated_at, items[-1].id])
    return Page(items, next_cursor)


async def _history(
    user: uuid.UUID, conversation: uuid.UUID, limit: int, cursor: str | None
) -> Page:
    before = int(_uncursor(cursor)) if cursor else 2**31 - 1
    assert _pool is not None
    rows = await _pool.fetch(_HISTORY, conversation, user, before, limit + 1)
    items = [MessageOut(*row) for row in rows[:limit]]
    next_cursor = _cursor(items[-1].message_index) if len(rows) > limit else None
    return Page(items, next_cursor)


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    global _pool
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                size = int(os.environ.get("BENCH_POOL_SIZE", "10"))
                _pool = await asyncpg.create_pool(
                    os.environ["BENCH_DSN"], min_size=size, max_size=size
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _pool is not None:
                    await _pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    user = _user(scope)
    if user is None:
        await _respond(send, 401, b'{"error":"unauthorized"}')
        return
    query = parse_qs(scope["query_string"].decode())
    limit = int(query.get("limit", ["25"])[0])
    cursor = query.get("cursor", [None])[0]
    parts = scope["path"].strip("/").split("/")
    if parts == ["api", "conversations"]:
        page = await _list(user, limit, cursor)
    elif len(parts) == 4 and parts[:2] == ["api", "conversations"] and parts[3] == "messages":
        page = await _history(user, uuid.UUID(parts[2]), limit, cursor)
    else:
        await _respond(send, 404, b'{"error":"not_found"}')
        return
    await _respond(send, 200, _encode(page))
