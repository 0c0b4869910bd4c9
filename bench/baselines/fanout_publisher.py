"""Baseline for the fan-out benchmark: the answers, published straight to Redis.

Plays the part of the upstream and of chatrt's generation for the baseline servers: one
paced stream per conversation, each token published as the ``message.delta`` frame chatrt
would send (same fields, same size; its text is the send time in µs on CLOCK_MONOTONIC, as
``bench.upstream --stamp`` writes it), then a ``message.done`` with the whole text. Prints
one JSON object when every stream has ended: frames published and seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import redis.asyncio as aredis

from bench.baselines.fanout_server import CHANNEL_PREFIX


async def stream(
    client: aredis.Redis, conversation_id: str, message_id: str, args: argparse.Namespace
) -> int:
    channel = CHANNEL_PREFIX + conversation_id
    tokens: int = args.tokens
    delay = 1.0 / args.rate if args.rate > 0 else 0.0
    parts = []
    for seq in range(1, tokens + 1):
        if delay:
            await asyncio.sleep(delay)
        token = f"{time.monotonic_ns() // 1000} "
        parts.append(token)
        frame = {
            "type": "message.delta",
            "conversation_id": conversation_id,
            "message_id": message_id,
            "seq": seq,
            "delta": token,
        }
        await client.publish(channel, json.dumps(frame, separators=(",", ":")))
    done = {
        "type": "message.done",
        "message": {
            "id": message_id,
            "conversation_id": conversation_id,
            "role": "assistant",
            "status": "complete",
            "content": "".join(parts),
            "completion_tokens": tokens,
        },
    }
    await client.publish(channel, json.dumps(done, separators=(",", ":")))
    return tokens + 1


async def run(args: argparse.Namespace) -> dict[str, object]:
    client = aredis.from_url(args.redis)
    pairs = zip(args.conversations.split(","), args.messages.split(","), strict=True)
    started = time.perf_counter()
    counts = await asyncio.gather(*(stream(client, c, m, args) for c, m in pairs))
    seconds = time.perf_counter() - started
    await client.aclose()
    return {"frames": sum(counts), "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True)
    parser.add_argument("--conversations", required=True, help="comma-separated ids")
    parser.add_argument("--messages", required=True, help="comma-separated ids, one each")
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="tokens/s per stream")
    print(json.dumps(asyncio.run(run(parser.parse_args(argv)))))


if __name__ == "__main__":
    main()
