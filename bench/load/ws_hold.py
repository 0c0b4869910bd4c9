"""Load generator for the capacity benchmark: many idle WebSocket connections, or many streams.

Speaks only the public protocol; never imports chatrt. Two modes, each printing ``READY``
once its sockets are open and then waiting for a line on stdin:

- ``--idle N``: N bare-socket connections (``bench.load.raw_ws``), a few users' session
  cookies spread over them; with ``--ping`` each must answer a ``ping`` frame with ``pong``
  before it counts as open (chatrt: signed in and served). ``QUIT`` closes them and prints
  one JSON object: opened, still open at the end, seconds to open them all.
- ``--streams N``: N conversations each with a subscribed socket (``bench.load.ws_stream``'s
  workers, 10 per user); ``GO`` sends one message to each at once and follows every answer
  to ``message.done``; prints one JSON object: answers, lost, timed out, seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
import uuid

import httpx

from bench.load.raw_ws import OnText, RawSocket, connect
from bench.load.ws_stream import PASSWORD, Session, Worker


async def stdin_line() -> str:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return (await reader.readline()).decode().strip()


async def sign_up(url: str) -> str:
    """A new user's ``session=...`` cookie."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        response = await client.post(
            "/api/auth/register",
            json={"email": f"hold-{uuid.uuid4().hex[:12]}@example.com", "password": PASSWORD,
                  "display_name": "bench"},
        )  # fmt: skip
        response.raise_for_status()
        return f"session={client.cookies.get('session')}"


async def idle(args: argparse.Namespace) -> dict[str, object]:
    cookies = [await sign_up(args.url) for _ in range(args.users)] if args.users else [""]
    pongs: set[int] = set()
    sockets: list[RawSocket] = []

    def on_text(n: int) -> OnText:
        def heard(payload: bytes, _now: int) -> None:
            if b'"pong"' in payload:
                pongs.add(n)

        return heard

    async def open_one(n: int) -> None:
        sock = await connect(
            args.url, on_text(n), cookie=cookies[n % len(cookies)], origin=args.origin
        )
        sockets.append(sock)
        if args.ping:
            sock.send_text('{"type":"ping"}')

    started = time.monotonic()
    for first in range(0, args.idle, args.batch):
        await asyncio.gather(
            *(open_one(n) for n in range(first, min(first + args.batch, args.idle)))
        )
        if args.ping:
            # Wait for this batch's pongs: a backlog of unserved handshakes is not idle.
            deadline = time.monotonic() + 60
            while len(pongs) < min(first + args.batch, args.idle):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {len(pongs)} of {first + args.batch} answered")
                await asyncio.sleep(0.01)
    seconds = time.monotonic() - started
    print("READY", flush=True)
    await stdin_line()
    still_open = sum(1 for s in sockets if not s.closed.done())
    for sock in sockets:
        sock.close()
    return {"opened": len(sockets), "still_open": still_open, "seconds": seconds}


async def streams(args: argparse.Namespace) -> dict[str, object]:
    workers: list[Worker] = []
    sessions: list[Session] = []
    for first in range(0, args.streams, args.streams_per_user):
        session = Session(args.url, args.origin)
        await session.sign_up()
        sessions.append(session)
        batch = [Worker(session) for _ in range(min(args.streams_per_user, args.streams - first))]
        await asyncio.gather(*(w.open() for w in batch))
        workers += batch
    print("READY", flush=True)
    await stdin_line()
    started = time.monotonic()
    results = await asyncio.gather(
        *(asyncio.wait_for(w.answer(), args.deadline) for w in workers), return_exceptions=True
    )
    seconds = time.monotonic() - started
    for worker in workers:
        await worker.close()
    for session in sessions:
        await session.http.aclose()
    return {
        "answers": len(results),
        "timed_out": sum(1 for r in results if isinstance(r, TimeoutError)),
        "lost": sum(1 for r in results if isinstance(r, BaseException) or not r[2]),
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="http://host:port")
    parser.add_argument("--origin", default="")
    parser.add_argument("--idle", type=int, default=0, help="open N idle connections")
    parser.add_argument("--users", type=int, default=0, help="sign up this many, share sockets")
    parser.add_argument("--ping", action="store_true", help="each socket must answer a ping")
    parser.add_argument("--batch", type=int, default=100, help="handshakes at once")
    parser.add_argument("--streams", type=int, default=0, help="instead: N streams at once")
    parser.add_argument("--streams-per-user", type=int, default=10)
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per answer")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = asyncio.run(streams(args) if args.streams else idle(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
