"""A scripted OpenAI-compatible chat completions server: the only fake in the suite.

It sits at the network edge: a plain ASGI app served by uvicorn on a real 127.0.0.1 port,
in a background thread with its own event loop, so both in-process chatrt apps and
``chatrt serve`` subprocesses reach it through the real ``openai`` client, whatever the
test's own event loop is doing. Each path prefix ``/{name}/v1`` is a separately scripted
provider::

    with FakeOpenAI() as fake:
        fake.script("primary", Script(tokens=["Hel", "lo"], delay_s=0.01))
        settings = ...base_url=fake.base_url("primary")...
        ...
        fake.wait_for(lambda: fake.completed("primary") == 1)

The response headers go out as soon as a request arrives; every pause happens after them.
A stream the client abandons (closed response, read timeout, cancelled task) is noticed
within milliseconds by a task that watches the connection for ``http.disconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import uvicorn

from tests.support.wait import poll_until

__all__ = ["FakeOpenAI", "Script"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Outcome = Literal["completed", "gone", "dropped", "aborted"]

_POLL_S = 0.01
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_INCOMPLETE = "ASGI callable returned without completing response."
_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass
class Script:
    """How one provider answers each chat completion request."""

    tokens: list[str] | int = 20
    """The content deltas, or ``n`` for ``tok0 `` ... ``tok{n-1} ``."""
    delay_s: float = 0.0
    """Pause before each token."""
    first_token_delay_s: float = 0.0
    """Extra pause after the headers, before the first token (or the end, without tokens)."""
    status: int = 200
    """Anything but 200: answer at once with this status and an OpenAI-style error body."""
    usage: bool = True
    """Send the usage-only chunk (``choices: []``) before ``[DONE]``."""
    stall_after: int | None = None
    """After this many tokens, hang until the client goes away (or the server stops)."""
    drop_after: int | None = None
    """After this many tokens, close the connection mid-body (no ``[DONE]``)."""
    body: bytes | None = None
    """Send exactly these bytes as the SSE body instead of chunks made from ``tokens`` (for
    garbage and cut-off streams); with ``drop_after`` set (to any value) the connection is
    then closed mid-body, else the body ends cleanly. Ignores the other fields but
    ``status`` and ``first_token_delay_s``."""
    repeat: bytes | None = None
    """With ``body``: after it, send these bytes again and again until the client goes away
    (an upstream that never ends its line or its answer)."""

    def token_list(self) -> list[str]:
        if isinstance(self.tokens, int):
            return [f"tok{i} " for i in range(self.tokens)]
        return list(self.tokens)


@dataclass
class _Provider:
    script: Script = field(default_factory=Script)
    requests: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    disconnects: int = 0
    completed: int = 0


class _QuietIncomplete(logging.Filter):
    """Hide uvicorn's error line for the responses this server cuts off on purpose."""

    def __init__(self, thread: threading.Thread) -> None:
        super().__init__()
        self._thread = thread

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.thread == self._thread.ident and record.getMessage() == _INCOMPLETE)


class FakeOpenAI:
    """An OpenAI-compatible streaming server in a background thread; see the module doc.

    Counters are per name and thread-safe. Each request uses the script its name had when
    the request arrived.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._providers: dict[str, _Provider] = {}
        self._ids = 0
        self._port: int | None = None
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._log_filter: _QuietIncomplete | None = None
        self._crash: BaseException | None = None
        # Owned by the server thread's event loop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._streams: set[asyncio.Event] = set()
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Bind a free port on 127.0.0.1 and return once the server accepts requests."""
        if self._thread is not None:
            raise RuntimeError("FakeOpenAI is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            config = uvicorn.Config(
                self._app,
                log_level="warning",
                lifespan="off",
                interface="asgi3",
                access_log=False,
                ws="none",
                timeout_graceful_shutdown=2,
            )
            server = uvicorn.Server(config)
        except BaseException:
            sock.close()
            raise
        self._sock, self._port, self._server = sock, port, server
        self._crash = None
        self._closing = False
        thread = threading.Thread(
            target=self._run, args=(server, sock), name=f"fake-openai-{port}", daemon=True
        )
        self._thread = thread
        self._log_filter = _QuietIncomplete(thread)
        logging.getLogger("uvicorn.error").addFilter(self._log_filter)
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"fake OpenAI server did not start: {self._crash!r}")
            time.sleep(_POLL_S)

    def stop(self) -> None:
        """Cut off open streams, shut uvicorn down and join its thread. Idempotent."""
        thread, server = self._thread, self._server
        if thread is None or server is None:
            return
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(self._abort_streams)
        server.should_exit = True
        thread.join(_STOP_TIMEOUT_S)
        if thread.is_alive():
            server.force_exit = True
            thread.join(_STOP_TIMEOUT_S)
        if self._sock is not None:
            self._sock.close()
        if self._log_filter is not None:
            logging.getLogger("uvicorn.error").removeFilter(self._log_filter)
        self._thread = self._server = self._sock = self._log_filter = None
        self._loop = None
        if thread.is_alive():
            raise RuntimeError("fake OpenAI server thread did not stop")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._streams = set()
            await server.serve(sockets=[sock])

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start(); a thread must not raise
            self._crash = exc

    def _abort_streams(self) -> None:
        self._closing = True
        for gone in self._streams:
            gone.set()

    # -- test-thread API ---------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not started")
        return self._port

    def base_url(self, name: str) -> str:
        if not name or "/" in name:
            raise ValueError(f"provider name must be one path segment: {name!r}")
        return f"http://127.0.0.1:{self.port}/{name}/v1"

    def script(self, name: str, script: Script) -> None:
        with self._lock:
            self._provider(name).script = script

    def requests(self, name: str) -> int:
        with self._lock:
            return self._provider(name).requests

    def bodies(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._provider(name).bodies)

    def disconnects(self, name: str) -> int:
        """Streams that ended because the client went away before the server finished."""
        with self._lock:
            return self._provider(name).disconnects

    def completed(self, name: str) -> int:
        """Streams that sent ``[DONE]``."""
        with self._lock:
            return self._provider(name).completed

    def reset(self) -> None:
        """Forget scripts and counters; streams already running count nowhere."""
        with self._lock:
            self._providers = {}

    def wait_for(self, predicate: Callable[[], bool], within_s: float = 10) -> None:
        """Poll ``predicate`` until true; TimeoutError after ``within_s``.

        This blocks the calling thread: from an async test whose own event loop must keep
        running meanwhile (an in-process chatrt app), use ``wait_for_async``.
        """
        poll_until(predicate, within_s, _POLL_S)

    async def wait_for_async(self, predicate: Callable[[], bool], within_s: float = 10) -> None:
        """``wait_for`` that yields to the caller's event loop between polls."""
        deadline = time.monotonic() + within_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {within_s} s")
            await asyncio.sleep(_POLL_S)

    def _provider(self, name: str) -> _Provider:
        # Caller holds the lock.
        provider = self._providers.get(name)
        if provider is None:
            provider = self._providers[name] = _Provider()
        return provider

    # -- ASGI app (server thread) ------------------------------------------------------

    async def _app(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        parts = scope["path"].split("/")
        if (
            scope["method"] != "POST"
            or len(parts) != 5
            or parts[0] != ""
            or not parts[1]
            or parts[2:] != ["v1", "chat", "completions"]
        ):
            await _send_error(send, 404, f"Unknown route {scope['method']} {scope['path']}")
            return
        name = parts[1]
        try:
            request = json.loads(body)
            if not isinstance(request, dict):
                raise TypeError("not an object")
        except (ValueError, TypeError):
            await _send_error(send, 400, "Request body is not a JSON object")
            return
        with self._lock:
            provider = self._provider(name)
            provider.requests += 1
            provider.bodies.append(request)
            script = provider.script
            self._ids += 1
            chunk_id = f"chatcmpl-{self._ids}"
        if script.status != 200:
            await _send_error(send, script.status, f"Scripted {script.status} from {name!r}")
            return
        if request.get("stream") is not True:
            await _send_error(send, 400, "This fake only serves stream=true")
            return

        def finishing() -> None:
            # Counted before [DONE] goes out, so a client that saw it sees the count too.
            with self._lock:
                provider.completed += 1

        if await self._stream(receive, send, script, request, chunk_id, finishing) == "gone":
            with self._lock:
                provider.disconnects += 1

    async def _stream(
        self,
        receive: Receive,
        send: Send,
        script: Script,
        request: dict[str, Any],
        chunk_id: str,
        finishing: Callable[[], None],
    ) -> Outcome:
        gone = asyncio.Event()
        if self._closing:
            gone.set()
        self._streams.add(gone)
        watcher = asyncio.create_task(_watch_disconnect(receive, gone))
        try:
            outcome = await self._emit(send, gone, script, request, chunk_id, finishing)
        finally:
            self._streams.discard(gone)
            watcher.cancel()
        if outcome == "gone" and self._closing:
            return "aborted"
        return outcome

    async def _emit(
        self,
        send: Send,
        gone: asyncio.Event,
        script: Script,
        request: dict[str, Any],
        chunk_id: str,
        finishing: Callable[[], None],
    ) -> Outcome:
        model = str(request.get("model", ""))

        def chunk(delta: dict[str, str], finish: str | None) -> bytes:
            return _event(
                {
                    "id": chunk_id,
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )

        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        tokens = script.token_list()
        if await _pause(gone, script.first_token_delay_s):
            return "gone"
        if script.body is not None:
            if script.repeat is not None:
                await send({"type": "http.response.body", "body": script.body, "more_body": True})
                while not gone.is_set():
                    # uvicorn's send waits while the client's socket is full.
                    await send(
                        {"type": "http.response.body", "body": script.repeat, "more_body": True}
                    )
                    await asyncio.sleep(0)
                return "gone"
            if script.drop_after is not None:
                await send({"type": "http.response.body", "body": script.body, "more_body": True})
                return "dropped"
            finishing()
            await send({"type": "http.response.body", "body": script.body, "more_body": False})
            return "completed"
        for sent in range(len(tokens) + 1):
            if script.stall_after == sent:
                await gone.wait()
                return "gone"
            if script.drop_after == sent:
                return "dropped"  # uvicorn closes the connection mid-body
            if sent == len(tokens):
                break
            if await _pause(gone, script.delay_s):
                return "gone"
            delta = {"content": tokens[sent]}
            if sent == 0:
                delta = {"role": "assistant"} | delta
            await send(
                {"type": "http.response.body", "body": chunk(delta, None), "more_body": True}
            )
        if gone.is_set():
            return "gone"
        tail = [chunk({}, "stop")]
        if script.usage:
            prompt = _prompt_tokens(request)
            tail.append(
                _event(
                    {
                        "id": chunk_id,
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": model,
                        "choices": [],
                        "usage": {
                            "prompt_tokens": prompt,
                            "completion_tokens": len(tokens),
                            "total_tokens": prompt + len(tokens),
                        },
                    }
                )
            )
        tail.append(b"data: [DONE]\n\n")
        finishing()
        await send({"type": "http.response.body", "body": b"".join(tail), "more_body": False})
        return "completed"


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def _prompt_tokens(request: dict[str, Any]) -> int:
    """One token per whitespace-separated word of each string message content."""
    messages = request.get("messages")
    if not isinstance(messages, list):
        return 0
    return sum(
        len(m["content"].split())
        for m in messages
        if isinstance(m, dict) and isinstance(m.get("content"), str)
    )


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    # Once the request body is read, uvicorn's receive() blocks until the connection is
    # lost (or the response is complete, by which time this task is cancelled).
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def _pause(gone: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless the client goes first; true if it did."""
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await gone.wait()
    else:
        await asyncio.sleep(0)
    return gone.is_set()


async def _send_error(send: Send, status: int, message: str) -> None:
    kind, code = _ERROR_TYPES.get(status, ("server_error", None))
    body = json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
