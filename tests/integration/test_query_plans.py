"""PostgreSQL plans: list and history pages use their indexes, so page cost stays flat in depth."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from chatrt.conversations import service
from chatrt.conversations.messages import HISTORY_FIRST_PAGE, HISTORY_NEXT_PAGE
from chatrt.db.tables import Conversation
from tests.conftest import Backend
from tests.support.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

LOAD = """
INSERT INTO users (id, email, password_hash, display_name, created_at, updated_at)
SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'u' || g || '@x.io', 'x', 'u',
       now(), now()
FROM generate_series(1, 300) g;
INSERT INTO conversations (id, user_id, title, status, message_count, created_at, updated_at)
SELECT gen_random_uuid(), ('00000000-0000-4000-8000-' || lpad((1 + g % 300)::text, 12, '0'))::uuid,
       't', CASE WHEN g % 10 = 0 THEN 'deleted' ELSE 'active' END, 0,
       now() - g * interval '1 second', now() - g * interval '1 second'
FROM generate_series(1, 30000) g;
INSERT INTO messages (id, conversation_id, message_index, role, content, status, created_at)
SELECT gen_random_uuid(), {cid}::uuid, g, 'user', 'message ' || g, 'complete', now()
FROM generate_series(0, 49999) g;
UPDATE conversations SET message_count = 50000 WHERE id = {cid}::uuid;
ANALYZE
"""


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


async def _explain(sql: str, *args: Any) -> list[dict[str, Any]]:
    rows = await Conversation.raw("EXPLAIN (FORMAT JSON) " + sql, *args)
    plan = rows[0]["QUERY PLAN"]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return _nodes(plan[0]["Plan"])


async def test_list_and_history_use_their_indexes(
    postgres_backend: Backend, serve: Callable[..., Any]
) -> None:
    async with serve(postgres_backend.settings()) as clients:
        alice: Client = clients()
        await alice.register()
        assert alice.user is not None
        conversation = await alice.create_conversation(title="big")
        cid = conversation["id"]
        owner = uuid.UUID(alice.user["id"])
        for statement in LOAD.replace("{cid}", f"'{cid}'").split(";"):
            if statement.strip():
                await Conversation.raw(statement)
        user_id = uuid.UUID("00000000-0000-4000-8000-000000000007")
        page = await service.list_page(user_id, 25, None)
        assert len(page.items) == 25
        deep = await service.list_page(user_id, 25, page.next_cursor)
        assert deep.items[0].updated_at <= page.items[-1].updated_at

        plans = {
            "first list page": await _explain(service._FIRST_PAGE, user_id, 26),
            "next list page": await _explain(
                service._NEXT_PAGE, user_id, page.items[-1].updated_at, page.items[-1].id, 26
            ),
            "history top": await _explain(HISTORY_FIRST_PAGE, uuid.UUID(cid), owner, 26),
            "history deep": await _explain(HISTORY_NEXT_PAGE, uuid.UUID(cid), owner, 10_000, 26),
        }
        for name, nodes in plans.items():
            scans = {(n["Node Type"], n.get("Relation Name")) for n in nodes}
            assert not any(kind == "Seq Scan" for kind, _ in scans), (name, scans)
            indexes = {n.get("Index Name") for n in nodes}
            if name.startswith("history"):
                assert "messages_conversation_index_uq" in indexes, (name, indexes)
            else:
                assert "conversations_user_active_idx" in indexes, (name, indexes)
                assert "messages_conversation_index_uq" in indexes, (name, indexes)
            assert not any(n["Node Type"] == "Sort" for n in nodes), (name, scans)
        walked = await alice.history(cid, limit=100)
        assert len(walked) == 50_000
        assert [m["message_index"] for m in walked[:3]] == [49_999, 49_998, 49_997]
