"""Load generator for the streaming benchmark: chatrt's answers as WebSocket clients see them.

Speaks only the public protocol (``/api`` over HTTP, ``/ws``); never imports chatrt. One
signed-in user; each concurrent worker owns a conversation and a socket subscribed to it,
sends a message over REST and reads ``message.delta`` frames until ``message.done``. Checks
that the deltas, joined in seq order, equal the final content (else the answer counts as lost).
Prints one JSON object: tokens, seconds, tokens_per_s, ttft_ms (sequential samples), lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection, connect

_DECODE = msgspec.json.Decoder().decode
PASSWORD = "bench password 1234"


class Session:
    def __init__(self, url: str, origin: str) -> None:
        self.url = url
        self.origin = origin
        self.http = httpx.AsyncClient(base_url=url, timeout=60)

    async def sign_up(self) -> None:
        email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
        response = await self.http.post(
            "/api/auth/register",
            json={"email": email, "password": PASSWORD, "display_name": "bench"},
        )
        response.raise_for_status()

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"x-csrftoken": self.http.cookies.get("csrftoken") or ""}
        response = await self.http.post(path, json=body, headers=headers)
        if response.status_code >= 400:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result

    async def socket(self) -> ClientConnection:
        cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        ws_url = "ws" + self.url.removeprefix("http") + "/ws"
        return await connect(
            ws_url,
            additional_headers={"Cookie": cookie, "Origin": self.origin},
            max_size=2**24,
            compression=None,
        )


class Worker:
    """One conversation and one socket subscribed to it."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.conversation_id = ""
        self.ws: ClientConnection | None = None
        self.accepted = 0.0
        """Seconds from sending the last message to its 202 answer."""
        self.gaps: list[float] = []
        """Seconds between consecutive deltas of the last answer."""

    async def open(self) -> None:
        created = await self.session.post("/api/conversations", {"title": "bench"})
        self.conversation_id = created["conversation"]["id"]
        self.ws = await self.session.socket()
        await self.ws.send(
            json.dumps({"type": "subscribe", "conversation_id": self.conversation_id})
        )
        while _DECODE(await self.ws.recv())["type"] != "subscribed":
            pass

    async def answer(self) -> tuple[int, float, bool]:
        """Send one message and follow its answer: (tokens, seconds to first delta, intact)."""
        assert self.ws is not None
        started = time.perf_counter()
        sent = asyncio.create_task(
            self.session.post(
                f"/api/conversations/{self.conversation_id}/messages", {"content": "hi"}
            )
        )

        def mark(_: asyncio.Task[dict[str, Any]]) -> None:
            self.accepted = time.perf_counter() - started

        sent.add_done_callback(mark)
        first = last = 0.0
        parts: dict[int, str] = {}
        self.gaps = []
        while True:
            frame = _DECODE(await self.ws.recv())
            kind = frame["type"]
            if kind == "message.delta" and frame["conversation_id"] == self.conversation_id:
                now = time.perf_counter()
                if not parts:
                    first = now - started
                else:
                    self.gaps.append(now - last)
                last = now
                parts[frame["seq"]] = frame["delta"]
            elif kind == "message.done":
                message = frame["message"]
                if message["role"] != "assistant" or message["conversation_id"] != (
                    self.conversation_id
                ):
                    continue
                await sent
                joined = "".join(parts[s] for s in sorted(parts))
                intact = (
                    message["status"] == "complete"
                    and joined == message["content"]
                    and sorted(parts) == list(range(1, len(parts) + 1))
                )
                return int(message["completion_tokens"] or 0), first, intact

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def paced(args: argparse.Namespace) -> dict[str, object]:
    """``--paced N``: N streams at once, one answer each; gaps between deltas, losses."""
    # Every socket of a user gets that user's conversation.updated frames, so streams are
    # spread over users as a crowd of people would be, not piled on one.
    workers: list[Worker] = []
    sessions = []
    for start in range(0, args.paced, args.streams_per_user):
        session = Session(args.url, args.origin)
        await session.sign_up()
        sessions.append(session)
        batch = [Worker(session) for _ in range(min(args.streams_per_user, args.paced - start))]
        await asyncio.gather(*(w.open() for w in batch))
        workers += batch
    # An answer whose message.done never comes counts as lost once the deadline passes.
    results = await asyncio.gather(
        *(asyncio.wait_for(w.answer(), args.deadline) for w in workers), return_exceptions=True
    )
    timed_out = sum(1 for r in results if isinstance(r, TimeoutError))
    gaps = sorted(g * 1000 for w in workers for g in w.gaps)
    lost = sum(1 for r in results if isinstance(r, BaseException) or not r[2])
    tokens = sum(r[0] for r in results if not isinstance(r, BaseException))
    for worker in workers:
        await worker.close()
    for session in sessions:
        await session.http.aclose()

    def pct(q: float) -> float:
        return gaps[min(len(gaps) - 1, int(q * len(gaps)))] if gaps else float("nan")

    return {
        "streams": args.paced,
        "tokens": tokens,
        "timed_out": timed_out,
        "lost": lost,
        "gap_p50_ms": pct(0.50),
        "gap_p99_ms": pct(0.99),
        "gap_max_ms": gaps[-1] if gaps else float("nan"),
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    if args.paced:
        return await paced(args)
    session = Session(args.url, args.origin)
    await session.sign_up()
    workers = [Worker(session) for _ in range(args.concurrency)]
    for worker in workers:
        await worker.open()
    lost = 0
    await workers[0].answer()  # warm-up
    ttft, accept = [], []
    for _ in range(args.ttft_samples):
        _tokens, first, intact = await workers[0].answer()
        lost += not intact
        ttft.append(first * 1000)
        accept.append(workers[0].accepted * 1000)
    queue = iter(range(args.answers))
    total = 0

    async def drive(worker: Worker) -> None:
        nonlocal total, lost
        for _ in queue:
            tokens, _first, intact = await worker.answer()
            total += tokens
            lost += not intact

    started = time.perf_counter()
    await asyncio.gather(*(drive(w) for w in workers))
    seconds = time.perf_counter() - started
    for worker in workers:
        await worker.close()
    await session.http.aclose()
    return {
        "tokens": total,
        "seconds": seconds,
        "tokens_per_s": total / seconds,
        "ttft_ms": ttft,
        "accept_ms": accept,
        "lost": lost,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="chatrt's base URL, http://host:port")
    parser.add_argument("--origin", required=True, help="an allowed Origin for /ws")
    parser.add_argument("--answers", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--ttft-samples", type=int, default=10)
    parser.add_argument(
        "--paced", type=int, default=0, help="instead: N streams at once, one answer each"
    )
    parser.add_argument("--streams-per-user", type=int, default=10)
    parser.add_argument(
        "--deadline", type=float, default=120.0, help="seconds for each paced answer"
    )
    print(json.dumps(asyncio.run(run(parser.parse_args(argv)))))


if __name__ == "__main__":
    main()
