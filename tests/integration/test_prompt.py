"""Prompt building: the system prompt plus the newest turns that fit the budget."""

from __future__ import annotations

import uuid

import pytest

from chatrt.clock import utcnow
from chatrt.db.tables import Conversation, Message
from chatrt.generation.prompt import build_prompt
from tests.support.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def _conversation(owner: Client, turns: list[tuple[str, str, str]]) -> uuid.UUID:
    assert owner.user is not None
    cid = uuid.uuid4()
    now = utcnow()
    await Conversation.insert(
        Conversation(
            id=cid,
            user_id=uuid.UUID(owner.user["id"]),
            status="active",
            message_count=len(turns),
            created_at=now,
            updated_at=now,
        )
    )
    await Message.insert(
        *[
            Message(
                id=uuid.uuid4(),
                conversation_id=cid,
                message_index=i,
                role=role,
                content=content,
                status=status,
                created_at=now,
            )
            for i, (role, content, status) in enumerate(turns)
        ]
    )
    return cid


async def test_newest_turns_that_fit_oldest_first(alice: Client) -> None:
    turns = [
        ("user", "a" * 40, "complete"),
        ("assistant", "b" * 40, "complete"),
        ("user", "c" * 40, "complete"),
        ("assistant", "", "failed"),
        ("user", "d" * 40, "complete"),
        ("assistant", "", "streaming"),
    ]
    cid = await _conversation(alice, turns)
    prompt = await build_prompt(cid, 5, "sys", budget_chars=3 + 40 * 3)
    assert [(m.role, m.content[:1]) for m in prompt] == [
        ("system", "s"),
        ("assistant", "b"),
        ("user", "c"),
        ("user", "d"),
    ]
    everything = await build_prompt(cid, 5, None, budget_chars=10_000)
    assert [m.content[:1] for m in everything] == ["a", "b", "c", "d"]


async def test_an_oversized_last_message_is_cut_from_the_front(alice: Client) -> None:
    cid = await _conversation(alice, [("user", "x" * 50 + "END", "complete")])
    prompt = await build_prompt(cid, 1, None, budget_chars=10)
    assert len(prompt) == 1
    assert prompt[0].content == "x" * 7 + "END"
