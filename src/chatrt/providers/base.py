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


StreamEvent = TextDelta | Usage


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
    def stream(self, messages: list[PromptMessage]) -> AsyncIterator[StreamEvent]:
        """Yield text deltas in order, then a :class:`Usage`; raise :class:`ProviderError`.

        Closing the iterator (or cancelling its consumer) closes the upstream request.
        """


def estimate_tokens(text: str) -> int:
    """A rough count for servers that report no usage: about four characters a token."""
    return max(1, (len(text) + 3) // 4) if text else 0
