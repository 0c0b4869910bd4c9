"""Initial schema: users, conversations, messages and their indexes.

Raw SQL that both PostgreSQL and SQLite accept (UUID and TIMESTAMPTZ are declared types
Piccolo's SQLite converters recognise). Piccolo's generated composite constraints do not
work on SQLite, so indexes are written by hand.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-29T00:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "initial schema"

FORWARDS = """
CREATE TABLE users (
    id UUID PRIMARY KEY,
    email VARCHAR(320) NOT NULL,
    password_hash TEXT NOT NULL,
    display_name VARCHAR(100) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX users_email_uq ON users (email);
CREATE TABLE conversations (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title VARCHAR(200),
    system_prompt TEXT,
    model VARCHAR(200),
    status VARCHAR(16) NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleted')),
    deleted_at TIMESTAMPTZ,
    message_count INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX conversations_user_active_idx
    ON conversations (user_id, updated_at DESC, id DESC) WHERE status = 'active';
CREATE INDEX conversations_deleted_idx ON conversations (deleted_at) WHERE status = 'deleted';
CREATE TABLE messages (
    id UUID PRIMARY KEY,
    conversation_id UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    message_index INTEGER NOT NULL,
    role VARCHAR(16) NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content TEXT NOT NULL DEFAULT '',
    status VARCHAR(16) NOT NULL
        CHECK (status IN ('complete', 'streaming', 'cancelled', 'failed')),
    client_message_id VARCHAR(100),
    ai_model VARCHAR(200),
    provider VARCHAR(100),
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    response_time_ms INTEGER,
    time_to_first_token_ms INTEGER,
    error_code VARCHAR(64),
    created_at TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX messages_conversation_index_uq ON messages (conversation_id, message_index);
CREATE UNIQUE INDEX messages_conversation_client_id_uq
    ON messages (conversation_id, client_message_id);
CREATE INDEX messages_streaming_idx ON messages (conversation_id) WHERE status = 'streaming'
"""

BACKWARDS = """
DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE users
"""


class RawTable(Table):
    pass


async def _run_script(script: str) -> None:
    # SQLite executes one statement per call, so run them one by one.
    for statement in script.split(";"):
        if statement.strip():
            await RawTable.raw(statement)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="chat", description=DESCRIPTION)

    async def run() -> None:
        await _run_script(FORWARDS)

    async def undo() -> None:
        await _run_script(BACKWARDS)

    manager.add_raw(run)
    manager.add_raw_backwards(undo)
    return manager
