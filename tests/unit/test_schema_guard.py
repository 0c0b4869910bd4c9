"""The migrations guard names each kind of drift between table classes and the schema."""

from __future__ import annotations

import pytest
from piccolo.columns import UUID, ForeignKey, Integer, Text, Varchar
from piccolo.table import Table

from tests.support.schema import assert_matches_tables, declared_schema, schema_drift


class Parent(Table, tablename="parents"):
    id = UUID(primary_key=True)


class Child(Table, tablename="children"):
    id = UUID(primary_key=True)
    parent_id = ForeignKey(references=Parent, null=False)
    name = Varchar(length=50)
    note = Text(null=True, default=None)
    added = Integer()  # declared, never migrated


LIVE = {
    "parents": {"id": ("uuid", False)},
    "children": {
        "id": ("uuid", False),
        "parent_id": ("uuid", False),
        "name": ("varchar(40)", False),  # length changed in the class only
        "note": ("text", False),  # nullability changed in the class only
        "legacy": ("text", True),  # migrated, no longer declared
    },
    "audit": {"id": ("uuid", False)},
}


def test_every_difference_is_reported_once() -> None:
    problems = schema_drift(declared_schema([Parent, Child]), LIVE)
    assert problems == [
        "table audit: in the database but no table class declares it",
        "children.added: declared in tables.py but missing from the database",
        "children.legacy: in the database but not declared in tables.py",
        "children.name: tables.py says varchar(50) not null, the database has varchar(40) not null",
        "children.note: tables.py says text null, the database has text not null",
    ]


def test_a_table_without_its_migration_is_reported() -> None:
    assert schema_drift(declared_schema([Parent]), {}) == [
        "table parents: declared in tables.py but missing from the database"
    ]


def test_the_failure_tells_the_developer_to_write_a_migration() -> None:
    with pytest.raises(AssertionError, match="Write a migration"):
        assert_matches_tables(declared_schema([Child]), LIVE, "SQLite")
