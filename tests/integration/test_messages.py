"""Messages: the send path, idempotency, limits, history pages and the demo answer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import anyio
import pytest

from chatrt.clock import utcnow
from chatrt.db.tables import Message
from chatrt.providers.base import PromptMessage
from chatrt.providers.demo import DEMO_MODEL, demo_reply
from chatrt.settings import Settings
from tests.conftest import Backend
from tests.support.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Serve = Callable[[Settings], AbstractAsyncContextManager[Callable[[], Client]]]


async def test_send_persists_both_messages_and_the_demo_answer_completes(alice: Client) -> None:
    conversation = await alice.create_conversation(system_prompt="Answer in Thai")
    response = await alice.send(conversation["id"], "สวัสดีครับ", client_message_id="c-1")
    assert response.status_code == 202, response.text
    body = response.json()
    user, assistant = body["user_message"], body["assistant_message"]
    assert (user["message_index"], user["role"], user["status"]) == (0, "user", "complete")
    assert user["content"] == "สวัสดีครับ"
    assert user["client_message_id"] == "c-1"
    assert user["ai_model"] is None
    assert (assistant["message_index"], assistant["role"]) == (1, "assistant")
    assert assistant["status"] == "streaming"
    assert assistant["conversation_id"] == conversation["id"]
    done = await alice.wait_finished(conversation["id"], assistant["id"])
    assert done["status"] == "complete"
    prompt = [
        PromptMessage(role="system", content="Answer in Thai"),
        PromptMessage(role="user", content="สวัสดีครับ"),
    ]
    assert done["content"] == demo_reply(prompt)
    assert done["ai_model"] == DEMO_MODEL
    assert done["prompt_tokens"] > 0
    assert done["completion_tokens"] > 0
    assert 0 <= done["time_to_first_token_ms"] <= done["response_time_ms"]
    assert done["completed_at"] >= done["created_at"]


async def test_a_send_while_streaming_is_409(alice: Client) -> None:
    conversation = await alice.create_conversation()
    first = await alice.send(conversation["id"], "one")
    assert first.status_code == 202
    second = await alice.send(conversation["id"], "two")
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "generation_in_progress"
    await alice.wait_finished(conversation["id"], first.json()["assistant_message"]["id"])
    third = await alice.send(conversation["id"], "three")
    assert third.status_code == 202
    assert third.json()["user_message"]["message_index"] == 2


async def test_repeated_client_message_id_returns_the_first_send(alice: Client) -> None:
    conversation = await alice.create_conversation()
    cid = conversation["id"]
    first = await alice.send(cid, "once", client_message_id="dup")
    again = await alice.send(cid, "once", client_message_id="dup")
    assert again.status_code == 202
    assert again.json()["user_message"]["id"] == first.json()["user_message"]["id"]
    assert again.json()["assistant_message"]["id"] == first.json()["assistant_message"]["id"]
    await alice.wait_finished(cid, first.json()["assistant_message"]["id"])
    # Concurrent duplicates (a double click, a retry racing the original) also make one send.
    results = []

    async def send() -> None:
        results.append(await alice.send(cid, "twice", client_message_id="race"))

    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(send)
    assert [r.status_code for r in results] == [202] * 6, [r.text for r in results]
    assert len({r.json()["user_message"]["id"] for r in results}) == 1
    history = await alice.history(cid)
    assert len(history) == 4
    read = (await alice.get(f"/api/conversations/{cid}")).json()["conversation"]
    assert read["message_count"] == 4


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"content": ""}, 422, "validation_error"),
        ({"content": "   \n\t"}, 422, "validation_error"),
        ({"content": "x" * 2001}, 413, "content_too_long"),
        ({}, 422, "validation_error"),
        ({"content": "hi", "client_message_id": "x" * 101}, 422, "validation_error"),
        ({"content": "hi", "role": "system"}, 422, "validation_error"),
        ({"content": 12}, 422, "validation_error"),
    ],
)
async def test_bad_sends_are_refused_and_store_nothing(
    alice: Client, body: dict[str, Any], status: int, code: str
) -> None:
    conversation = await alice.create_conversation()
    response = await alice.post(f"/api/conversations/{conversation['id']}/messages", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await alice.history(conversation["id"]) == []


async def test_an_oversized_body_is_413(alice: Client) -> None:
    conversation = await alice.create_conversation()
    response = await alice.post(
        f"/api/conversations/{conversation['id']}/messages",
        json={"content": "ข" * 70_000},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_walking_5000_messages_newest_first(alice: Client) -> None:
    conversation = await alice.create_conversation()
    cid = uuid.UUID(conversation["id"])
    now = utcnow()
    rows = [
        Message(
            id=uuid.uuid4(),
            conversation_id=cid,
            message_index=i,
            role="user" if i % 2 == 0 else "assistant",
            content=f"m{i}",
            status="complete",
            created_at=now + timedelta(milliseconds=i),
        )
        for i in range(5000)
    ]
    for start in range(0, len(rows), 500):
        await Message.insert(*rows[start : start + 500])
    walked = await alice.history(str(cid), limit=100)
    assert [m["message_index"] for m in walked] == list(range(4999, -1, -1))
    assert [m["content"] for m in walked[:2]] == ["m4999", "m4998"]
    assert len({m["id"] for m in walked}) == 5000
    small_pages = await alice.history(str(cid), limit=7)
    assert [m["id"] for m in small_pages] == [m["id"] for m in walked]


async def test_concurrent_sends_from_two_instances_get_gap_free_indexes(
    backend: Backend, serve: Serve
) -> None:
    settings = backend.settings(CHATRT_DEMO_CHUNK_DELAY_MS="0")
    async with serve(settings) as on_a, serve(settings) as on_b:
        owner = on_a()
        await owner.register()
        # Sessions are shared through Redis; the embedded default keeps them in memory.
        other = on_b() if backend.is_postgres else on_a()
        other.sign_in_as(owner)
        conversation = await owner.create_conversation()
        cid = conversation["id"]
        conflicts = 0

        async def sender(n: int) -> None:
            nonlocal conflicts
            client = owner if n % 2 == 0 else other
            while True:
                response = await client.send(cid, f"message {n}", client_message_id=f"id-{n}")
                if response.status_code == 202:
                    return
                assert response.status_code == 409, response.text
                conflicts += 1
                await anyio.sleep(0.005)

        with anyio.fail_after(120):
            async with anyio.create_task_group() as group:
                for n in range(50):
                    group.start_soon(sender, n)
        history = await owner.history(cid, limit=100)
        last = history[0]
        await owner.wait_finished(cid, last["id"])
        history = list(reversed(await owner.history(cid, limit=100)))
    assert [m["message_index"] for m in history] == list(range(100))
    assert [m["role"] for m in history] == ["user", "assistant"] * 50
    assert sorted(m["content"] for m in history if m["role"] == "user") == sorted(
        f"message {n}" for n in range(50)
    )
    assert conflicts > 0, "the senders really overlapped"


async def test_deleting_a_conversation_cancels_its_generation(
    backend: Backend, serve: Serve
) -> None:
    async with serve(backend.settings(CHATRT_DEMO_CHUNK_DELAY_MS="100")) as clients:
        alice = clients()
        await alice.register()
        conversation = await alice.create_conversation()
        sent = await alice.send(conversation["id"], "a long answer please")
        message_id = uuid.UUID(sent.json()["assistant_message"]["id"])
        await anyio.sleep(0.35)  # let a few demo words through
        assert (
            await alice.request("DELETE", f"/api/conversations/{conversation['id']}")
        ).status_code == 204
        with anyio.fail_after(10):
            while True:
                row = await Message.select().where(Message.id == message_id).first()
                assert row is not None
                if row["status"] != "streaming":
                    break
                await anyio.sleep(0.02)
    assert row["status"] == "cancelled"
    full = demo_reply([PromptMessage(role="user", content="a long answer please")])
    assert row["content"]
    assert full.startswith(row["content"])
    assert len(row["content"]) < len(full)


async def test_shutdown_ends_unfinished_generations_as_failed(
    backend: Backend, serve: Serve
) -> None:
    settings = backend.settings(CHATRT_DEMO_CHUNK_DELAY_MS="200", CHATRT_SHUTDOWN_GRACE_S="0.3")
    async with serve(settings) as clients:
        alice = clients()
        await alice.register()
        conversation = await alice.create_conversation()
        sent = await alice.send(conversation["id"], "still talking when we stop")
        message_id = uuid.UUID(sent.json()["assistant_message"]["id"])
    row = await Message.select().where(Message.id == message_id).first()
    assert row is not None
    assert row["status"] == "failed"
    assert row["error_code"] == "shutdown"
    assert row["completed_at"] is not None
