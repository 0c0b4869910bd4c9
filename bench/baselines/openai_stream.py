"""Baseline for the streaming benchmark: the ``openai`` client with no server in between.

``with_streaming_response`` read line by line and decoded with msgspec, the fastest way the
library offers to consume a stream (see the library notes). Prints one JSON object: tokens,
seconds, tokens_per_s and the time to first token of each sequential sample.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import msgspec
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []


_DECODE = msgspec.json.Decoder(_Chunk).decode
_MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


async def one_answer(client: AsyncOpenAI) -> tuple[int, float]:
    """Stream one answer; (content tokens, seconds to the first one)."""
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    async with client.chat.completions.with_streaming_response.create(
        model="bench", messages=_MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as response:
        async for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            for choice in _DECODE(data).choices:
                if choice.delta.content:
                    if not tokens:
                        first = time.perf_counter() - started
                    tokens += 1
    return tokens, first


async def run(args: argparse.Namespace) -> dict[str, object]:
    client = AsyncOpenAI(base_url=args.base_url, api_key="bench", max_retries=0)
    await one_answer(client)  # warm-up: connection, imports, first-call costs
    ttft = []
    for _ in range(args.ttft_samples):
        _tokens, first = await one_answer(client)
        ttft.append(first * 1000)
    queue = iter(range(args.answers))
    total = 0

    async def worker() -> None:
        nonlocal total
        for _ in queue:
            tokens, _first = await one_answer(client)
            total += tokens

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    seconds = time.perf_counter() - started
    await client.close()
    return {
        "tokens": total,
        "seconds": seconds,
        "tokens_per_s": total / seconds,
        "ttft_ms": ttft,
        "lost": 0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="the upstream's .../v1 URL")
    parser.add_argument("--answers", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--ttft-samples", type=int, default=10)
    print(json.dumps(asyncio.run(run(parser.parse_args(argv)))))


if __name__ == "__main__":
    main()
