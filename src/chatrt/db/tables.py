"""Piccolo tables; the schema itself is owned by ``migrations/`` (raw SQL, both dialects)."""

from __future__ import annotations

from piccolo.columns import (
    UUID,
    Boolean,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table


class User(Table, tablename="users"):
    id = UUID(primary_key=True)
    email = Varchar(length=320, unique=True)
    password_hash = Text()
    display_name = Varchar(length=100)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class Conversation(Table, tablename="conversations"):
    id = UUID(primary_key=True)
    user_id = ForeignKey(references=User, null=False)
    title = Varchar(length=200, null=True, default=None)
    system_prompt = Text(null=True, default=None)
    model = Varchar(length=200, null=True, default=None)
    status = Varchar(length=16, default="active")
    deleted_at = Timestamptz(null=True, default=None)
    message_count = Integer(default=0)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class Message(Table, tablename="messages"):
    id = UUID(primary_key=True)
    conversation_id = ForeignKey(references=Conversation, null=False)
    message_index = Integer()
    role = Varchar(length=16)
    content = Text(default="")
    status = Varchar(length=16)
    client_message_id = Varchar(length=100, null=True, default=None)
    ai_model = Varchar(length=200, null=True, default=None)
    provider = Varchar(length=100, null=True, default=None)
    prompt_tokens = Integer(null=True, default=None)
    completion_tokens = Integer(null=True, default=None)
    response_time_ms = Integer(null=True, default=None)
    time_to_first_token_ms = Integer(null=True, default=None)
    error_code = Varchar(length=64, null=True, default=None)
    usage_estimated = Boolean(default=False)
    created_at = Timestamptz()
    completed_at = Timestamptz(null=True, default=None)


TABLES: tuple[type[Table], ...] = (User, Conversation, Message)
