"""Provider fallback, the circuit breaker and usage accounting, through the real openai client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from chatrt.errors import MESSAGES
from tests.conftest import Backend
from tests.realtime.conftest import Live, providers_env, start_live
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.servers import free_port
from tests.support.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
async def pair(backend: Backend, fake: FakeOpenAI) -> AsyncIterator[Live]:
    """chatrt with two providers: ``primary``, then ``secondary``."""
    env = providers_env(fake, "primary", "secondary")
    async for running in start_live(backend, CHATRT_PROVIDERS=env):
        yield running


async def _answer(live: Live, content: str = "hello") -> dict[str, object]:
    alice = await live.user()
    # Titled, so no title request to the providers muddles their request counts.
    conversation = await alice.create_conversation(title="t")
    sent = await alice.send(conversation["id"], content)
    assert sent.status_code == 202, sent.text
    return await alice.wait_finished(
        conversation["id"], sent.json()["assistant_message"]["id"], within_s=20
    )


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_a_failing_primary_hands_over_before_the_first_token(
    pair: Live, fake: FakeOpenAI, status: int
) -> None:
    fake.script("primary", Script(status=status))
    fake.script("secondary", Script(tokens=["from ", "secondary"]))
    done = await _answer(pair)
    assert done["status"] == "complete"
    assert done["content"] == "from secondary"
    assert (done["provider"], done["ai_model"]) == ("secondary", "model-secondary")
    assert fake.requests("primary") == 1


async def test_a_primary_that_times_out_hands_over(pair: Live, fake: FakeOpenAI) -> None:
    fake.script("primary", Script(first_token_delay_s=30))
    fake.script("secondary", Script(tokens=["ok"]))
    done = await _answer(pair)
    assert (done["status"], done["provider"], done["content"]) == ("complete", "secondary", "ok")
    await fake.wait_for_async(lambda: fake.disconnects("primary") == 1)


async def test_an_unreachable_primary_hands_over(backend: Backend, fake: FakeOpenAI) -> None:
    providers = json.loads(providers_env(fake, "primary", "secondary"))
    providers[0]["base_url"] = f"http://127.0.0.1:{free_port()}/v1"
    fake.script("secondary", Script(tokens=["reached"]))
    async for live in start_live(backend, CHATRT_PROVIDERS=json.dumps(providers)):
        done = await _answer(live)
        assert (done["provider"], done["content"]) == ("secondary", "reached")


async def test_no_switch_after_the_first_token(pair: Live, fake: FakeOpenAI) -> None:
    fake.script("primary", Script(tokens=10, drop_after=4))
    done = await _answer(pair)
    assert done["status"] == "failed"
    assert done["content"] == "tok0 tok1 tok2 tok3 "
    assert done["error"]["code"] == "provider_failed"
    assert fake.requests("secondary") == 0


@pytest.mark.parametrize(("locale", "text"), [("th", 0), ("en", 1)])
async def test_all_providers_down_ends_failed_with_a_friendly_text(
    backend: Backend, fake: FakeOpenAI, locale: str, text: int
) -> None:
    fake.script("primary", Script(status=500))
    fake.script("secondary", Script(status=503))
    env = providers_env(fake, "primary", "secondary")
    async for live in start_live(backend, CHATRT_PROVIDERS=env, CHATRT_DEFAULT_LOCALE=locale):
        done = await _answer(live)
        assert done["status"] == "failed"
        assert done["content"] == ""
        assert done["error"] == {
            "code": "all_providers_failed",
            "message": MESSAGES["all_providers_failed"][text],
        }


async def test_the_circuit_breaker_skips_a_primary_that_keeps_failing(
    pair: Live, fake: FakeOpenAI
) -> None:
    fake.script("primary", Script(status=500))
    fake.script("secondary", Script(tokens=["fine"]))
    for _ in range(5):
        done = await _answer(pair)
        assert done["provider"] == "secondary"
    # Three failures open the circuit; the next answers skip the primary entirely.
    assert fake.requests("primary") == 3
    assert fake.requests("secondary") == 5


async def test_usage_is_estimated_and_flagged_when_the_server_sends_none(
    live: Live, fake: FakeOpenAI
) -> None:
    fake.script("primary", Script(tokens=["a" * 40], usage=False))
    done = await _answer(live)
    assert done["usage_estimated"] is True
    assert done["completion_tokens"] == 10
    fake.script("primary", Script(tokens=["b"], usage=True))
    done = await _answer(live)
    assert done["usage_estimated"] is False


async def test_the_conversation_model_picks_the_provider(pair: Live, fake: FakeOpenAI) -> None:
    alice = await pair.user()
    conversation = await alice.create_conversation(model="model-secondary", title="t")
    sent = await alice.send(conversation["id"], "which one?")
    done = await alice.wait_finished(conversation["id"], sent.json()["assistant_message"]["id"])
    assert done["provider"] == "secondary"
    assert fake.requests("primary") == 0
    assert fake.bodies("secondary")[0]["model"] == "model-secondary"


async def test_an_untitled_conversation_is_named_by_the_model(live: Live, fake: FakeOpenAI) -> None:
    fake.script("primary", Script(tokens=["Trip ", "to ", "Chiang Mai"]))
    alice = await live.user()
    conversation = await alice.create_conversation()
    sent = await alice.send(conversation["id"], "Plan a weekend in Chiang Mai")
    await alice.wait_finished(conversation["id"], sent.json()["assistant_message"]["id"])

    async def titled() -> bool:
        read = await alice.get(f"/api/conversations/{conversation['id']}")
        return read.json()["conversation"]["title"] is not None

    await wait_until(titled)
    read = await alice.get(f"/api/conversations/{conversation['id']}")
    assert read.json()["conversation"]["title"] == "Trip to Chiang Mai"
    title_request = fake.bodies("primary")[1]["messages"]
    assert title_request[0]["role"] == "system"
    assert "title" in title_request[0]["content"]
    assert title_request[-1]["content"] == "Plan a weekend in Chiang Mai"
