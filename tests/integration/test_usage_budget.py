"""Per-user daily token budgets (429 ``quota_exceeded``) and ``GET /api/usage``.

The fake model server reports usage (prompt tokens: words sent; completion tokens: chunks),
so every number is checked against the answers the API returned. Budgets are read from the
messages table, so they hold on both backends, across instances and through a Redis flush.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest

from chatrt.app import create_app
from chatrt.db.tables import Message
from chatrt.errors import MESSAGES
from tests.conftest import Backend, serving
from tests.realtime.conftest import providers_env, start_live
from tests.support.client import PASSWORD, Client
from tests.support.fake_openai import FakeOpenAI, Script

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PRICES = {"primary": (1.0, 2.0), "second": (3.0, 5.0)}
THAI, ENGLISH = MESSAGES["quota_exceeded"]


def providers(fake: FakeOpenAI, *names: str) -> str:
    return providers_env(fake, *names, prices=PRICES)


async def ask(
    user: Client, conversation_id: str, content: str, client_message_id: str | None = None
) -> dict[str, Any]:
    sent = await user.send(conversation_id, content, client_message_id)
    assert sent.status_code == 202, sent.text
    answer = await user.wait_finished(conversation_id, sent.json()["assistant_message"]["id"])
    assert answer["status"] == "complete"
    return answer


def tokens(answer: dict[str, Any]) -> int:
    total: int = answer["prompt_tokens"] + answer["completion_tokens"]
    return total


def today() -> date:
    return datetime.now(UTC).date()


def next_midnight() -> datetime:
    day = today() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def expected_items(answers: list[tuple[date, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The usage items, computed from the answers as the API returned them."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for day, answer in answers:
        provider = answer["ai_model"].removeprefix("model-")
        key = (day.isoformat(), answer["ai_model"], provider)
        row = rows.setdefault(
            key,
            {
                "day": key[0],
                "model": key[1],
                "provider": provider,
                "answers": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
            },
        )
        row["answers"] += 1
        row["prompt_tokens"] += answer["prompt_tokens"]
        row["completion_tokens"] += answer["completion_tokens"]
    for row in rows.values():
        row["total_tokens"] = row["prompt_tokens"] + row["completion_tokens"]
        input_price, output_price = PRICES[row["provider"]]
        # The same arithmetic as the server, so the floats compare exactly.
        row["cost"] = (
            row["prompt_tokens"] * input_price + row["completion_tokens"] * output_price
        ) / 1_000_000
    return [rows[key] for key in sorted(rows)]


async def backdate(answer: dict[str, Any], moment: datetime) -> None:
    await Message.update({Message.created_at: moment}).where(Message.id == UUID(answer["id"]))


async def usage(user: Client, **params: str) -> dict[str, Any]:
    response = await user.get("/api/usage", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def sign_in(client: Client, email: str) -> None:
    login = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text


def assert_refused(response: httpx.Response, *, limit: int, used: int, model: str | None) -> None:
    """A 429 ``quota_exceeded`` in the contract's shape, retryable at the next UTC midnight."""
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"] == {
        "model": model,
        "daily_tokens": limit,
        "used_today": used,
        "resets_at": rfc3339(next_midnight()),
    }
    expected = math.ceil((next_midnight() - datetime.now(UTC)).total_seconds())
    assert abs(int(response.headers["retry-after"]) - expected) <= 5


async def test_usage_by_day_and_model_with_cost(backend: Backend, fake: FakeOpenAI) -> None:
    fake.script("primary", Script(tokens=["สวัส", "ดี", "ครับ"]))
    fake.script("second", Script(tokens=5))
    settings = backend.settings(CHATRT_PROVIDERS=providers(fake, "primary", "second"))
    async with serving(create_app(settings)) as new_client:
        alice, bob = new_client(), new_client()
        await alice.register()
        await bob.register()
        chat = await alice.create_conversation(title="one")
        first = await ask(alice, chat["id"], "สวัสดี ครับ")
        second = await ask(alice, chat["id"], "อีก ครั้ง นะ")
        third = await ask(alice, chat["id"], "and one more")
        other = await alice.create_conversation(title="two", model="model-second")
        on_second = await ask(alice, other["id"], "hello there")
        # Tokens spent in a conversation deleted since still count.
        deleted = await alice.request("DELETE", f"/api/conversations/{other['id']}")
        assert deleted.status_code == 204
        theirs = await bob.create_conversation(title="bob")
        await ask(bob, theirs["id"], "not alice's")

        now = datetime.now(UTC)
        yesterday, long_ago = now - timedelta(days=1), now - timedelta(days=40)
        await backdate(second, yesterday)
        await backdate(third, long_ago)
        dated = [
            (today(), first),
            (yesterday.date(), second),
            (long_ago.date(), third),
            (today(), on_second),
        ]

        body = await usage(alice)
        assert body["from"] == (today() - timedelta(days=29)).isoformat()
        assert body["to"] == today().isoformat()
        recent = [(day, a) for day, a in dated if day >= today() - timedelta(days=29)]
        assert body["items"] == expected_items(recent)
        items = expected_items(recent)
        assert body["totals"] == {
            "answers": 3,
            "prompt_tokens": sum(i["prompt_tokens"] for i in items),
            "completion_tokens": 3 + 3 + 5,
            "total_tokens": sum(i["total_tokens"] for i in items),
            "cost": sum(i["cost"] for i in items),
            "unpriced_providers": [],
        }
        assert body["budget"] == {
            "daily_tokens": None,
            "used_today": tokens(first) + tokens(on_second),
            "remaining_today": None,
            "resets_at": rfc3339(next_midnight()),
            "models": [],
        }

        wider = await usage(alice, **{"from": (today() - timedelta(days=60)).isoformat()})
        assert wider["items"] == expected_items(dated)
        only_yesterday = yesterday.date().isoformat()
        narrow = await usage(alice, **{"from": only_yesterday, "to": only_yesterday})
        assert narrow["items"] == expected_items([(yesterday.date(), second)])
        assert narrow["budget"]["used_today"] == body["budget"]["used_today"]

    # A provider dropped from the configuration has no known price.
    assert alice.user is not None
    fewer = backend.settings(CHATRT_PROVIDERS=providers(fake, "primary"))
    async with serving(create_app(fewer)) as new_client:
        again = new_client()
        await sign_in(again, alice.user["email"])
        partial = await usage(again)
        assert [i["cost"] is None for i in partial["items"]] == [False, False, True]
        assert partial["totals"]["unpriced_providers"] == ["second"]
        priced = expected_items([(yesterday.date(), second), (today(), first)])
        assert partial["totals"]["cost"] == priced[0]["cost"] + priced[1]["cost"]


async def test_usage_range_is_validated(backend: Backend) -> None:
    async with serving(create_app(backend.settings())) as new_client:
        anonymous = new_client()
        assert (await anonymous.get("/api/usage")).status_code == 401
        alice = new_client()
        await alice.register()
        cases: list[tuple[dict[str, str], str | None]] = [
            ({"from": "2026-13-01"}, "from"),
            ({"to": "yesterday"}, "to"),
            ({"from": "2025-01-10", "to": "2025-01-09"}, "from"),
            ({"from": "2024-01-01", "to": "2025-01-01"}, "to"),  # 367 days
            ({"from": "0001-01-01", "to": "0001-01-02"}, "from"),
            ({"to": "9999-12-31"}, "to"),
            ({"from": "2024-01-02", "to": "2025-01-01"}, None),  # 366 days
            ({"from": today().isoformat()}, None),
        ]
        for params, bad_field in cases:
            response = await alice.get("/api/usage", params=params)
            if bad_field is None:
                assert response.status_code == 200, (params, response.text)
                assert response.json()["items"] == []
                continue
            assert response.status_code == 422, (params, response.text)
            error = response.json()["error"]
            assert error["code"] == "validation_error", params
            assert [d["field"] for d in error["details"]] == [bad_field], (params, error)


async def test_send_over_the_daily_budget_is_refused_until_midnight(
    backend: Backend, fake: FakeOpenAI
) -> None:
    fake.script("primary", Script(tokens=["x ", "y ", "z"]))
    settings = backend.settings(
        CHATRT_PROVIDERS=providers(fake, "primary"), CHATRT_DAILY_TOKEN_BUDGET="4"
    )
    async with serving(create_app(settings)) as new_client:
        alice, bob = new_client(), new_client()
        await alice.register()
        await bob.register()
        chat = await alice.create_conversation(title="budget")
        first_send = await alice.send(chat["id"], "two words", client_message_id="first")
        assert first_send.status_code == 202
        answer = await alice.wait_finished(chat["id"], first_send.json()["assistant_message"]["id"])
        used = tokens(answer)
        assert used >= 4  # 2 prompt + 3 completion: the first send was under, now it is over

        refused = await alice.send(chat["id"], "one more", client_message_id="second")
        assert_refused(refused, limit=4, used=used, model=None)
        assert refused.json()["error"]["message"] == THAI
        english = await alice.request(
            "POST",
            f"/api/conversations/{chat['id']}/messages",
            json={"content": "one more"},
            headers={"accept-language": "en-US,en;q=0.9"},
        )
        assert_refused(english, limit=4, used=used, model=None)
        assert english.json()["error"]["message"] == ENGLISH
        assert len(await alice.history(chat["id"])) == 2
        assert fake.requests("primary") == 1

        # A repeat of the accepted send still gets its first result.
        repeat = await alice.send(chat["id"], "two words", client_message_id="first")
        assert repeat.status_code == 202, repeat.text
        assert repeat.json()["assistant_message"]["id"] == answer["id"]
        assert repeat.json()["assistant_message"]["status"] == "complete"

        assert (await usage(alice))["budget"] == {
            "daily_tokens": 4,
            "used_today": used,
            "remaining_today": 0,
            "resets_at": rfc3339(next_midnight()),
            "models": [],
        }
        # The budget is per user.
        theirs = await bob.create_conversation(title="bob")
        assert (await bob.send(theirs["id"], "hi")).status_code == 202

        # Yesterday's tokens are yesterday's: moved back a day, alice may send again.
        await backdate(answer, datetime.now(UTC) - timedelta(days=1))
        assert (await usage(alice))["budget"]["remaining_today"] == 4
        again = await alice.send(chat["id"], "a new day")
        assert again.status_code == 202, again.text
        await alice.wait_finished(chat["id"], again.json()["assistant_message"]["id"])
        assert (await alice.send(chat["id"], "and over again")).status_code == 429

        if backend.redis is not None:
            # Nothing of the budget lives in Redis: a flush (which also ends the session)
            # changes nothing once signed in again.
            backend.redis.flushall()
            assert (await alice.send(chat["id"], "after the flush")).status_code == 401
            assert alice.user is not None
            await sign_in(alice, alice.user["email"])
            after = await alice.send(chat["id"], "after the flush")
            assert after.status_code == 429, after.text


async def test_estimated_usage_of_the_demo_model_counts(backend: Backend) -> None:
    async with serving(create_app(backend.settings(CHATRT_DAILY_TOKEN_BUDGET="1"))) as clients:
        alice = clients()
        await alice.register()
        chat = await alice.create_conversation(title="demo")
        answer = await ask(alice, chat["id"], "hello")
        assert answer["ai_model"] == "chatrt-demo"
        assert answer["usage_estimated"] is True
        refused = await alice.send(chat["id"], "again")
        assert_refused(refused, limit=1, used=tokens(answer), model=None)
        body = await usage(alice)
        assert body["items"] == [
            {
                "day": today().isoformat(),
                "model": "chatrt-demo",
                "provider": "demo",
                "answers": 1,
                "prompt_tokens": answer["prompt_tokens"],
                "completion_tokens": answer["completion_tokens"],
                "total_tokens": tokens(answer),
                "cost": 0.0,
            }
        ]


async def test_a_per_model_budget_refuses_only_that_model(
    backend: Backend, fake: FakeOpenAI
) -> None:
    fake.script("primary", Script(tokens=3))
    fake.script("second", Script(tokens=4))
    settings = backend.settings(
        CHATRT_PROVIDERS=providers(fake, "primary", "second"),
        CHATRT_DAILY_TOKEN_BUDGET_PER_MODEL=json.dumps({"model-primary": 3, "model-other": 9}),
    )
    async with serving(create_app(settings)) as new_client:
        alice = new_client()
        await alice.register()
        default = await alice.create_conversation(title="default model")
        spent = await ask(alice, default["id"], "hi")
        assert spent["ai_model"] == "model-primary"

        refused = await alice.send(default["id"], "again")
        assert_refused(refused, limit=3, used=tokens(spent), model="model-primary")
        # A model no provider serves asks the first provider, so it is refused as well.
        unknown = await alice.create_conversation(title="unknown", model="no-such-model")
        assert (await alice.send(unknown["id"], "hi")).status_code == 429
        # Another model has its own (here: no) budget.
        other = await alice.create_conversation(title="second", model="model-second")
        answered = await ask(alice, other["id"], "hi")
        assert answered["ai_model"] == "model-second"
        assert (await ask(alice, other["id"], "and again"))["ai_model"] == "model-second"

        budget = (await usage(alice))["budget"]
        assert budget["daily_tokens"] is None
        assert budget["remaining_today"] is None
        assert budget["used_today"] > tokens(spent)
        assert budget["models"] == [
            {"model": "model-other", "daily_tokens": 9, "used_today": 0, "remaining_today": 9},
            {
                "model": "model-primary",
                "daily_tokens": 3,
                "used_today": tokens(spent),
                "remaining_today": 0,
            },
        ]


async def test_websocket_send_over_budget_gets_an_error_frame(
    backend: Backend, fake: FakeOpenAI
) -> None:
    fake.script("primary", Script(tokens=2))
    async for live in start_live(
        backend, CHATRT_PROVIDERS=providers(fake, "primary"), CHATRT_DAILY_TOKEN_BUDGET="1"
    ):
        alice = await live.user()
        chat = await alice.create_conversation(title="ws")
        answer = await ask(alice, chat["id"], "hi", client_message_id="accepted")
        socket = await live.ws(alice)
        await socket.send(
            {
                "type": "send",
                "conversation_id": chat["id"],
                "content": "over budget",
                "client_message_id": "refused",
            }
        )
        frames = await socket.recv_until(lambda f: f["type"] == "error")
        error = frames[-1]
        expected = math.ceil((next_midnight() - datetime.now(UTC)).total_seconds())
        assert abs(error.pop("retry_after") - expected) <= 5
        assert (error["code"], error["message"], error["retryable"], error["ref"]) == (
            "quota_exceeded",
            THAI,
            True,
            "send",
        )
        assert not [f for f in frames if f["type"] == "message.created"]

        # The accepted send, repeated over the socket, is no error and starts nothing.
        await socket.send(
            {
                "type": "send",
                "conversation_id": chat["id"],
                "content": "hi",
                "client_message_id": "accepted",
            }
        )
        await socket.send({"type": "ping"})
        after = await socket.recv_until(lambda f: f["type"] == "pong")
        assert [f["type"] for f in after if f["type"] in {"error", "message.created"}] == []
        history = await alice.history(chat["id"])
        assert [m["id"] for m in history[:1]] == [answer["id"]]
        assert len(history) == 2
        assert fake.requests("primary") == 1


async def test_openapi_describes_usage_and_the_429(backend: Backend) -> None:
    async with serving(create_app(backend.settings())) as new_client:
        schema = (await new_client().get("/schema/openapi.json")).json()
    operation = schema["paths"]["/api/usage"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert {"from", "to"} <= set(params)
    assert all(params[name]["in"] == "query" for name in ("from", "to"))
    assert operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"] == (
        "#/components/schemas/ErrorResponse"
    )
    components = schema["components"]["schemas"]
    assert {"from", "to", "items", "totals", "budget"} <= set(components["UsageOut"]["properties"])
    assert "resets_at" in components["BudgetStatus"]["properties"]
    send = schema["paths"]["/api/conversations/{conversation_id}/messages"]["post"]
    assert "429" in send["responses"]


LOAD = """
INSERT INTO users (id, email, password_hash, display_name, created_at, updated_at)
SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'u' || g || '@x.io', 'x', 'u',
       now(), now()
FROM generate_series(1, 300) g;
INSERT INTO conversations (id, user_id, title, status, message_count, created_at, updated_at)
SELECT ('00000000-0000-4000-9000-' || lpad(g::text, 12, '0'))::uuid,
       ('00000000-0000-4000-8000-' || lpad((1 + g % 300)::text, 12, '0'))::uuid,
       't', CASE WHEN g % 10 = 0 THEN 'deleted' ELSE 'active' END, 4,
       now() - (g % 400) * interval '1 day', now() - (g % 400) * interval '1 day'
FROM generate_series(1, 30000) g;
INSERT INTO messages (id, conversation_id, message_index, role, content, status, ai_model,
                      provider, prompt_tokens, completion_tokens, created_at)
SELECT gen_random_uuid(), c.id, i, CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END, 'm',
       'complete', 'model-a', 'a', 10, 20, c.updated_at - (4 - i) * interval '1 minute'
FROM conversations c, generate_series(0, 3) i;
ANALYZE
"""


async def _plan(sql: str, *args: Any) -> list[dict[str, Any]]:
    rows = await Message.raw("EXPLAIN (FORMAT JSON) " + sql, *args)
    plan = rows[0]["QUERY PLAN"]
    if isinstance(plan, str):
        plan = json.loads(plan)
    nodes, todo = [], [plan[0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return nodes


async def test_usage_queries_read_only_the_period_through_their_indexes(
    postgres_backend: Backend,
) -> None:
    from chatrt.usage import queries

    async with serving(create_app(postgres_backend.settings())):
        for statement in LOAD.split(";"):
            if statement.strip():
                await Message.raw(statement)
        user_id = UUID("00000000-0000-4000-8000-000000000007")
        start = datetime(*today().timetuple()[:3], tzinfo=UTC)
        week_ago = start - timedelta(days=7)
        plans = {
            "budget": await _plan(
                queries._TOKENS_BY_MODEL,
                user_id,
                start - queries.CLOCK_SKEW,
                start,
                start + timedelta(days=1),
            ),
            "usage": await _plan(
                queries._by_day_sql(),
                user_id,
                week_ago - queries.CLOCK_SKEW,
                week_ago,
                start + timedelta(days=1),
            ),
        }
        for name, nodes in plans.items():
            scans = {(n["Node Type"], n.get("Relation Name")) for n in nodes}
            assert not any(kind == "Seq Scan" for kind, _ in scans), (name, scans)
            indexes = {n.get("Index Name") for n in nodes}
            assert "conversations_user_updated_idx" in indexes, (name, indexes)
            assert "messages_assistant_created_idx" in indexes, (name, indexes)
        # The same numbers as a plain scan of all the user's messages.
        used = await queries.tokens_by_model(user_id, week_ago, start + timedelta(days=1))
        scanned = await Message.raw(
            "SELECT SUM(m.prompt_tokens + m.completion_tokens) AS tokens FROM messages m "
            "JOIN conversations c ON c.id = m.conversation_id "
            "WHERE c.user_id = {} AND m.role = 'assistant' AND m.created_at >= {}",
            user_id,
            week_ago,
        )
        assert used == {"model-a": scanned[0]["tokens"]}
        assert used["model-a"] >= 60
