"""Self-test for tests.support.fake_openai, driven through the real ``openai`` client."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.support.fake_openai import FakeOpenAI, Script

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "say hello world"},
]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(fake: FakeOpenAI) -> None:
    fake.reset()


def client_for(fake: FakeOpenAI, name: str, **kwargs: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.base_url(name), api_key="x", max_retries=0, **kwargs)


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with client_for(fake, "p1") as c:
        yield c


def stream(client: openai.AsyncOpenAI, model: str = "m", **kwargs: Any) -> Any:
    return client.chat.completions.with_streaming_response.create(
        model=model,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        **kwargs,
    )


async def data_lines(client: openai.AsyncOpenAI, **kwargs: Any) -> list[str]:
    async with stream(client, **kwargs) as response:
        assert response.http_response.headers["content-type"] == "text/event-stream"
        return [line[6:] async for line in response.iter_lines() if line.startswith("data: ")]


async def read_into(lines: list[str], client: openai.AsyncOpenAI, **kwargs: Any) -> None:
    """Append every line to ``lines`` as it arrives, so a failure keeps what came before."""
    async with stream(client, **kwargs) as response:
        async for line in response.iter_lines():
            lines.append(line)


async def drain_typed(client: openai.AsyncOpenAI, read_timeout_s: float) -> None:
    chunks = await client.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, timeout=read_timeout_s
    )
    async for _ in chunks:
        pass


async def test_streams_tokens_then_stop_usage_and_done(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.script("p1", Script(tokens=["Hel", "lo"]))

    lines = await data_lines(client, model="gpt-test")

    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {"gpt-test"}
    assert len({c["id"] for c in chunks}) == 1
    assert [c["choices"][0]["delta"] for c in chunks[:3]] == [
        {"role": "assistant", "content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:3]] == [None, None, "stop"]
    assert chunks[3]["choices"] == []
    assert chunks[3]["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    assert len(chunks) == 4
    assert (fake.requests("p1"), fake.completed("p1"), fake.disconnects("p1")) == (1, 1, 0)
    assert fake.bodies("p1") == [
        {
            "model": "gpt-test",
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ]


async def test_default_script_sends_twenty_numbered_tokens(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    lines = await data_lines(client)

    chunks = [json.loads(line) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "".join(f"tok{i} " for i in range(20))
    assert chunks[-1]["usage"]["completion_tokens"] == 20


async def test_usage_false_omits_the_usage_chunk(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.script("p1", Script(tokens=3, usage=False))

    lines = await data_lines(client)

    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert all("usage" not in c and c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert fake.completed("p1") == 1


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (500, openai.InternalServerError, "server_error"),
        (429, openai.RateLimitError, "requests"),
    ],
)
async def test_error_status_raises_the_client_error_class(
    fake: FakeOpenAI,
    client: openai.AsyncOpenAI,
    status: int,
    error: type[openai.APIStatusError],
    kind: str,
) -> None:
    fake.script("p1", Script(status=status))

    with pytest.raises(error) as caught:
        async with stream(client):
            pass

    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == kind
    assert (fake.requests("p1"), fake.completed("p1"), fake.disconnects("p1")) == (1, 0, 0)


async def test_closing_the_response_early_counts_a_disconnect(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.script("p1", Script(tokens=50, delay_s=0.02))

    seen = 0
    async with stream(client) as response:
        async for line in response.iter_lines():
            seen += line.startswith("data: ")
            if seen == 3:
                break
    closed = time.monotonic()

    fake.wait_for(lambda: fake.disconnects("p1") == 1, within_s=2)
    assert time.monotonic() - closed < 0.5
    assert fake.completed("p1") == 0


async def test_leaving_before_the_first_token_counts_a_disconnect(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.script("p1", Script(first_token_delay_s=30))

    async with stream(client):
        pass  # the headers arrived; no token did

    fake.wait_for(lambda: fake.disconnects("p1") == 1, within_s=2)
    assert fake.completed("p1") == 0


async def test_stall_with_client_timeout_raises_and_counts_a_disconnect(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.script("p1", Script(tokens=5, stall_after=2))

    # The headers came long before the stall, so with_streaming_response's raw line
    # iterator surfaces httpx2's own read timeout, not openai.APITimeoutError...
    lines: list[str] = []
    with pytest.raises(httpx2.ReadTimeout):
        await read_into(lines, client, timeout=0.5)
    assert len([line for line in lines if line.startswith("data: ")]) == 2
    fake.wait_for(lambda: fake.disconnects("p1") == 1, within_s=2)

    # ...while the client's typed stream wraps the same timeout.
    with pytest.raises(openai.APITimeoutError):
        await drain_typed(client, read_timeout_s=0.5)
    fake.wait_for(lambda: fake.disconnects("p1") == 2, within_s=2)
    assert fake.completed("p1") == 0


async def test_drop_after_closes_the_connection_mid_stream(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.script("p1", Script(tokens=5, drop_after=2))

    lines: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError):
        await read_into(lines, client)
    assert [line for line in lines if line.startswith("data: ")] == lines[::2]
    assert len(lines[::2]) == 2
    assert "[DONE]" not in "".join(lines)
    assert (fake.requests("p1"), fake.completed("p1"), fake.disconnects("p1")) == (1, 0, 0)


@pytest.mark.parametrize("drop", [False, True])
async def test_a_raw_body_is_sent_as_is(
    fake: FakeOpenAI, client: openai.AsyncOpenAI, drop: bool
) -> None:
    fake.script(
        "p1", Script(body=b"data: {not json\n\n: comment\n\n", drop_after=0 if drop else None)
    )

    lines: list[str] = []
    if drop:
        with pytest.raises(httpx2.RemoteProtocolError):
            await read_into(lines, client)
    else:
        await read_into(lines, client)
    assert lines == ["data: {not json", "", ": comment", ""]
    assert fake.completed("p1") == (0 if drop else 1)


async def test_names_are_independent_providers(fake: FakeOpenAI) -> None:
    fake.script("a", Script(tokens=["from-a"]))
    fake.script("b", Script(status=500))

    async with client_for(fake, "a") as a, client_for(fake, "b") as b:
        assert "from-a" in (await data_lines(a, model="model-a"))[0]
        with pytest.raises(openai.InternalServerError):
            await data_lines(b, model="model-b")
        await data_lines(a, model="model-a")

    assert (fake.requests("a"), fake.completed("a")) == (2, 2)
    assert (fake.requests("b"), fake.completed("b")) == (1, 0)
    assert [body["model"] for body in fake.bodies("a")] == ["model-a", "model-a"]
    assert [body["model"] for body in fake.bodies("b")] == ["model-b"]
    assert fake.requests("never-used") == 0


async def test_reset_forgets_scripts_and_counters(
    fake: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    fake.script("p1", Script(status=500))
    with pytest.raises(openai.InternalServerError):
        await data_lines(client)

    fake.reset()

    assert (fake.requests("p1"), fake.bodies("p1")) == (0, [])
    assert (await data_lines(client))[-1] == "[DONE]"
    assert (fake.requests("p1"), fake.completed("p1")) == (1, 1)


async def test_unknown_route_is_404(fake: FakeOpenAI) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{fake.port}/v1", api_key="x", max_retries=0
    ) as wrong:
        with pytest.raises(openai.NotFoundError):
            await data_lines(wrong)


async def test_wait_for_times_out(fake: FakeOpenAI) -> None:
    with pytest.raises(TimeoutError):
        fake.wait_for(lambda: False, within_s=0.05)
    with pytest.raises(TimeoutError):
        await fake.wait_for_async(lambda: False, within_s=0.05)


async def test_stop_cuts_off_a_stalled_stream_promptly() -> None:
    own = FakeOpenAI()
    own.start()
    try:
        own.script("p", Script(stall_after=1))
        async with client_for(own, "p") as c, stream(c) as response:
            lines = response.iter_lines()
            assert (await anext(lines)).startswith("data: ")
            began = time.monotonic()
            own.stop()
            assert time.monotonic() - began < 3
            with pytest.raises(httpx2.RemoteProtocolError):
                async for _ in lines:
                    pass
    finally:
        own.stop()
    assert own.disconnects("p") == 0
