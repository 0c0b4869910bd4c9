"""The operator's commands: ``chatrt --help | migrate | serve``, run as real processes.

The migrate tests also guard the schema: a table class changed without a migration fails them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from chatrt.db.tables import TABLES as TABLE_CLASSES
from tests.conftest import SECRET, run_chatrt
from tests.support.schema import (
    assert_matches_tables,
    declared_schema,
    postgres_schema,
    sqlite_schema,
)
from tests.support.servers import PostgresServer, free_port
from tests.support.wait import poll_until

pytestmark = pytest.mark.integration

TABLES = {"users", "conversations", "messages"}
INDEXES = {
    "users_email_uq",
    "conversations_user_active_idx",
    "conversations_deleted_idx",
    "messages_conversation_index_uq",
    "messages_conversation_client_id_uq",
    "messages_streaming_idx",
}


def test_help_lists_every_command() -> None:
    done = run_chatrt("--help", env={})
    assert done.returncode == 0
    for command in ("serve", "migrate", "purge-deleted", "backup", "restore", "usage-report"):
        assert command in done.stdout


def test_migrate_postgres_twice(pg_server: PostgresServer) -> None:
    name = f"chatrt_migrate_{os.getpid()}"
    pg_server.create_database(name)
    try:
        env = {"CHATRT_DATABASE_URL": pg_server.dsn(name)}
        for _ in range(2):
            done = run_chatrt("migrate", env=env)
            assert done.returncode == 0, done.stderr + done.stdout
        tables = set(
            pg_server.psql(
                "select tablename from pg_tables where schemaname = 'public'", dbname=name
            ).split()
        )
        assert tables >= TABLES | {"migration"}
        indexes = set(
            pg_server.psql(
                "select indexname from pg_indexes where schemaname = 'public'", name
            ).split()
        )
        assert indexes >= INDEXES
        applied = pg_server.psql("select count(*) from migration", dbname=name)
        migrations = Path(__file__).parents[2] / "migrations" / "chat"
        assert applied == str(len(list(migrations.glob("chat_*.py"))))
        # The migrations guard: every table class matches the schema the migrations build.
        assert_matches_tables(
            declared_schema(TABLE_CLASSES), postgres_schema(pg_server, name), "PostgreSQL"
        )
    finally:
        pg_server.drop_database(name)


def test_migrate_sqlite(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "fresh.sqlite3"
    for _ in range(2):
        done = run_chatrt("migrate", env={"CHATRT_DATABASE_URL": f"sqlite:///{path}"})
        assert done.returncode == 0, done.stderr + done.stdout
    with sqlite3.connect(path) as db:
        names = {row[0] for row in db.execute("select name from sqlite_master")}
    assert names >= TABLES | INDEXES
    assert_matches_tables(declared_schema(TABLE_CLASSES), sqlite_schema(path), "SQLite")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CHATRT_DATABASE_URL": "mysql://x"}, "CHATRT_DATABASE_URL"),
        ({"CHATRT_REDIS_URL": "http://x"}, "CHATRT_REDIS_URL"),
        ({"CHATRT_PROVIDERS": "[{"}, "CHATRT_PROVIDERS"),
        ({"CHATRT_REDIS_URL": "redis://127.0.0.1:1/0"}, "CHATRT_SECRET_KEY"),
    ],
)
def test_serve_refuses_bad_configuration_naming_the_variable(
    env: dict[str, str], named: str
) -> None:
    done = run_chatrt("serve", "--port", str(free_port()), env=env, timeout=30)
    assert done.returncode == 2
    assert named in done.stderr


def _wait_live(base: str, process: subprocess.Popen[str], within_s: float = 30.0) -> None:
    def live() -> bool:
        assert process.poll() is None, "chatrt serve exited early"
        try:
            return httpx.get(f"{base}/health/live", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    poll_until(live, within_s)


def test_serve_on_the_embedded_default_from_an_empty_folder(tmp_path: Path) -> None:
    """The README's first command: no configuration, a fresh folder, a working chat."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CHATRT_", "PICCOLO_"))}
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "chatrt", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=clean | {"CHATRT_DEMO_CHUNK_DELAY_MS": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_live(base, process)
        assert (tmp_path / "chatrt.sqlite3").exists()
        with httpx.Client(base_url=base, timeout=10) as http:
            registered = http.post(
                "/api/auth/register", json={"email": "new@example.com", "password": "s3cret-pass"}
            )
            assert registered.status_code == 201
            assert http.post("/api/auth/logout", headers=_csrf(http)).status_code == 204
            login = http.post(
                "/api/auth/login", json={"email": "new@example.com", "password": "s3cret-pass"}
            )
            assert login.status_code == 200
            created = http.post("/api/conversations", json={"title": "hi"}, headers=_csrf(http))
            assert created.status_code == 201
            cid = created.json()["conversation"]["id"]
            sent = http.post(
                f"/api/conversations/{cid}/messages", json={"content": "hello"}, headers=_csrf(http)
            )
            assert sent.status_code == 202

            def answered() -> bool:
                items[:] = http.get(f"/api/conversations/{cid}/messages").json()["items"]
                return bool(items[0]["status"] != "streaming")

            items: list[dict[str, object]] = []
            poll_until(answered, within_s=20)
            assert items[0]["status"] == "complete"
            assert "demo" in items[0]["content"]
            assert [m["message_index"] for m in items] == [1, 0]
            swagger = http.get("/schema/swagger")
            assert swagger.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
    # uvicorn re-raises the signal after a graceful shutdown, so -SIGTERM is a clean exit.
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in log_path.read_text()


def _csrf(http: httpx.Client) -> dict[str, str]:
    return {"x-csrftoken": http.cookies["csrftoken"]}


def test_purge_on_postgres_needs_no_secret(pg_server: PostgresServer, pg_template: str) -> None:
    done = run_chatrt("purge-deleted", env={"CHATRT_DATABASE_URL": pg_server.dsn(pg_template)})
    assert done.returncode == 0, done.stderr
    assert "purged 0 " in done.stdout


def test_commands_report_an_unreachable_database_in_one_line() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nope"
    for command in ("migrate", "purge-deleted"):
        done = run_chatrt(command, env={"CHATRT_DATABASE_URL": url, "CHATRT_SECRET_KEY": SECRET})
        assert done.returncode == 1
        assert f"chatrt {command}: failed:" in done.stderr
        assert "Traceback" not in done.stderr
