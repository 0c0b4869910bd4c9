"""Build the Piccolo engine from settings and bind the tables to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction
from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType

from chatrt.db.tables import TABLES
from chatrt.settings import DatabaseSettings


def make_engine(db: DatabaseSettings) -> Engine:  # type: ignore[type-arg]
    """An engine for the configured URL; no connection is opened yet."""
    if db.is_sqlite:
        # A generous busy timeout: SQLite has one writer, and waiting beats failing.
        return SQLiteEngine(path=db.sqlite_path, timeout=30)
    return PostgresEngine(config={"dsn": db.url})


def bind_tables(engine: Engine) -> None:  # type: ignore[type-arg]
    """Point every table at ``engine``; Piccolo keeps the engine on the table class."""
    for table in TABLES:
        table._meta.db = engine


@asynccontextmanager
async def database(db: DatabaseSettings) -> AsyncIterator[Engine]:  # type: ignore[type-arg]
    """Open the engine (a pool on PostgreSQL), bind the tables, close on exit."""
    engine = make_engine(db)
    bind_tables(engine)
    if isinstance(engine, PostgresEngine):
        await engine.start_connection_pool(min_size=db.pool_min, max_size=db.pool_max)
    elif isinstance(engine, SQLiteEngine):
        # WAL lets readers run while the single writer commits.
        await TABLES[0].raw("PRAGMA journal_mode=WAL")
    try:
        yield engine
    finally:
        if isinstance(engine, PostgresEngine):
            await engine.close_connection_pool()


def write_transaction() -> PostgresTransaction | SQLiteTransaction:
    """A transaction on the tables' engine that takes the write lock up front on SQLite.

    Piccolo runs a query inside a transaction only when the transaction belongs to the same
    engine object the table is bound to, so this always asks the tables for their engine.
    """
    engine = TABLES[0]._meta.db
    if isinstance(engine, SQLiteEngine):
        # IMMEDIATE avoids the deadlock of two readers both upgrading to writers.
        return engine.transaction(transaction_type=TransactionType.immediate)
    if isinstance(engine, PostgresEngine):
        return engine.transaction()
    raise TypeError(f"unsupported engine {type(engine).__name__}")
