"""Load generator for the history benchmark: GET one URL from N keep-alive clients.

A minimal HTTP/1.1 client on raw asyncio streams, so that the generator costs far less CPU
than the servers it measures (httpx would be the bottleneck here). Speaks only HTTP; never
imports chatrt. Signs in through ``POST /api/auth/login`` (chatrt) or sends a given cookie
(the baseline). Measures one client alone (latency p50) and then ``--clients`` at once
(req/s, p50, p99). Any answer but 200 counts as an error. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit

import httpx


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def get(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        return status


async def phase(
    host: str, port: int, request: bytes, clients: int, duration: float
) -> dict[str, float]:
    connections = [Connection(*await asyncio.open_connection(host, port)) for _ in range(clients)]
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration

    async def drive(conn: Connection) -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            status = await conn.get(request)
            latencies.append(time.perf_counter() - started)
            errors += status != 200

    for conn in connections:  # warm-up: one request each
        await conn.get(request)
    started = time.perf_counter()
    await asyncio.gather(*(drive(c) for c in connections))
    seconds = time.perf_counter() - started
    for conn in connections:
        conn.writer.close()
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "req_per_s": len(latencies) / seconds,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "errors": errors,
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    cookie = args.cookie
    if args.email:
        async with httpx.AsyncClient(base_url=args.url) as http:
            response = await http.post(
                "/api/auth/login", json={"email": args.email, "password": args.password}
            )
            response.raise_for_status()
            cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
    request = (
        f"GET {args.path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n"
        f"Cookie: {cookie}\r\n\r\n"
    ).encode()
    one = await phase(host, port, request, 1, args.one_client_duration)
    many = await phase(host, port, request, args.clients, args.duration)
    return {"one": one, "many": many}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="server base URL, http://host:port")
    parser.add_argument("--path", required=True, help="the path and query to GET")
    parser.add_argument("--email", help="sign in with these credentials (chatrt)")
    parser.add_argument("--password", default="")
    parser.add_argument("--cookie", default="", help="send this Cookie header (baseline)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--one-client-duration", type=float, default=2.0)
    print(json.dumps(asyncio.run(run(parser.parse_args(argv)))))


if __name__ == "__main__":
    main()
