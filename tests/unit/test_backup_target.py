"""The PostgreSQL URL handed to pg_dump and pg_restore never carries the password."""

from __future__ import annotations

from chatrt.db.backup import pg_target


def test_the_password_moves_from_the_url_to_pgpassword() -> None:
    target = pg_target("postgresql://chat%40rt:p%3Ass%2Fw0rd@db.internal:6543/chat?sslmode=require")
    assert target.dsn == "postgresql://chat%40rt@db.internal:6543/chat?sslmode=require"
    assert target.password == "p:ss/w0rd"
    assert target.env({"PATH": "/bin"}) == {"PATH": "/bin", "PGPASSWORD": "p:ss/w0rd"}
    assert target.label == "database chat on db.internal:6543"
    assert target.redact("failed for p:ss/w0rd") == "failed for ***"


def test_without_a_password_the_environment_is_left_alone() -> None:
    target = pg_target("postgres://chatrt@[::1]/chatrt")
    assert target.dsn == "postgres://chatrt@[::1]/chatrt"
    assert target.password is None
    assert target.env({"PGPASSWORD": "from-the-operator"}) == {"PGPASSWORD": "from-the-operator"}
