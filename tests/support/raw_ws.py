"""A WebSocket client on a bare socket that reads only when asked (a stalled client).

Client libraries keep reading in the background; this one does not, so the server really
meets a client that does not keep up. It may read some frames first (``recv``) and then
stop: a reader that pauses mid-answer, knowing the last seq it processed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
from typing import Any

import anyio


class Closed(Exception):
    """The server closed the connection; ``code`` is from its close frame, if one came."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


class StalledClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(
        cls,
        base_url: str,
        session: str,
        origin: str = "http://127.0.0.1:8000",
        receive_buffer: int | None = None,
    ) -> StalledClient:
        """``receive_buffer`` shrinks the kernel's buffers, so the server meets the stall
        after kilobytes instead of the megabytes loopback would otherwise absorb."""
        host, port = base_url.removeprefix("http://").split(":")
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            # Before connecting: window scale and segment size are agreed in the handshake.
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            # Loopback's 64 kB segments would let the server's send buffer grow to
            # megabytes (it is sized in segments); small ones keep it small too.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        raw.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(raw, (host, int(port)))
        except BaseException:
            raw.close()
            raise
        # A small stream limit: asyncio stops pulling from the socket at twice this.
        reader, writer = await asyncio.open_connection(sock=raw, limit=16 * 1024)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nCookie: session={session}\r\n"
                f"Origin: {origin}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(head.decode(errors="replace"))
        return cls(reader, writer)

    async def send(self, frame: dict[str, Any]) -> None:
        payload = json.dumps(frame).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        header = bytes([0x81])  # FIN + text; client frames are always masked
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        self._writer.write(header + mask + masked)
        await self._writer.drain()

    async def recv(self, within_s: float = 10.0) -> dict[str, Any]:
        """The next text frame, decoded; :class:`Closed` once the server closes."""
        with anyio.fail_after(within_s):
            while True:
                try:
                    head = await self._reader.readexactly(2)
                    length = head[1] & 0x7F
                    if length == 126:
                        length = struct.unpack(">H", await self._reader.readexactly(2))[0]
                    elif length == 127:
                        length = struct.unpack(">Q", await self._reader.readexactly(8))[0]
                    payload = await self._reader.readexactly(length)
                except (asyncio.IncompleteReadError, ConnectionError) as lost:
                    raise Closed(None) from lost
                opcode = head[0] & 0x0F
                if opcode == 0x8:
                    raise Closed(struct.unpack(">H", payload[:2])[0] if payload else None)
                if opcode == 0x1:  # the server sends each frame whole (FIN set)
                    frame: dict[str, Any] = json.loads(payload)
                    return frame

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
