"""Baseline for the fan-out benchmark: a plain ``websockets`` server fed by Redis pub/sub.

What fan-out needs at the least, with the bare libraries: one pub/sub connection per process
(redis-py), a set of sockets per channel, and ``websockets.broadcast`` of each published
payload as it is (already the client's JSON frame). No sign-in, no ownership check, no
per-socket queue, log or ordering; run two of these against one Redis for two instances.
It speaks the subset of chatrt's frames that the subscribers use: ``subscribe`` answered by
``subscribed``; the publisher's ``message.delta`` / ``message.done`` frames go out unchanged.

    python -m bench.baselines.fanout_server --redis redis://... --port P   # prints PORT <n>
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections import defaultdict

import redis.asyncio as aredis
from websockets.asyncio.server import ServerConnection, broadcast, serve

CHANNEL_PREFIX = "bench:fanout:"


async def _main(args: argparse.Namespace) -> None:
    client = aredis.from_url(args.redis)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL_PREFIX + "keepalive")
    channels: defaultdict[bytes, set[ServerConnection]] = defaultdict(set)

    async def forward() -> None:
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "message":
                broadcast(channels.get(message["channel"], ()), message["data"], text=True)

    async def handler(ws: ServerConnection) -> None:
        mine: list[bytes] = []
        try:
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("type") != "subscribe":
                    continue
                conversation_id = str(frame["conversation_id"])
                channel = (CHANNEL_PREFIX + conversation_id).encode()
                if channel not in channels:
                    await pubsub.subscribe(channel)
                channels[channel].add(ws)
                mine.append(channel)
                await ws.send(
                    json.dumps(
                        {"type": "subscribed", "conversation_id": conversation_id, "streaming": []}
                    )
                )
        finally:
            for channel in mine:
                channels[channel].discard(ws)

    reader = asyncio.create_task(forward())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(handler, "127.0.0.1", args.port, compression=None, backlog=4096) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"PORT {port}", flush=True)
        await stop.wait()
    reader.cancel()
    await client.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True, help="redis://host:port")
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
