"""Piccolo app registration: our tables and where their migrations live."""

from __future__ import annotations

from pathlib import Path

from piccolo.conf.apps import AppConfig

from chatrt.db.tables import TABLES


def migrations_folder() -> Path:
    """``chatrt/db/migrations`` in a built wheel, else the repository's ``migrations/chat``."""
    packaged = Path(__file__).parent / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "migrations" / "chat"


APP_CONFIG = AppConfig(
    app_name="chat",
    migrations_folder_path=str(migrations_folder()),
    table_classes=list(TABLES),
    migration_dependencies=[],
    commands=[],
)
