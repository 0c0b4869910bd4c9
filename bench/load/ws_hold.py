"""Load generator for the capacity benchmark: many idle WebSocket connections, or many streams.

Speaks only the public protocol; never imports chatrt. Two modes, each printing ``READY``
once its sockets are open and then waiting for a line on stdin:

- ``--idle N``: N bare-socket connections (``bench.load.raw_ws``), a few users' session
  cookies spread over them; with ``--ping`` each must answer a ``ping`` frame with ``pong``
  before it counts as open (chatrt: signed in and served). ``QUIT`` closes them and prints
  one JSON object: opened, still open at the end, seconds to open them all.
- ``--streams N``: N conversations, 100 per user, each followed by one of the user's 10
  sockets (10 conversations each); ``GO`` sends one message to each at once and follows
  every answer to ``message.done``; prints one JSON object: answers, lost (not ``complete``
  with deltas seq 1..N that join to the content, or never done), timed out, seconds.
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
from bench.load.ws_stream import PASSWORD


async def stdin_line() -> str:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return (await reader.readline()).decode().strip()


async def register(client: httpx.AsyncClient) -> None:
    """Sign up a new user; ``client`` keeps its session and CSRF cookies."""
    response = await client.post(
        "/api/auth/register",
        json={"email": f"hold-{uuid.uuid4().hex[:12]}@example.com", "password": PASSWORD,
              "display_name": "bench"},
    )  # fmt: skip
    response.raise_for_status()


async def sign_up(url: str) -> str:
    """A new user's ``session=...`` cookie."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await register(client)
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


class Follower:
    """One socket following the answers of the conversations it subscribed to."""

    def __init__(self) -> None:
        self.parts: dict[str, dict[int, str]] = {}
        self.done: dict[str, tuple[str, str]] = {}
        self.subscribed = 0
        self.socket: RawSocket | None = None

    def on_text(self, payload: bytes, _now: int) -> None:
        frame = json.loads(payload)
        kind = frame["type"]
        if kind == "message.delta":
            self.parts.setdefault(frame["message_id"], {})[frame["seq"]] = frame["delta"]
        elif kind == "message.done" and frame["message"]["role"] == "assistant":
            message = frame["message"]
            self.done[message["id"]] = (message["status"], message["content"])
        elif kind == "subscribed":
            self.subscribed += 1

    def why(self, message_id: str) -> str:
        parts = self.parts.get(message_id, {})
        status, content = self.done[message_id]
        joined = "".join(parts[s] for s in sorted(parts))
        return (
            f"{message_id}: status {status}, seqs {min(parts, default=0)}..{max(parts, default=0)}"
            f" ({len(parts)}), joined {len(joined)} chars, content {len(content)}"
        )

    def intact(self, message_id: str) -> bool:
        if message_id not in self.done:
            return False
        parts = self.parts.get(message_id, {})
        status, content = self.done[message_id]
        joined = "".join(parts[s] for s in sorted(parts))
        return (
            status == "complete"
            and joined == content
            and sorted(parts) == list(range(1, len(parts) + 1))
        )


async def streams(args: argparse.Namespace) -> dict[str, object]:
    """Users with ``--sockets-per-user`` sockets, each subscribed to ``--per-socket``
    conversations: few sign-ups (argon2 is slow on purpose) and few sockets per user (each
    of a user's sockets gets every ``conversation.updated`` of the user)."""
    per_user = args.sockets_per_user * args.per_socket
    users = []
    for first in range(0, args.streams, per_user):
        client = httpx.AsyncClient(base_url=args.url, timeout=120)
        await register(client)
        headers = {"x-csrftoken": client.cookies.get("csrftoken") or ""}
        count = min(per_user, args.streams - first)

        async def create(
            client: httpx.AsyncClient = client, headers: dict[str, str] = headers
        ) -> str:
            created = await client.post(
                "/api/conversations", json={"title": "hold"}, headers=headers
            )
            created.raise_for_status()
            conversation_id: str = created.json()["conversation"]["id"]
            return conversation_id

        conversations = list(await asyncio.gather(*(create() for _ in range(count))))
        cookie = f"session={client.cookies.get('session')}"
        followers = []
        for start in range(0, count, args.per_socket):
            follower = Follower()
            follower.socket = await connect(
                args.url, follower.on_text, cookie=cookie, origin=args.origin
            )
            mine = conversations[start : start + args.per_socket]
            for conversation_id in mine:
                follower.socket.send_text(
                    json.dumps({"type": "subscribe", "conversation_id": conversation_id})
                )
            followers.append((follower, mine))
        users.append((client, headers, followers))
    deadline = time.monotonic() + 60
    while any(f.subscribed < len(m) for _, _, fs in users for f, m in fs):
        if time.monotonic() > deadline:
            raise RuntimeError("not every socket got subscribed")
        await asyncio.sleep(0.05)
    print("READY", flush=True)
    await stdin_line()
    started = time.monotonic()

    async def send(client: httpx.AsyncClient, headers: dict[str, str], conversation_id: str) -> str:
        body = {"content": "go", "client_message_id": str(uuid.uuid4())}
        path = f"/api/conversations/{conversation_id}/messages"
        try:
            response = await client.post(path, json=body, headers=headers)
        except httpx.TransportError:
            # A pooled keep-alive connection the server closed just as it was reused; the
            # same client_message_id makes the repeat safe (the first result, nothing new).
            response = await client.post(path, json=body, headers=headers)
        response.raise_for_status()
        message_id: str = response.json()["assistant_message"]["id"]
        return message_id

    sends = [
        (follower, send(client, headers, conversation_id))
        for client, headers, followers in users
        for follower, mine in followers
        for conversation_id in mine
    ]
    results = await asyncio.gather(*(coro for _, coro in sends), return_exceptions=True)
    watched = [(f, r) for (f, _), r in zip(sends, results, strict=True) if isinstance(r, str)]
    end_by = time.monotonic() + args.deadline
    while time.monotonic() < end_by:
        if all(m in f.done for f, m in watched):
            break
        await asyncio.sleep(0.1)
    seconds = time.monotonic() - started
    timed_out = sum(1 for f, m in watched if m not in f.done)
    broken = [f.why(m) for f, m in watched if m in f.done and not f.intact(m)]
    failed = [repr(r) for r in results if not isinstance(r, str)]
    lost = len(failed) + timed_out + len(broken)
    for client, _, followers in users:
        for follower, _ in followers:
            if follower.socket is not None:
                follower.socket.close()
        await client.aclose()
    return {
        "answers": len(results),
        "timed_out": timed_out,
        "lost": lost,
        "seconds": seconds,
        # What went wrong, a few of each: a refused send, or an answer whose deltas are off.
        "send_errors": failed[:5],
        "broken": broken[:5],
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
    parser.add_argument("--sockets-per-user", type=int, default=10)
    parser.add_argument("--per-socket", type=int, default=10, help="conversations per socket")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per answer")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = asyncio.run(streams(args) if args.streams else idle(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
