"""Recognise database errors the same way on PostgreSQL and SQLite."""

from __future__ import annotations

import sqlite3

import asyncpg


def is_unique_violation(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.exceptions.UniqueViolationError):
        return True
    return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)
