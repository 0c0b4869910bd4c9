"""A WebSocket test client that keeps every frame it receives."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]
ORIGIN = "http://127.0.0.1:8000"


class WsClient:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.frames: list[Frame] = []

    @classmethod
    async def connect(
        cls, base_url: str, session: str | None, origin: str | None = ORIGIN
    ) -> WsClient:
        headers = {}
        if session is not None:
            headers["cookie"] = f"session={session}"
        if origin is not None:
            headers["origin"] = origin
        url = base_url.replace("http://", "ws://") + "/ws"
        # No read-side flow control: a test that stops reading a busy socket would otherwise
        # pause the transport, and the close handshake at teardown would wait 10 s for a
        # close frame stuck behind unread deltas. Every frame is kept anyway.
        return cls(await connect(url, additional_headers=headers, max_size=None, max_queue=None))

    async def send(self, frame: Frame | str) -> None:
        await self.connection.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, within_s: float = 10.0) -> Frame:
        with anyio.fail_after(within_s):
            raw = await self.connection.recv()
        frame: Frame = json.loads(raw)
        self.frames.append(frame)
        return frame

    async def recv_until(
        self, done: Callable[[Frame], bool], within_s: float = 15.0
    ) -> list[Frame]:
        """Frames up to and including the first one ``done`` accepts."""
        got: list[Frame] = []
        with anyio.fail_after(within_s):
            while True:
                frame = await self.recv(within_s)
                got.append(frame)
                if done(frame):
                    return got

    async def close_code(self, within_s: float = 10.0) -> int | None:
        """Read until the server closes; the close code it sent."""
        with anyio.fail_after(within_s):
            try:
                while True:
                    await self.recv(within_s)
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None

    async def close(self) -> None:
        await self.connection.close()


def done_of(message_id: str) -> Callable[[Frame], bool]:
    return lambda f: f["type"] == "message.done" and f["message"]["id"] == message_id


def deltas_of(frames: list[Frame], message_id: str) -> list[Frame]:
    return [f for f in frames if f["type"] == "message.delta" and f["message_id"] == message_id]
