"""What every provider promises: a stream of text deltas, then at most one usage report."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Literal

import msgspec


class PromptMessage(msgspec.Struct, frozen=True):
    role: Literal["system", "user", "assistant"]
    content: str


class TextDelta(msgspec.Struct, frozen=True):
    text: str


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int
    completion_tokens: int
    # True when the server sent no usage and chatrt counted tokens itself.
    estimated: bool = False


class Started(msgspec.Struct, frozen=True):
    """The chain picked a provider; comes once, before the first text."""

    provider: str
    model: str


StreamEvent = Started | TextDelta | Usage


class ProviderError(Exception):
    """The provider could not answer; ``retryable`` failures may go to the next provider."""

    def __init__(self, code: str, retryable: bool) -> None:
        super().__init__(code)
        self.code = code
        self.retryable = retryable


class Provider(ABC):
    """One model endpoint."""

    name: str
    model: str

    @abstractmethod
    def stream(self, messages: list[PromptMessage]) -> AsyncIterator[TextDelta | Usage]:
        """Yield text deltas in order, then at most one :class:`Usage`.

        Raises :class:`ProviderError`.

        Closing the iterator (or cancelling its consumer) closes the upstream request.
        """


def estimate_tokens(text: str) -> int:
    """A rough count for servers that report no usage: about four characters a token."""
    return max(1, (len(text) + 3) // 4) if text else 0


async def complete(provider: Provider, messages: list[PromptMessage]) -> str:
    """The whole answer as one string (for short side requests such as titles)."""
    parts = [e.text async for e in provider.stream(messages) if isinstance(e, TextDelta)]
    return "".join(parts)
