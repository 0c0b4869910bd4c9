"""``chatrt usage-report``: tokens and cost by model and user, from answers made through the app.

The fake model server reports usage (prompt tokens: words sent; completion tokens: chunks), so
every number the report prints can be checked against the messages the API returns.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from chatrt.app import create_app
from chatrt.clock import utcnow
from chatrt.db.tables import Message
from tests.conftest import Backend, run_chatrt, serving
from tests.realtime.conftest import providers_env
from tests.support.client import Client
from tests.support.fake_openai import FakeOpenAI, Script

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PRICES = {"primary": (1.0, 2.0), "second": (3.0, 5.0)}
TOKENS = {"primary": ["สวัส", "ดี", "ครับ"], "second": ["one ", "two ", "three ", "four ", "five"]}


def providers(fake: FakeOpenAI, *names: str) -> str:
    return providers_env(fake, *names, prices=PRICES)


async def ask(user: Client, conversation_id: str, content: str) -> dict[str, Any]:
    sent = await user.send(conversation_id, content)
    assert sent.status_code == 202, sent.text
    answer = await user.wait_finished(conversation_id, sent.json()["assistant_message"]["id"])
    assert answer["status"] == "complete"
    return answer


def expected_rows(answers: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The report's rows, computed from the answers as the API returned them."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for email, answer in answers:
        provider = answer["ai_model"].removeprefix("model-")
        row = rows.setdefault(
            (answer["ai_model"], email),
            {
                "model": answer["ai_model"],
                "provider": provider,
                "email": email,
                "answers": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
            },
        )
        row["answers"] += 1
        row["prompt_tokens"] += answer["prompt_tokens"]
        row["completion_tokens"] += answer["completion_tokens"]
    for row in rows.values():
        input_price, output_price = PRICES[row["provider"]]
        # The same arithmetic as the report, so the floats compare exactly.
        row["cost"] = (
            row["prompt_tokens"] * input_price + row["completion_tokens"] * output_price
        ) / 1_000_000
    return [rows[key] for key in sorted(rows)]


async def test_usage_report_sums_tokens_and_cost_by_model_and_user(
    backend: Backend, fake: FakeOpenAI
) -> None:
    for name, tokens in TOKENS.items():
        fake.script(name, Script(tokens=tokens))
    env = backend.env | {"CHATRT_PROVIDERS": providers(fake, "primary", "second")}
    answers: list[tuple[str, dict[str, Any]]] = []
    async with serving(create_app(backend.settings(**env))) as new_client:
        alice, bob = new_client(), new_client()
        await alice.register("alice@example.com")
        await bob.register("bob@example.com")
        chat = await alice.create_conversation(title="ทดสอบ")
        answers.append(("alice@example.com", await ask(alice, chat["id"], "สวัสดี ครับ")))
        answers.append(("alice@example.com", await ask(alice, chat["id"], "อีก ครั้ง นะ")))
        other = await alice.create_conversation(title="second", model="model-second")
        answers.append(("alice@example.com", await ask(alice, other["id"], "hello there")))
        mine = await bob.create_conversation(title="bob")
        answers.append(("bob@example.com", await ask(bob, mine["id"], "hi")))
        # An answer from ten days ago: outside --since 7d, inside --since 30d.
        old = await ask(bob, mine["id"], "an older question")
        await Message.update({Message.created_at: utcnow() - timedelta(days=10)}).where(
            Message.id == UUID(old["id"])
        )
    completions = {a["ai_model"]: a["completion_tokens"] for _, a in answers}
    assert completions == {"model-primary": 3, "model-second": 5}

    done = run_chatrt("usage-report", "--since", "7d", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rows"] == expected_rows(answers)
    assert report["answers"] == 4
    assert report["prompt_tokens"] == sum(a["prompt_tokens"] for _, a in answers)
    assert report["completion_tokens"] == 3 + 3 + 5 + 3
    assert report["cost"] == pytest.approx(sum(r["cost"] for r in expected_rows(answers)))
    assert report["unpriced"] == []

    wider = json.loads(run_chatrt("usage-report", "--since", "30d", "--json", env=env).stdout)
    assert wider["rows"] == expected_rows([*answers, ("bob@example.com", old)])

    text = run_chatrt("usage-report", "--since", "7d", env=env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[1].split() == [
        "model",
        "provider",
        "user",
        "answers",
        "prompt",
        "completion",
        "cost",
    ]
    second = next(line for line in lines if "model-second" in line)
    row = expected_rows(answers)[-1]
    assert second.split() == [
        "model-second",
        "second",
        "alice@example.com",
        "1",
        str(row["prompt_tokens"]),
        "5",
        f"{row['cost']:.6f}",
    ]
    assert lines[-1].split()[:4] == ["total", "4", str(report["prompt_tokens"]), "14"]
    # Columns line up: every cost ends in the same column.
    assert len({len(line) for line in lines[1:]}) == 1

    # A provider dropped from the configuration has no known price.
    unpriced = run_chatrt(
        "usage-report",
        "--json",
        env=env | {"CHATRT_PROVIDERS": providers(fake, "primary")},
    )
    partial = json.loads(unpriced.stdout)
    assert [r["cost"] is None for r in partial["rows"]] == [False, False, True]
    assert partial["unpriced"] == ["second"]
    assert partial["cost"] == pytest.approx(report["cost"] - row["cost"])
