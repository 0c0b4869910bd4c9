"""Load generator for the fan-out benchmark: WebSocket subscribers that count every delta.

Speaks only the public protocol (``/ws`` with a session cookie, ``subscribe`` frames,
``message.delta`` / ``message.done``; the baseline server speaks the same frames); never
imports chatrt. Every token's text is the time the upstream sent it (``bench.upstream
--stamp``, or the baseline publisher), so each token's delivery latency is the time the read
that brought it came in minus that stamp, on the machine's one monotonic clock.

Opens ``--sockets`` sockets spread round-robin over ``--urls``, subscribes each one to every
conversation, prints ``READY``, then takes commands on stdin, one a line:

    STEP <deadline_s> <message_id,message_id,...>
        wait until every socket has its ``message.done`` for each id (or the deadline), then
        print one JSON line: what the sockets got of those answers (deltas, tokens, missing,
        doubled, answers not intact, latency histogram, per-answer delivery span)
    QUIT
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import sys
import time
from dataclasses import dataclass, field

import msgspec

from bench.load.raw_ws import RawSocket, connect

# Latency histogram buckets: bucket b holds latencies around exp(b / 50) µs (2 % wide).
BUCKETS_PER_E = 50
# Deliveries are also counted per slot of this many µs of receive time.
SLOT_US = 100_000


class Message(msgspec.Struct):
    id: str
    content: str = ""
    status: str = ""
    role: str = ""


class Frame(msgspec.Struct):
    type: str
    message_id: str | None = None
    seq: int = 0
    delta: str = ""
    # An ``error`` frame's message is its text; a ``message.*`` frame's is the message.
    message: Message | str | None = None
    code: str | None = None


_DECODE = msgspec.json.Decoder(Frame).decode


@dataclass
class Answer:
    """One answer as one socket saw it."""

    parts: dict[int, str] = field(default_factory=dict)
    doubled: int = 0
    done: Message | None = None


@dataclass
class Spread:
    """One answer over all sockets of this process: deliveries and when they came."""

    deltas: int = 0
    tokens: int = 0
    first: int = 0
    last: int = 0
    histogram: dict[int, int] = field(default_factory=dict)
    frames_at: dict[int, int] = field(default_factory=dict)
    """Deltas received per time slot (``now // SLOT_US``)."""
    tokens_at: dict[int, int] = field(default_factory=dict)


class Subscriber:
    def __init__(self, url: str, args: argparse.Namespace, spreads: dict[str, Spread]) -> None:
        self.url = url
        self.args = args
        self.spreads = spreads
        self.answers: dict[str, Answer] = {}
        self.subscribed = 0
        self.errors: list[str] = []
        self.socket: RawSocket | None = None
        self.closes: list[int] = []

    def on_text(self, payload: bytes, now: int) -> None:
        frame = _DECODE(payload)
        kind = frame.type
        if kind == "message.delta" and frame.message_id is not None:
            answer = self.answers.get(frame.message_id)
            if answer is None:
                answer = self.answers[frame.message_id] = Answer()
            if frame.seq in answer.parts:
                answer.doubled += 1
            else:
                answer.parts[frame.seq] = frame.delta
            spread = self.spreads.get(frame.message_id)
            if spread is None:
                spread = self.spreads[frame.message_id] = Spread(first=now)
            spread.deltas += 1
            spread.last = now
            histogram = spread.histogram
            tokens = frame.delta.split()
            spread.tokens += len(tokens)
            slot = now // SLOT_US
            spread.frames_at[slot] = spread.frames_at.get(slot, 0) + 1
            spread.tokens_at[slot] = spread.tokens_at.get(slot, 0) + len(tokens)
            for token in tokens:
                bucket = int(math.log(max(now - int(token), 1)) * BUCKETS_PER_E)
                histogram[bucket] = histogram.get(bucket, 0) + 1
        elif kind == "message.done" and isinstance(frame.message, Message):
            if frame.message.role == "assistant":
                self.answers.setdefault(frame.message.id, Answer()).done = frame.message
        elif kind == "subscribed":
            self.subscribed += 1
        elif kind == "error":
            self.errors.append(str(frame.code))

    async def open(self) -> None:
        self.subscribed = 0
        self.socket = await connect(
            self.url, self.on_text, cookie=self.args.cookie, origin=self.args.origin
        )
        for conversation_id in self.args.conversations.split(","):
            self.socket.send_text(
                json.dumps({"type": "subscribe", "conversation_id": conversation_id})
            )

    @property
    def alive(self) -> bool:
        return self.socket is not None and not self.socket.closed.done()


async def wait_for(predicate: object, deadline: float) -> bool:
    assert callable(predicate)
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def open_all(subscribers: list[Subscriber], within_s: float) -> None:
    # In batches: a burst of thousands of handshakes at once only makes the server time out.
    for start in range(0, len(subscribers), 50):
        await asyncio.gather(*(s.open() for s in subscribers[start : start + 50]))
    wanted = len(subscribers[0].args.conversations.split(",")) if subscribers else 0
    deadline = time.monotonic() + within_s
    if not await wait_for(lambda: all(s.subscribed >= wanted for s in subscribers), deadline):
        errors = sorted({e for s in subscribers for e in s.errors})
        raise RuntimeError(f"not every socket got subscribed; errors: {errors}")


async def step(
    subscribers: list[Subscriber], spreads: dict[str, Spread], ids: list[str], within_s: float
) -> dict[str, object]:
    tokens = subscribers[0].args.tokens
    closed_before = {id(s) for s in subscribers if not s.alive}

    def all_done() -> bool:
        return all(
            (a := s.answers.get(m)) is not None and a.done is not None
            for s in subscribers
            if s.alive
            for m in ids
        )

    await wait_for(all_done, time.monotonic() + within_s)
    deltas = received = missing = doubled = lost = 0
    for subscriber in subscribers:
        for message_id in ids:
            answer = subscriber.answers.pop(message_id, None) or Answer()
            got = sum(len(p.split()) for p in answer.parts.values())
            deltas += len(answer.parts) + answer.doubled
            received += got
            missing += max(0, tokens - got)
            doubled += answer.doubled
            seqs = sorted(answer.parts)
            intact = (
                answer.done is not None
                and answer.done.status == "complete"
                and seqs == list(range(1, len(seqs) + 1))
                and "".join(answer.parts[s] for s in seqs) == answer.done.content
                and got == tokens
            )
            lost += not intact
    histogram: dict[int, int] = {}
    answers: dict[str, list[int]] = {}
    frames_at: dict[int, int] = {}
    tokens_at: dict[int, int] = {}
    for message_id in ids:
        spread = spreads.pop(message_id, Spread())
        answers[message_id] = [spread.deltas, spread.tokens, spread.first, spread.last]
        for slot, count in spread.frames_at.items():
            frames_at[slot] = frames_at.get(slot, 0) + count
        for slot, count in spread.tokens_at.items():
            tokens_at[slot] = tokens_at.get(slot, 0) + count
        for bucket, count in spread.histogram.items():
            histogram[bucket] = histogram.get(bucket, 0) + count
    closed = [s for s in subscribers if not s.alive and id(s) not in closed_before]
    close_codes = sorted({s.socket.closed.result() for s in closed if s.socket is not None})
    # A socket the server closed comes back for the next step (its answers stay counted lost).
    for subscriber in subscribers:
        if not subscriber.alive:
            await subscriber.open()
    return {
        "sockets": len(subscribers),
        "answers": len(ids) * len(subscribers),
        "deltas": deltas,
        "tokens": received,
        "missing": missing,
        "doubled": doubled,
        "lost": lost,
        "closed": len(closed),
        "close_codes": close_codes,
        "histogram": histogram,
        "spans": answers,
        "frames_at": frames_at,
        "tokens_at": tokens_at,
    }


async def run(args: argparse.Namespace) -> None:
    urls = args.urls.split(",")
    spreads: dict[str, Spread] = {}
    subscribers = [Subscriber(urls[n % len(urls)], args, spreads) for n in range(args.sockets)]
    await open_all(subscribers, 120)
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        command, *rest = line.split()
        if command == "QUIT":
            break
        if command == "STEP":
            result = await step(subscribers, spreads, rest[1].split(","), float(rest[0]))
            print(json.dumps(result), flush=True)
    for subscriber in subscribers:
        if subscriber.socket is not None:
            subscriber.socket.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", required=True, help="comma-separated http://host:port")
    parser.add_argument("--sockets", type=int, required=True)
    parser.add_argument("--conversations", required=True, help="comma-separated ids")
    parser.add_argument("--tokens", type=int, required=True, help="tokens per answer")
    parser.add_argument("--cookie", default="", help="Cookie header value")
    parser.add_argument("--origin", default="")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
