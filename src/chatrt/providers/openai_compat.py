"""Any OpenAI-compatible chat completions server (OpenAI, vLLM, Ollama, llama.cpp, LM Studio).

The ``openai`` client sends the request (auth, timeouts, error classes); the SSE body is
read line by line and each ``data:`` line decoded with msgspec, which is about ten times
faster than iterating the client's typed chunk objects.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx2
import msgspec
from openai import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncOpenAI,
)

from chatrt.providers.base import (
    PromptMessage,
    Provider,
    ProviderError,
    TextDelta,
    Usage,
    estimate_tokens,
)
from chatrt.settings import ProviderSettings


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta = msgspec.field(default_factory=_Delta)
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = msgspec.field(default_factory=list)
    usage: _Usage | None = None
    # vLLM, OpenAI and others report a failure mid-stream as an error object.
    error: object = None


_CHUNK = msgspec.json.Decoder(_Chunk)
_EOL = re.compile(rb"\r\n|\r|\n")
# No chat chunk comes near this. httpx's line reader has no limit, so a broken upstream
# streaming one endless line would be buffered whole; past this it is a bad response.
MAX_LINE_BYTES = 1_048_576


class _LineTooLong(Exception):
    pass


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The lines of an SSE body (LF, CRLF or CR endings); ``_LineTooLong`` past the limit.

    A CRLF split between two chunks yields one extra empty line, which SSE ignores anyway.
    """
    pieces: list[bytes] = []
    size = 0
    async for chunk in chunks:
        # Most servers end lines in LF only; bytes.split is several times faster than the regex.
        *ended, rest = _EOL.split(chunk) if b"\r" in chunk else chunk.split(b"\n")
        for end in ended:
            pieces.append(end)
            yield b"".join(pieces)
            pieces, size = [], 0
        if rest:
            pieces.append(rest)
            size += len(rest)
            if size > MAX_LINE_BYTES:
                raise _LineTooLong
    if pieces:
        yield b"".join(pieces)


def _storable(text: str) -> str:
    """Model text without U+0000, dropped where it enters: PostgreSQL text cannot hold it,
    so the answer (and its title) would never be saved."""
    return text.replace("\x00", "")


def _retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


class OpenAICompatibleProvider(Provider):
    def __init__(
        self, settings: ProviderSettings, connect_timeout_s: float, read_timeout_s: float
    ) -> None:
        self.name = settings.name
        self.model = settings.model
        # No client retries: the chain's fallback and circuit breaker decide what happens next.
        self._client = AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key or "unused",
            max_retries=0,
            timeout=httpx2.Timeout(
                connect=connect_timeout_s,
                read=read_timeout_s,
                write=read_timeout_s,
                pool=connect_timeout_s,
            ),
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(self, messages: list[PromptMessage]) -> AsyncIterator[TextDelta | Usage]:
        payload = [{"role": m.role, "content": m.content} for m in messages]
        produced: list[str] = []
        usage: Usage | None = None
        # A body that just stops, with neither a finish_reason nor [DONE], was cut off.
        finished = False
        try:
            async with self._client.chat.completions.with_streaming_response.create(  # type: ignore[call-overload]
                model=self.model,
                messages=payload,
                stream=True,
                stream_options={"include_usage": True},
            ) as response:
                async for line in _lines(response.iter_bytes()):
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        finished = True
                        break
                    try:
                        chunk = _CHUNK.decode(data)
                    except msgspec.DecodeError:
                        raise ProviderError(
                            "bad_provider_response", retryable=not produced
                        ) from None
                    if chunk.error is not None:
                        raise ProviderError("provider_error_event", retryable=not produced)
                    for choice in chunk.choices:
                        text = _storable(choice.delta.content or "")
                        if text:
                            produced.append(text)
                            yield TextDelta(text)
                        finished = finished or choice.finish_reason is not None
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        except _LineTooLong:
            raise ProviderError("bad_provider_response", retryable=not produced) from None
        except APITimeoutError:
            raise ProviderError("provider_timeout", retryable=not produced) from None
        except APIConnectionError:
            raise ProviderError("provider_unreachable", retryable=not produced) from None
        except APIStatusError as exc:
            raise ProviderError(
                f"provider_http_{exc.status_code}",
                retryable=not produced and _retryable_status(exc.status_code),
            ) from None
        except httpx2.TimeoutException:
            # A stall while reading the body surfaces as httpx2's own timeout.
            raise ProviderError("provider_timeout", retryable=not produced) from None
        except httpx2.HTTPError:
            raise ProviderError("provider_unreachable", retryable=not produced) from None
        if not finished:
            raise ProviderError("provider_truncated", retryable=not produced)
        if usage is None:
            usage = Usage(
                sum(estimate_tokens(m.content) for m in messages),
                estimate_tokens("".join(produced)),
                estimated=True,
            )
        yield usage
