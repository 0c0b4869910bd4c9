"""Conversations: CRUD, ownership, soft delete and restore, keyset pages and previews."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from chatrt.clock import utcnow
from chatrt.db.tables import Conversation, Message
from tests.conftest import Backend, run_chatrt
from tests.support.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

MISSING = "3f1c7f3e-0000-4000-8000-000000000000"


async def test_create_read_patch(alice: Client) -> None:
    created = await alice.create_conversation(title="Trip", system_prompt="Be brief", model="m1")
    assert created["title"] == "Trip"
    assert created["message_count"] == 0
    assert created["last_message"] is None
    assert created["created_at"].endswith("Z")
    read = await alice.get(f"/api/conversations/{created['id']}")
    assert read.status_code == 200
    assert read.json()["conversation"] == created
    patched = await alice.request(
        "PATCH", f"/api/conversations/{created['id']}", json={"title": "Renamed", "model": None}
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()["conversation"]
    assert (body["title"], body["model"], body["system_prompt"]) == ("Renamed", None, "Be brief")
    assert body["updated_at"] >= created["updated_at"]


@pytest.mark.parametrize(
    "body",
    [{"title": "x" * 201}, {"model": ""}, {"color": "red"}, {"title": 5}],
)
async def test_bad_conversation_fields_are_422(alice: Client, body: dict[str, Any]) -> None:
    response = await alice.post("/api/conversations", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]


def _routes(cid: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", f"/api/conversations/{cid}", None),
        ("PATCH", f"/api/conversations/{cid}", {"title": "x"}),
        ("DELETE", f"/api/conversations/{cid}", None),
        ("POST", f"/api/conversations/{cid}/restore", None),
        ("GET", f"/api/conversations/{cid}/messages", None),
        ("POST", f"/api/conversations/{cid}/messages", {"content": "hi"}),
    ]


async def test_another_users_conversation_is_404_on_every_route(alice: Client, bob: Client) -> None:
    theirs = await alice.create_conversation(title="private")
    for method, path, body in _routes(theirs["id"]):
        response = await bob.request(method, path, json=body)
        missing = await bob.request(method, path.replace(theirs["id"], MISSING), json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json() == missing.json(), "a foreign id looks exactly like a missing one"
        assert response.json()["error"]["code"] == "conversation_not_found"
    still = await alice.get(f"/api/conversations/{theirs['id']}")
    assert still.json()["conversation"]["title"] == "private"


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "3f1c7f3e-0000-4000-8000-00000000000Z"])
async def test_malformed_id_is_422(alice: Client, bad_id: str) -> None:
    for method, path, body in _routes(bad_id):
        response = await alice.request(method, path, json=body)
        assert response.status_code == 422, (method, path, response.text)
        assert response.json()["error"]["details"][0]["field"] == "conversation_id"


async def test_soft_delete_hides_and_restore_brings_back(alice: Client) -> None:
    conversation = await alice.create_conversation(title="gone soon")
    cid = conversation["id"]
    assert (await alice.request("DELETE", f"/api/conversations/{cid}")).status_code == 204
    assert (await alice.get(f"/api/conversations/{cid}")).status_code == 404
    assert (await alice.get(f"/api/conversations/{cid}/messages")).status_code == 404
    assert (await alice.send(cid, "hello?")).status_code == 404
    listed = (await alice.get("/api/conversations")).json()["items"]
    assert cid not in {c["id"] for c in listed}
    assert (await alice.request("DELETE", f"/api/conversations/{cid}")).status_code == 404
    # The row is still there, marked deleted.
    row = await Conversation.select().where(Conversation.id == uuid.UUID(cid)).first()
    assert row is not None
    assert row["status"] == "deleted"
    restored = await alice.post(f"/api/conversations/{cid}/restore")
    assert restored.status_code == 200
    assert restored.json()["conversation"]["title"] == "gone soon"
    listed = (await alice.get("/api/conversations")).json()["items"]
    assert cid in {c["id"] for c in listed}


async def test_restore_after_the_retention_period_is_404(alice: Client) -> None:
    conversation = await alice.create_conversation(title="old")
    cid = uuid.UUID(conversation["id"])
    assert (await alice.request("DELETE", f"/api/conversations/{cid}")).status_code == 204
    await Conversation.update({Conversation.deleted_at: utcnow() - timedelta(days=31)}).where(
        Conversation.id == cid
    )
    response = await alice.post(f"/api/conversations/{cid}/restore")
    assert response.status_code == 404


async def test_purge_deleted_command_removes_only_old_deleted(
    alice: Client, backend: Backend
) -> None:
    old = await alice.create_conversation(title="old")
    recent = await alice.create_conversation(title="recent")
    active = await alice.create_conversation(title="active")
    await alice.send(old["id"], "a message that goes too")
    for conversation in (old, recent):
        deleted = await alice.request("DELETE", f"/api/conversations/{conversation['id']}")
        assert deleted.status_code == 204
    await Conversation.update({Conversation.deleted_at: utcnow() - timedelta(days=40)}).where(
        Conversation.id == uuid.UUID(old["id"])
    )
    done = run_chatrt("purge-deleted", "--older-than", "30d", env=backend.env)
    assert done.returncode == 0, done.stderr
    assert "purged 1 " in done.stdout
    remaining = {str(r["id"]) for r in await Conversation.select(Conversation.id)}
    assert remaining == {recent["id"], active["id"]}
    assert not await Message.exists().where(Message.conversation_id == uuid.UUID(old["id"]))


async def _bulk_conversations(user_id: str, count: int) -> list[tuple[Any, uuid.UUID]]:
    """Insert ``count`` conversations directly, with deliberate updated_at ties."""
    base = utcnow()
    rows = []
    for i in range(count):
        # Groups of five share a timestamp, so the id tie-breaker matters.
        updated = base - timedelta(seconds=i // 5)
        rows.append(
            Conversation(
                id=uuid.uuid4(),
                user_id=uuid.UUID(user_id),
                title=f"c{i}",
                status="active",
                message_count=0,
                created_at=updated,
                updated_at=updated,
            )
        )
    for start in range(0, count, 200):
        await Conversation.insert(*rows[start : start + 200])
    return [(r.updated_at, r.id) for r in rows]


@pytest.mark.parametrize("limit", [100, 7])
async def test_walking_1000_conversations_by_cursor(alice: Client, bob: Client, limit: int) -> None:
    assert alice.user is not None
    assert bob.user is not None
    keys = await _bulk_conversations(alice.user["id"], 1000)
    await _bulk_conversations(bob.user["id"], 30)
    expected = [str(cid) for _, cid in sorted(keys, key=lambda k: (k[0], str(k[1])), reverse=True)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = await alice.get("/api/conversations", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert seen == expected
    assert pages == -(-1000 // limit)


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"cursor": "%%%"}, {"cursor": "bm9wZQ"}],
)
async def test_bad_page_parameters_are_422(alice: Client, params: dict[str, Any]) -> None:
    response = await alice.get("/api/conversations", params=params)
    assert response.status_code == 422, response.text
    conversation = await alice.create_conversation()
    response = await alice.get(f"/api/conversations/{conversation['id']}/messages", params=params)
    assert response.status_code == 422, response.text


async def test_every_preview_is_the_true_latest_message(alice: Client, bob: Client) -> None:
    """Conversations of different lengths: a per-group-maximum join would pick wrong rows."""
    assert alice.user is not None
    now = utcnow()
    expected: dict[str, tuple[str, str]] = {}
    for n, owner in [(1, alice), (4, alice), (9, bob), (2, alice), (9, alice), (0, alice)]:
        assert owner.user is not None
        cid = uuid.uuid4()
        await Conversation.insert(
            Conversation(
                id=cid,
                user_id=uuid.UUID(owner.user["id"]),
                title=f"{n} messages",
                status="active",
                message_count=n,
                created_at=now,
                updated_at=now,
            )
        )
        messages = [
            Message(
                id=uuid.uuid4(),
                conversation_id=cid,
                message_index=i,
                role="user" if i % 2 == 0 else "assistant",
                content=f"conversation {cid} message {i} " + "ก" * 300,
                status="complete",
                created_at=now + timedelta(milliseconds=i),
            )
            for i in range(n)
        ]
        if messages:
            await Message.insert(*messages)
            last = messages[-1]
            expected[str(cid)] = (str(last.id), last.content[:200])
    page = (await alice.get("/api/conversations", params={"limit": 100})).json()["items"]
    assert len(page) == 5
    for item in page:
        if item["id"] not in expected:
            assert item["last_message"] is None
            continue
        last_id, preview = expected[item["id"]]
        assert item["last_message"]["id"] == last_id
        assert item["last_message"]["preview"] == preview
        assert len(item["last_message"]["preview"]) == 200


async def test_list_is_most_recently_active_first(alice: Client) -> None:
    first = await alice.create_conversation(title="first")
    second = await alice.create_conversation(title="second")
    order = [c["id"] for c in (await alice.get("/api/conversations")).json()["items"]]
    assert order == [second["id"], first["id"]]
    sent = await alice.send(first["id"], "bump")
    assert sent.status_code == 202
    order = [c["id"] for c in (await alice.get("/api/conversations")).json()["items"]]
    assert order == [first["id"], second["id"]]
    top = (await alice.get("/api/conversations")).json()["items"][0]
    assert top["message_count"] == 2
    assert top["last_message"]["role"] == "assistant"
