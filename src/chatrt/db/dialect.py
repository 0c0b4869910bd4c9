"""The few SQL expressions PostgreSQL and SQLite spell differently."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

from chatrt.db.tables import TABLES


def utc_day(column: str) -> str:
    """SQL for the UTC calendar day of a timestamp ``column``, as ``YYYY-MM-DD`` text."""
    engine = TABLES[0]._meta.db
    if isinstance(engine, PostgresEngine):
        return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    if isinstance(engine, SQLiteEngine):
        # Timestamps are always written from Python in UTC: 'YYYY-MM-DD HH:MM:SS...+00:00'.
        return f"substr({column}, 1, 10)"
    raise TypeError(f"unsupported engine {type(engine).__name__}")


def as_uuid(value: Any) -> UUID:
    """A UUID column from a raw query: PostgreSQL returns a UUID, SQLite its text."""
    return value if isinstance(value, UUID) else UUID(str(value))
