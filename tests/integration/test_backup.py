"""``chatrt backup`` and ``chatrt restore`` round trips, run as real processes.

Data is written through the app (Thai text included), backed up while the app runs, then
restored twice: over a database that changed since (the clean-restore semantics) and into a
database dropped and created again. Every row of every table must come back identical, and
the app must serve the restored conversations to a user who signs in again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chatrt.app import create_app
from tests.conftest import Backend, run_chatrt, serving
from tests.support.client import PASSWORD, Client

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

THAI_TITLE = "บทสนทนาภาษาไทย"
THAI_PROMPT = "ตอบเป็นภาษาไทยอย่างสุภาพ"
THAI_QUESTIONS = ["สวัสดีครับ วันนี้อากาศเป็นอย่างไร", "ช่วยสรุปให้หน่อยได้ไหมคะ 🙏"]

Snapshot = dict[str, Any]


def snapshot(backend: Backend) -> Snapshot:
    """Every row of every table (ordered by id), plus the schema objects, as plain text."""
    if backend.is_postgres:
        assert backend.pg is not None
        assert backend.db_name is not None
        pg, name = backend.pg, backend.db_name
        tables = pg.psql(
            "select tablename from pg_tables where schemaname = 'public' order by 1", name
        ).split()
        result: Snapshot = {
            table: pg.psql(
                f"select coalesce(json_agg(t order by t.id)::text, '[]') from \"{table}\" t", name
            )
            for table in tables
        }
        result["indexes"] = pg.psql(
            "select indexname, indexdef from pg_indexes where schemaname = 'public' order by 1",
            name,
        )
        # A CHECK's text is deparsed differently once restored (IN (...) becomes = ANY
        # (ARRAY[...]) with other casts), so CHECKs compare by name; the rest by definition.
        result["constraints"] = pg.psql(
            "select conrelid::regclass::text, conname, contype, "
            "case when contype = 'c' then '' else pg_get_constraintdef(oid) end "
            "from pg_constraint where connamespace = 'public'::regnamespace order by 1, 2",
            name,
        )
        result["sequences"] = pg.psql(
            "select sequencename, last_value from pg_sequences order by 1", name
        )
        return result
    path = Path(backend.env["CHATRT_DATABASE_URL"].removeprefix("sqlite:///"))
    with sqlite3.connect(path) as db:
        schema = db.execute(
            "select type, name, sql from sqlite_master where name not like 'sqlite_%' order by 2"
        ).fetchall()
        tables = [name for kind, name, _sql in schema if kind == "table"]
        result = {
            table: db.execute(f'select * from "{table}" order by id').fetchall() for table in tables
        }
    result["schema"] = schema
    return result


def drop_and_recreate(backend: Backend) -> None:
    if backend.is_postgres:
        assert backend.pg is not None
        assert backend.db_name is not None
        backend.pg.drop_database(backend.db_name)
        backend.pg.create_database(backend.db_name)
        assert (
            backend.pg.psql(
                "select count(*) from pg_tables where schemaname = 'public'", backend.db_name
            )
            == "0"
        )
        return
    path = Path(backend.env["CHATRT_DATABASE_URL"].removeprefix("sqlite:///"))
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)


async def write_conversations(new_client: Callable[[], Client]) -> list[Client]:
    users = [new_client(), new_client()]
    for user in users:
        await user.register()
        conversation = await user.create_conversation(title=THAI_TITLE, system_prompt=THAI_PROMPT)
        for question in THAI_QUESTIONS:
            sent = await user.send(conversation["id"], question)
            assert sent.status_code == 202, sent.text
            answer = sent.json()["assistant_message"]
            await user.wait_finished(conversation["id"], answer["id"])
        deleted = await user.create_conversation(title="ลบแล้ว")
        response = await user.request("DELETE", f"/api/conversations/{deleted['id']}")
        assert response.status_code == 204
    return users


async def everything_seen_by(user: Client) -> dict[str, Any]:
    listed = await user.get("/api/conversations", params={"limit": 100})
    assert listed.status_code == 200
    conversations = listed.json()["items"]
    return {
        "conversations": conversations,
        "messages": {c["id"]: await user.history(c["id"]) for c in conversations},
    }


async def test_backup_and_restore_bring_back_every_row(backend: Backend, tmp_path: Path) -> None:
    dump = tmp_path / "chatrt.backup"
    async with serving(create_app(backend.settings())) as new_client:
        users = await write_conversations(new_client)
        seen = [await everything_seen_by(user) for user in users]
        assert any(
            THAI_QUESTIONS[0] in m["content"]
            for m in seen[0]["messages"][seen[0]["conversations"][0]["id"]]
        )
        before = snapshot(backend)
        # Online backup: the app keeps running.
        done = run_chatrt("backup", "--output", str(dump), env=backend.env)
        assert done.returncode == 0, done.stderr
        assert dump.stat().st_size > 0
        assert str(dump) in done.stdout
        # Changes after the backup, which a restore must undo.
        late = new_client()
        await late.register()
        await late.create_conversation(title="หลังสำรองข้อมูล")
        rename = await users[0].request(
            "PATCH",
            f"/api/conversations/{seen[0]['conversations'][0]['id']}",
            json={"title": "changed"},
        )
        assert rename.status_code == 200
    assert snapshot(backend) != before

    restored = run_chatrt("restore", "--input", str(dump), env=backend.env)
    assert restored.returncode == 0, restored.stderr
    assert snapshot(backend) == before

    drop_and_recreate(backend)
    restored = run_chatrt("restore", "--input", str(dump), env=backend.env)
    assert restored.returncode == 0, restored.stderr
    assert snapshot(backend) == before

    async with serving(create_app(backend.settings())) as new_client:
        for user, expected in zip(users, seen, strict=True):
            again = new_client()
            assert user.user is not None
            login = await again.post(
                "/api/auth/login", json={"email": user.user["email"], "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
            assert await everything_seen_by(again) == expected


async def test_restore_of_a_missing_file_fails_in_one_line(
    backend: Backend, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.backup"
    done = run_chatrt("restore", "--input", str(missing), env=backend.env)
    assert done.returncode == 1
    assert done.stderr == f"chatrt restore: failed: backup file not found: {missing}\n"


async def test_restore_refuses_a_file_that_is_not_a_backup(
    backend: Backend, tmp_path: Path
) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("ไม่ใช่ไฟล์สำรอง\n")
    before = snapshot(backend)
    done = run_chatrt("restore", "--input", str(bogus), env=backend.env)
    assert done.returncode == 1
    assert done.stderr.startswith("chatrt restore: failed: ")
    assert "is not a" in done.stderr
    assert done.stderr.count("\n") == 1
    assert snapshot(backend) == before


def test_a_failed_backup_keeps_the_password_secret_and_the_old_file(tmp_path: Path) -> None:
    from tests.support.servers import free_port

    secret = "pa55-w0rd-not-to-print"
    url = f"postgresql://chatrt:{secret}@127.0.0.1:{free_port()}/chatrt"
    dump = tmp_path / "chatrt.backup"
    dump.write_bytes(b"yesterday's backup")
    done = run_chatrt("backup", "--output", str(dump), env={"CHATRT_DATABASE_URL": url})
    assert done.returncode == 1
    assert done.stderr.startswith("chatrt backup: failed: pg_dump: ")
    assert done.stderr.count("\n") == 1
    assert secret not in done.stderr + done.stdout
    assert dump.read_bytes() == b"yesterday's backup"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chatrt.backup"]
