"""A WebSocket client on a bare asyncio protocol, for load generators that hold many sockets.

Client libraries run a task and a few buffers per connection and parse frame by frame in
Python; at tens of thousands of frames a second, or ten thousand sockets, the generator would
be what is measured. This one parses every frame that one read brought in one loop, answers
pings, and hands each text frame to a callback with the time the read came in. Speaks only
RFC 6455 (no extensions: servers send unfragmented, uncompressed text frames here).
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from urllib.parse import urlsplit

OnText = Callable[[bytes, int], None]
"""Called with a text frame's payload and the read's CLOCK_MONOTONIC time in µs."""


def _mask(payload: bytes) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    # Whole-buffer XOR through Python ints: one C call instead of a loop per byte.
    keys = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")
    return key + masked


def frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (always masked)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + _mask(payload)


class RawSocket(asyncio.Protocol):
    def __init__(self, on_text: OnText) -> None:
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        """Resolves to the close code (1006 when the connection just dropped)."""
        self._upgraded = False
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send_text(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(0x1, text.encode()))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(1006)

    def data_received(self, data: bytes) -> None:
        buf = self._buffer + data if self._buffer else data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buf
                return
            head, buf = buf[:end], buf[end + 4 :]
            if not head.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(
                    ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                )
                self.close()
                return
            self._upgraded = True
            self.opened.set_result(None)
        now = time.monotonic_ns() // 1000
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head_len = b1 & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head_len = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head_len = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            end = pos + head_len + length
            if end > n:
                break
            payload = buf[pos + head_len : end]
            pos = end
            opcode = b0 & 0x0F
            if opcode == 0x1:
                self.on_text(payload, now)
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(frame(0xA, payload))
            elif opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                if not self.closed.done():
                    self.closed.set_result(code)
                self.close()
                return
        self._buffer = buf[pos:]


async def connect(
    url: str, on_text: OnText, cookie: str = "", origin: str = "", path: str = "/ws"
) -> RawSocket:
    """Open ``ws://`` to the host and port of ``url`` (``http://host:port``)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    _, sock = await loop.create_connection(lambda: RawSocket(on_text), host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = (f"Cookie: {cookie}\r\n" if cookie else "") + (
        f"Origin: {origin}\r\n" if origin else ""
    )
    assert sock.transport is not None
    sock.transport.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()
    )
    await sock.opened
    return sock
