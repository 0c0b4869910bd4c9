"""The offline demo model: a deterministic, clearly labelled reply, streamed word by word."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio

from chatrt.providers.base import (
    PromptMessage,
    Provider,
    TextDelta,
    Usage,
    estimate_tokens,
)

DEMO_MODEL = "chatrt-demo"
DEMO_PROVIDER = "demo"

_TEMPLATE = (
    "[chatrt demo model - offline, not a real AI] You said: \u201c{quote}\u201d. "
    "This reply is generated word by word by chatrt's built-in demo model, so the embedded "
    "default works without any network. Configure CHATRT_PROVIDERS to talk to a real "
    "OpenAI-compatible model."
)


def demo_reply(messages: list[PromptMessage]) -> str:
    """The reply the demo model gives to this prompt (the same prompt, the same reply)."""
    last = next((m.content for m in reversed(messages) if m.role == "user"), "")
    quote = " ".join(last.split())
    if len(quote) > 120:
        quote = quote[:117] + "..."
    return _TEMPLATE.format(quote=quote)


class DemoProvider(Provider):
    def __init__(self, chunk_delay_s: float) -> None:
        self.name = DEMO_PROVIDER
        self.model = DEMO_MODEL
        self._delay = chunk_delay_s

    async def stream(self, messages: list[PromptMessage]) -> AsyncIterator[TextDelta | Usage]:
        reply = demo_reply(messages)
        words = reply.split(" ")
        for i, word in enumerate(words):
            if self._delay:
                await anyio.sleep(self._delay)
            yield TextDelta(word if i == 0 else " " + word)
        prompt_tokens = sum(estimate_tokens(m.content) for m in messages)
        yield Usage(prompt_tokens, estimate_tokens(reply), estimated=True)
