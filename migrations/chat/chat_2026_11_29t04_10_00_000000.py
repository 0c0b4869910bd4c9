"""Messages record whether their token usage was estimated (the server sent none)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-29T04:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "messages.usage_estimated"


class RawTable(Table):
    pass


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="chat", description=DESCRIPTION)

    async def run() -> None:
        await RawTable.raw(
            "ALTER TABLE messages ADD COLUMN usage_estimated BOOLEAN NOT NULL DEFAULT FALSE"
        )

    async def undo() -> None:
        await RawTable.raw("ALTER TABLE messages DROP COLUMN usage_estimated")

    manager.add_raw(run)
    manager.add_raw_backwards(undo)
    return manager
