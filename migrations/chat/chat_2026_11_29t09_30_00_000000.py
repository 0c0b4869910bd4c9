"""Indexes for per-user token usage by day (budget checks and ``GET /api/usage``).

A user's usage is read as: their conversations touched since the period's start (every send
sets ``updated_at``), then those conversations' assistant messages created in the period.
The first index serves the first step for active and deleted conversations alike (spent
tokens count either way); the second is a range scan per conversation.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-29T09:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "usage indexes"

FORWARDS = (
    "CREATE INDEX conversations_user_updated_idx ON conversations (user_id, updated_at)",
    "CREATE INDEX messages_assistant_created_idx ON messages (conversation_id, created_at) "
    "WHERE role = 'assistant'",
)
BACKWARDS = (
    "DROP INDEX messages_assistant_created_idx",
    "DROP INDEX conversations_user_updated_idx",
)


class RawTable(Table):
    pass


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="chat", description=DESCRIPTION)

    async def run() -> None:
        for statement in FORWARDS:
            await RawTable.raw(statement)

    async def undo() -> None:
        for statement in BACKWARDS:
            await RawTable.raw(statement)

    manager.add_raw(run)
    manager.add_raw_backwards(undo)
    return manager
