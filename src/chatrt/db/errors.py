"""Recognise database errors the same way on PostgreSQL and SQLite."""

from __future__ import annotations

import sqlite3

import asyncpg

# The server is down, restarting or unreachable (SQLSTATE classes 08 and 57, and the
# socket errors of a connect that is refused, reset or times out), not a bad query.
_UNAVAILABLE = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    OSError,
)


def is_unique_violation(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.exceptions.UniqueViolationError):
        return True
    return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the database cannot be reached right now (retry later)."""
    return isinstance(exc, _UNAVAILABLE)
