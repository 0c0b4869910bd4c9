"""Two real chatrt processes share one token budget per user: the database is its record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Backend
from tests.multi.conftest import ClientOn
from tests.realtime.conftest import REALTIME_ENV, providers_env
from tests.support.client import Client
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.instances import Instance

pytestmark = [pytest.mark.multi, pytest.mark.anyio]

BUDGET = 6


@pytest.fixture
def pair(
    postgres_backend: Backend, fake: FakeOpenAI, tmp_path: Path
) -> Iterator[tuple[Instance, Instance]]:
    env = postgres_backend.defaults | postgres_backend.env | REALTIME_ENV
    env |= {
        "CHATRT_PROVIDERS": providers_env(fake, "primary"),
        "CHATRT_DAILY_TOKEN_BUDGET": str(BUDGET),
    }
    a, b = Instance(env, tmp_path, "a"), Instance(env, tmp_path, "b")
    with a, b:
        yield a, b


async def _budget(client: Client) -> dict[str, Any]:
    response = await client.get("/api/usage")
    assert response.status_code == 200, response.text
    budget: dict[str, Any] = response.json()["budget"]
    return budget


async def test_tokens_spent_on_one_instance_count_on_the_other(
    pair: tuple[Instance, Instance], fake: FakeOpenAI, client_on: ClientOn
) -> None:
    a, b = pair
    fake.script("primary", Script(tokens=3))
    on_a = client_on(a)
    await on_a.register()
    on_b = client_on(b)
    on_b.sign_in_as(on_a)
    conversation = await on_a.create_conversation(title="shared budget")

    sent = await on_a.send(conversation["id"], "hello there")
    assert sent.status_code == 202, sent.text
    first = await on_a.wait_finished(conversation["id"], sent.json()["assistant_message"]["id"])
    spent = first["prompt_tokens"] + first["completion_tokens"]
    assert spent == 2 + 3 < BUDGET
    seen_on_b = await _budget(on_b)
    assert (seen_on_b["used_today"], seen_on_b["remaining_today"]) == (spent, BUDGET - spent)

    # Still under the budget as seen from b: b accepts, and its answer crosses the line.
    sent = await on_b.send(conversation["id"], "and again")
    assert sent.status_code == 202, sent.text
    second = await on_b.wait_finished(conversation["id"], sent.json()["assistant_message"]["id"])
    spent += second["prompt_tokens"] + second["completion_tokens"]

    for client in (on_a, on_b):
        refused = await client.send(conversation["id"], "one too many")
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "quota_exceeded"
        assert (await _budget(client))["used_today"] == spent
    assert fake.requests("primary") == 2
