"""A bench-side fake OpenAI-compatible upstream: streams N-token answers, flat out or paced.

Raw asyncio rather than a framework, so that the upstream costs as little CPU as possible and
is not what limits either chatrt or the baseline. Every token is its own SSE event and its own
HTTP chunk, written separately, as a real model server does. Run it as a process::

    python -m bench.upstream --tokens 500 --rate 0     # prints "PORT <n>" once listening

With ``--stamp`` every token's text is the time it was written, ``<CLOCK_MONOTONIC in µs> ``
(one clock for every process on the machine), so that a subscriber can tell how long the
token took to reach it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time

_DONE = b"data: [DONE]\n\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(obj: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


class Upstream:
    def __init__(self, tokens: int, rate: float, stamp: bool = False) -> None:
        self.tokens = tokens
        self.delay = 1.0 / rate if rate > 0 else 0.0
        self.stamp = stamp
        self.ids = 0

    def events(self, model: str) -> tuple[list[bytes], bytes]:
        self.ids += 1
        cid = f"chatcmpl-{self.ids}"
        body = []
        for i in range(self.tokens):
            delta: dict[str, str] = {"content": f"tok{i} "}
            if i == 0:
                delta = {"role": "assistant", **delta}
            body.append(
                _chunk(
                    _event(
                        {
                            "id": cid,
                            "object": "chat.completion.chunk",
                            "created": 0,
                            "model": model,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                        }
                    )
                )
            )
        stop = _event(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
        )
        usage = _event(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": 1,
                    "completion_tokens": self.tokens,
                    "total_tokens": 1 + self.tokens,
                },
            }
        )
        return body, _chunk(stop + usage + _DONE) + b"0\r\n\r\n"

    def _stamped(self, i: int, model: str) -> bytes:
        """Token ``i`` of the current answer, its text the time now (built as it is sent)."""
        delta: dict[str, str] = {"content": f"{time.monotonic_ns() // 1000} "}
        if i == 0:
            delta = {"role": "assistant", **delta}
        return _chunk(
            _event(
                {
                    "id": f"chatcmpl-{self.ids}",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
            )
        )

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b"{}"
                try:
                    model = str(json.loads(body).get("model", "bench"))
                except ValueError:
                    model = "bench"
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
                )
                tokens, tail = self.events(model)
                for i, piece in enumerate(tokens):
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    writer.write(self._stamped(i, model) if self.stamp else piece)
                    # Yield so that concurrent streams interleave token by token.
                    await writer.drain()
                    if not self.delay:
                        await asyncio.sleep(0)
                writer.write(tail)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _main(args: argparse.Namespace) -> None:
    upstream = Upstream(args.tokens, args.rate, args.stamp)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", args.port, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=500, help="tokens per answer")
    parser.add_argument("--rate", type=float, default=0.0, help="tokens/s per stream; 0 = flat out")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--stamp", action="store_true", help="each token's text is its send time (µs)"
    )
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
