"""The migrations guard: the migrated schema must match what the Piccolo tables declare.

Migrations are raw SQL, so nothing ties them to ``src/chatrt/db/tables.py``; a column added
to a table class without a migration would only fail at run time. These helpers read the live
columns of a database migrated to head and compare them, per table, with the declarations.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from piccolo.table import Table

from tests.support.servers import PostgresServer

# name -> (normalized type, nullable), per table
Columns = dict[str, tuple[str, bool]]
Schema = dict[str, Columns]

# Tables the database has and no Piccolo class declares on purpose.
BOOKKEEPING = {"migration"}

_PG_TYPES = {
    "character varying": "varchar",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "double precision": "double precision",
}

HINT = (
    "A table class in src/chatrt/db/tables.py and the migrations disagree. Write a migration "
    "(migrations/chat, raw SQL both PostgreSQL and SQLite accept; see docs/decisions.md) "
    "or fix the table class."
)


def declared_schema(tables: Iterable[type[Table]]) -> Schema:
    schema: Schema = {}
    for table in tables:
        schema[table._meta.tablename] = {
            column._meta.db_column_name: (
                column.column_type.lower().replace(" ", ""),
                bool(column._meta.null) and not column._meta.primary_key,
            )
            for column in table._meta.columns
        }
    return schema


def postgres_schema(pg: PostgresServer, dbname: str) -> Schema:
    out = pg.psql(
        "select table_name, column_name, data_type, coalesce(character_maximum_length, 0), "
        "is_nullable from information_schema.columns where table_schema = 'public' "
        "order by table_name, ordinal_position",
        dbname,
    )
    schema: Schema = {}
    for line in out.splitlines():
        table, column, data_type, length, nullable = line.split("|")
        kind = _PG_TYPES.get(data_type, data_type)
        if length != "0":
            kind += f"({length})"
        schema.setdefault(table, {})[column] = (kind, nullable == "YES")
    return _without_bookkeeping(schema)


def sqlite_schema(path: Path) -> Schema:
    schema: Schema = {}
    with sqlite3.connect(path) as db:
        tables = [
            row[0]
            for row in db.execute(
                "select name from sqlite_master where type = 'table' and name not like 'sqlite_%'"
            )
        ]
        for table in tables:
            # PRAGMA cannot take a bound parameter; the names come from sqlite_master.
            for _cid, name, kind, notnull, _default, pk in db.execute(
                f'pragma table_info("{table}")'
            ):
                # SQLite lets a non-INTEGER primary key hold NULL unless declared NOT NULL,
                # but the application never writes one, so count it as NOT NULL like PostgreSQL.
                nullable = not notnull and not pk
                schema.setdefault(table, {})[name] = (kind.lower().replace(" ", ""), nullable)
    return _without_bookkeeping(schema)


def _without_bookkeeping(schema: Schema) -> Schema:
    return {name: columns for name, columns in schema.items() if name not in BOOKKEEPING}


def schema_drift(declared: Schema, live: Schema) -> list[str]:
    """Every difference, one line each; empty when they match."""
    problems: list[str] = []
    for table in sorted(declared.keys() | live.keys()):
        if table not in live:
            problems.append(f"table {table}: declared in tables.py but missing from the database")
            continue
        if table not in declared:
            problems.append(f"table {table}: in the database but no table class declares it")
            continue
        want, have = declared[table], live[table]
        for column in sorted(want.keys() | have.keys()):
            where = f"{table}.{column}"
            if column not in have:
                problems.append(f"{where}: declared in tables.py but missing from the database")
            elif column not in want:
                problems.append(f"{where}: in the database but not declared in tables.py")
            elif want[column] != have[column]:
                problems.append(
                    f"{where}: tables.py says {_describe(want[column])}, "
                    f"the database has {_describe(have[column])}"
                )
    return problems


def _describe(column: tuple[str, bool]) -> str:
    kind, nullable = column
    return f"{kind} {'null' if nullable else 'not null'}"


def assert_matches_tables(declared: Schema, live: Schema, backend: str) -> None:
    problems = schema_drift(declared, live)
    assert not problems, f"{backend} schema after migrating to head:\n  " + "\n  ".join(
        [*problems, HINT]
    )
