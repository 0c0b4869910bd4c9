"""Unit tests for the offline demo provider and ``estimate_tokens``."""

from __future__ import annotations

import pytest

from chatrt.providers.base import PromptMessage, Provider, TextDelta, Usage, estimate_tokens
from chatrt.providers.demo import DEMO_MODEL, DemoProvider, demo_reply

pytestmark = [pytest.mark.anyio]


def _quote(reply: str) -> str:
    start = reply.index("\u201c") + 1
    end = reply.index("\u201d", start)
    return reply[start:end]


def test_demo_reply_is_deterministic() -> None:
    messages = [PromptMessage("user", "Hello there")]

    assert demo_reply(messages) == demo_reply([PromptMessage("user", "Hello there")])
    assert demo_reply(messages) != demo_reply([PromptMessage("user", "Something else")])


def test_demo_reply_is_labelled() -> None:
    reply = demo_reply([PromptMessage("user", "hi")])

    assert "demo" in reply.lower()
    assert "not a real AI" in reply


def test_demo_reply_quotes_the_last_user_message() -> None:
    messages = [
        PromptMessage("system", "Be nice"),
        PromptMessage("user", "first question"),
        PromptMessage("assistant", "first answer"),
        PromptMessage("user", "second question"),
        PromptMessage("assistant", "dangling answer"),
    ]

    reply = demo_reply(messages)

    assert _quote(reply) == "second question"
    assert "first question" not in reply
    assert "dangling answer" not in reply
    assert "Be nice" not in reply


def test_demo_reply_without_user_message_quotes_nothing() -> None:
    assert _quote(demo_reply([])) == ""
    assert _quote(demo_reply([PromptMessage("system", "sys")])) == ""


def test_demo_reply_collapses_whitespace() -> None:
    reply = demo_reply([PromptMessage("user", "  many\n\n  spaces\there\r\n too  ")])

    assert _quote(reply) == "many spaces here too"


def test_demo_reply_keeps_thai_text() -> None:
    assert _quote(demo_reply([PromptMessage("user", "สวัสดีครับ")])) == "สวัสดีครับ"


def test_demo_reply_braces_are_quoted_literally() -> None:
    assert _quote(demo_reply([PromptMessage("user", "{quote} {0} {}")])) == "{quote} {0} {}"


def test_demo_reply_keeps_a_120_character_quote() -> None:
    text = "x" * 120

    assert _quote(demo_reply([PromptMessage("user", text)])) == text


def test_demo_reply_truncates_long_quotes() -> None:
    text = "abcdefghij" * 30
    quote = _quote(demo_reply([PromptMessage("user", text)]))

    assert len(quote) == 120
    assert quote.endswith("...")
    assert quote == text[:117] + "..."


def test_demo_reply_truncates_after_collapsing() -> None:
    # 121 characters only before collapsing the whitespace run.
    text = "a" * 60 + "     " + "b" * 56
    quote = _quote(demo_reply([PromptMessage("user", text)]))

    assert quote == "a" * 60 + " " + "b" * 56
    assert not quote.endswith("...")


def test_demo_provider_identity() -> None:
    provider = DemoProvider(chunk_delay_s=0)

    assert isinstance(provider, Provider)
    assert provider.name == "demo"
    assert provider.model == DEMO_MODEL


async def test_demo_stream_yields_the_reply_then_one_usage() -> None:
    messages = [
        PromptMessage("system", "You are helpful."),
        PromptMessage("user", "What is   the\nweather?"),
    ]
    provider = DemoProvider(chunk_delay_s=0)

    events = [event async for event in provider.stream(messages)]

    *deltas, last = events
    assert len(deltas) > 1
    assert all(isinstance(d, TextDelta) for d in deltas)
    text = "".join(d.text for d in deltas if isinstance(d, TextDelta))
    assert text == demo_reply(messages)
    assert all(d.text for d in deltas if isinstance(d, TextDelta))
    assert isinstance(last, Usage)
    assert last.estimated is True
    assert last.prompt_tokens > 0
    assert last.completion_tokens > 0
    assert last.prompt_tokens == sum(estimate_tokens(m.content) for m in messages)
    assert last.completion_tokens == estimate_tokens(text)
    assert sum(isinstance(e, Usage) for e in events) == 1


async def test_demo_stream_is_deterministic_and_word_by_word() -> None:
    messages = [PromptMessage("user", "one two three")]
    provider = DemoProvider(chunk_delay_s=0)

    first = [event async for event in provider.stream(messages)]
    second = [event async for event in provider.stream(messages)]

    assert first == second
    deltas = [e.text for e in first if isinstance(e, TextDelta)]
    assert deltas == [
        w if i == 0 else " " + w for i, w in enumerate(demo_reply(messages).split(" "))
    ]


async def test_demo_stream_with_small_delay() -> None:
    messages = [PromptMessage("user", "hi")]
    provider = DemoProvider(chunk_delay_s=0.0001)

    events = [event async for event in provider.stream(messages)]

    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == demo_reply(messages)
    assert isinstance(events[-1], Usage)


async def test_demo_stream_can_be_closed_early() -> None:
    provider = DemoProvider(chunk_delay_s=0)
    stream = provider.stream([PromptMessage("user", "hi")])
    iterator = aiter(stream)

    first = await anext(iterator)
    await stream.aclose()  # type: ignore[attr-defined]

    assert isinstance(first, TextDelta)
    with pytest.raises(StopAsyncIteration):
        await anext(iterator)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("a", 1),
        ("abc", 1),
        ("abcd", 1),
        ("abcde", 2),
        ("abcdefgh", 2),
        ("abcdefghi", 3),
        ("x" * 400, 100),
        ("x" * 401, 101),
        (" ", 1),
        ("สวัสดี", 2),
    ],
)
def test_estimate_tokens(text: str, expected: int) -> None:
    assert estimate_tokens(text) == expected


def test_estimate_tokens_is_monotonic_and_positive_for_text() -> None:
    counts = [estimate_tokens("y" * n) for n in range(1, 50)]

    assert all(c >= 1 for c in counts)
    assert counts == sorted(counts)
