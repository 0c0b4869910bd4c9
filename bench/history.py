"""Benchmark 3: conversation list and message history at scale, against a bare ASGI baseline.

PostgreSQL (schema from ``chatrt migrate``) is loaded with COPY, not the API: users x
conversations x messages, plus one user with one very long conversation. Two users are
registered through the API so that the load generator can sign in as them; the rest get a
dummy password hash. Then ``bench.load.http_get`` GETs, from 32 keep-alive clients, the
conversation list, the long conversation's newest page and a page at depth, from chatrt and
from ``bench.baselines.history_app`` (uvicorn + asyncpg + msgspec) in turn.

    python -m bench.history              # 1,000 x 20 x 50 plus one 200,000-message conversation
    python -m bench.history --tiny       # seconds; what the test suite runs
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from tests.support.servers import free_port

from bench import support

PASSWORD = "bench password 1234"
_FILLER = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--conversations", type=int, default=20, help="per user")
    parser.add_argument("--messages", type=int, default=50, help="per conversation")
    parser.add_argument("--long", type=int, default=200_000, help="messages, long conversation")
    parser.add_argument("--depth", type=int, default=190_000, help="message index of deep page")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--runs", type=int, default=3)
    support.add_run_flags(
        parser,
        "sample chatrt with py-spy and write only its top frames, to their own section",
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.users, args.conversations, args.messages = 5, 3, 4
        args.long, args.depth, args.clients = 300, 250, 4
        args.duration, args.runs = 0.5, 1
    if not 0 < args.depth < args.long:
        parser.error("--depth must lie inside the long conversation")
    return args


def _uuid(kind: int, n: int) -> str:
    # Deterministic, distinct per kind; any 128-bit value is a valid PostgreSQL UUID.
    return f"{kind:08x}-0000-4000-8000-{n:012x}"


def _csv(rows: Iterator[str]) -> Iterator[bytes]:
    batch: list[str] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= 20_000:
            yield "".join(batch).encode()
            batch = []
    if batch:
        yield "".join(batch).encode()


async def load(dsn: str, args: argparse.Namespace, list_user: str, long_user: str) -> str:
    """COPY the data set in; the long conversation's id."""
    conn = await asyncpg.connect(dsn)
    try:
        stamp = "2026-01-01 00:00:00+00"
        others = [_uuid(1, n) for n in range(max(0, args.users - 1))]
        users = (
            f"{uid},bench{n}@example.com,x,bench,{stamp},{stamp}\n" for n, uid in enumerate(others)
        )
        await _copy(conn, "users", ["id", "email", "password_hash", "display_name",
                                     "created_at", "updated_at"], users)  # fmt: skip
        owners = [list_user, *others]
        long_id = _uuid(3, 0)

        def conversations() -> Iterator[str]:
            n = 0
            for owner in owners:
                for _ in range(args.conversations):
                    updated = f"2026-01-01 00:00:00.{n % 1_000_000:06d}+00"
                    yield (
                        f"{_uuid(2, n)},{owner},Conversation {n},active,{args.messages},"
                        f"{stamp},{updated}\n"
                    )
                    n += 1
            yield f"{long_id},{long_user},The long one,active,{args.long},{stamp},{stamp}\n"

        await _copy(conn, "conversations", ["id", "user_id", "title", "status",
                                             "message_count", "created_at", "updated_at"],
                    conversations())  # fmt: skip

        def messages() -> Iterator[str]:
            m = 0
            chats = len(owners) * args.conversations
            for conv in [*(_uuid(2, n) for n in range(chats)), long_id]:
                count = args.long if conv == long_id else args.messages
                for index in range(count):
                    role = "user" if index % 2 == 0 else "assistant"
                    yield (
                        f'{_uuid(4, m)},{conv},{index},{role},"Message {index}: {_FILLER}",'
                        f"complete,{stamp},{stamp}\n"
                    )
                    m += 1

        await _copy(conn, "messages", ["id", "conversation_id", "message_index", "role",
                                        "content", "status", "created_at", "completed_at"],
                    messages())  # fmt: skip
        await conn.execute("ANALYZE")
        return long_id
    finally:
        await conn.close()


async def _copy(
    conn: asyncpg.Connection, table: str, columns: list[str], rows: Iterator[str]
) -> None:
    async def source() -> Any:
        for chunk in _csv(rows):
            yield chunk

    await conn.copy_to_table(table, source=source(), columns=columns, format="csv")


def register(url: str, email: str) -> str:
    response = httpx.post(
        f"{url}/api/auth/register",
        json={"email": email, "password": PASSWORD, "display_name": "bench"},
        timeout=30,
    )
    response.raise_for_status()
    user_id: str = response.json()["user"]["id"]
    return user_id


@contextlib.contextmanager
def baseline_server(dsn: str, work: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATRT_")}
    proc = support.Process(
        [sys.executable, "-m", "uvicorn", "bench.baselines.history_app:app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        env | {"BENCH_DSN": dsn, "BENCH_POOL_SIZE": "10"},
        work / "baseline.log",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            httpx.get(f"{url}/", timeout=1)
            return True
        except httpx.TransportError:
            return False

    try:
        deadline = time.monotonic() + 60
        while not ready():
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"baseline did not start:\n{proc.tail()}")
            time.sleep(0.05)
        yield url
    finally:
        proc.stop()


def cursor_at(index: int) -> str:
    # chatrt's history cursor: the message_index to read below, in its opaque encoding.
    return base64.urlsafe_b64encode(json.dumps(index).encode()).decode().rstrip("=")


def measure(
    args: argparse.Namespace, profile: list[str]
) -> tuple[dict[str, dict[str, list[Any]]], float]:
    results: dict[str, dict[str, list[Any]]] = {}
    with support.workdir() as work, support.production_backend(work) as env:
        chatrt_env = env | support.UNLIMITED | {"CHATRT_DB_POOL_MAX": "10",
                                                "CHATRT_LOG_LEVEL": "warning"}  # fmt: skip
        raw = work / "profile.txt"
        with support.chatrt(
            chatrt_env, work, "chatrt", raw if args.profile else None
        ) as chatrt_url:
            list_email, long_email = "list@example.com", "long@example.com"
            list_user = register(chatrt_url, list_email)
            long_user = register(chatrt_url, long_email)
            started = time.perf_counter()
            dsn = env["CHATRT_DATABASE_URL"]
            long_id = asyncio.run(load(dsn, args, list_user, long_user))
            load_s = time.perf_counter() - started
            history = f"/api/conversations/{long_id}/messages?limit=25"
            scenarios = {
                "list": ("/api/conversations?limit=25", list_email, list_user),
                "history_page_1": (history, long_email, long_user),
                "history_deep": (f"{history}&cursor={cursor_at(args.depth)}", long_email,
                                 long_user),
            }  # fmt: skip
            with baseline_server(dsn, work) as base_url:
                for _ in range(args.runs):
                    for name, (path, email, user_id) in scenarios.items():
                        one_s = str(min(2.0, args.duration))
                        common = ["--path", path, "--clients", str(args.clients),
                                  "--duration", str(args.duration),
                                  "--one-client-duration", one_s]  # fmt: skip
                        slot = results.setdefault(name, {"baseline": [], "chatrt": []})
                        slot["baseline"].append(
                            support.run_json(["bench.load.http_get", "--url", base_url,
                                              "--cookie", f"session={user_id}", *common])
                        )  # fmt: skip
                        slot["chatrt"].append(
                            support.run_json(["bench.load.http_get", "--url", chatrt_url,
                                              "--email", email, "--password", PASSWORD,
                                              *common])
                        )  # fmt: skip
        if args.profile:
            profile += support.profile_tables("chatrt serving the history URLs", raw)
    return results, load_s


LABELS = {
    "list": "conversation list, page 1",
    "history_page_1": "history of the long conversation, page 1",
    "history_deep": "history at depth",
}


def report(
    args: argparse.Namespace, results: dict[str, dict[str, list[Any]]], load_s: float, machine: str
) -> str:
    med = support.median
    lines = [
        "## History at scale (benchmark 3)",
        "",
        f"Measured {support.now()} on {machine}.",
        "The machine is shared and was busy with other work, so figures are noisy; each figure",
        "is the median of the runs, and each ratio compares runs taken back to back.",
        "",
        f"Data: {args.users:,} users x {args.conversations} conversations x {args.messages} "
        f"messages plus one user with one {args.long:,}-message conversation, loaded with COPY "
        f"in {load_s:.1f} s. {args.clients} concurrent keep-alive clients, signed in, "
        f"{args.duration:g} s per measurement, {args.runs} runs; page size 25; the deep page "
        f"starts below message {args.depth:,}.",
        "",
        "| URL | baseline req/s | chatrt req/s | ratio (target >= 0.5) | chatrt p50 / p99 "
        f"at {args.clients} | chatrt p50 at 1 client (target <= 2 ms) | baseline p50 at 1 client "
        "| errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    page1 = 0.0
    for name, label in LABELS.items():
        slot = results[name]
        base = med([r["many"]["req_per_s"] for r in slot["baseline"]])
        ours = med([r["many"]["req_per_s"] for r in slot["chatrt"]])
        ratio = med([
            c["many"]["req_per_s"] / b["many"]["req_per_s"]
            for c, b in zip(slot["chatrt"], slot["baseline"], strict=True)
        ])  # fmt: skip
        p50 = med([r["many"]["p50_ms"] for r in slot["chatrt"]])
        p99 = med([r["many"]["p99_ms"] for r in slot["chatrt"]])
        one = med([r["one"]["p50_ms"] for r in slot["chatrt"]])
        base_one = med([r["one"]["p50_ms"] for r in slot["baseline"]])
        errors = sum(
            r[p]["errors"] for side in slot.values() for r in side for p in ("one", "many")
        )
        if name == "history_page_1":
            page1 = ours
        lines.append(
            f"| {label} | {base:,.0f} | {ours:,.0f} | {ratio:.2f} "
            f"({'met' if ratio >= 0.5 else 'missed'}) | {p50:.1f} / {p99:.1f} ms | {one:.2f} ms "
            f"({'met' if one <= 2 else 'missed'}) | {base_one:.2f} ms | {errors} |"
        )
    deep = med([r["many"]["req_per_s"] for r in results["history_deep"]["chatrt"]])
    if page1:
        slower = page1 / deep if deep else float("inf")
        lines += [
            "",
            f"Deep page against page 1 (target within 1.2x): chatrt's deep page serves "
            f"{slower:.2f}x the time of page 1 ({'met' if slower <= 1.2 else 'missed'}).",
        ]
    lines += [
        "",
        "The baseline (`bench/baselines/history_app.py`) reads the user id straight from the",
        "cookie and answers a history page with one query (ownership joined in); chatrt looks",
        "the session up in Redis, checks ownership and reads the page in two queries, and",
        "validates every parameter. The deep URL carries a cursor in chatrt's own encoding.",
        "",
        f"Reproduce: `python -m bench.history --users {args.users} --conversations "
        f"{args.conversations} --messages {args.messages} --long {args.long} --depth "
        f"{args.depth} --clients {args.clients} --duration {args.duration:g} --runs {args.runs}` "
        "from the repository root, in the dev venv, with PostgreSQL and Redis binaries installed "
        "as for the test suite.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    machine = support.machine()
    profile: list[str] = []
    results, load_s = measure(args, profile)
    text = report(args, results, load_s, machine)
    if not args.profile:  # a profiled run's figures carry the sampling overhead
        support.write_section("history", text, args.output)
    print(text)
    if profile:
        profiled = "\n".join(
            [
                "### Where chatrt's time goes on the history URLs (py-spy)",
                "",
                f"`python -m bench.history --profile` ({support.now()}, all three URLs, "
                f"{args.clients} clients; the sampling covers the load step too, which chatrt "
                f"sits out). {support.PROFILE_NOTE}",
                *profile,
            ]
        )
        support.write_section("history-profile", profiled, args.output)
        print(profiled)


if __name__ == "__main__":
    main()
