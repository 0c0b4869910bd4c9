"""One WebSocket connection: its frames, subscriptions, limits and delivery.

Three tasks per socket: the receiver (client frames, one at a time), the dispatcher (bus
events) and the sender (the only writer to the socket, fed by a bounded queue). A client
too slow to drain its queue is closed with 4408 rather than slowing anyone else; a flood is
closed with 4429, an oversized frame with 1009. A bad frame gets an ``error`` frame and the
socket stays open, as does a ``send`` over the user's rate limit (``rate_limited``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast
from uuid import UUID

import msgspec
from litestar import WebSocket
from litestar.types import WebSocketSendEvent

from chatrt.auth.schemas import UserOut
from chatrt.bus.base import EventBus, Subscription
from chatrt.conversations import messages, service
from chatrt.conversations.schemas import MessageCreate
from chatrt.conversations.submit import submit
from chatrt.errors import AppError, is_dependency_down, localize
from chatrt.generation.cancel import cancel, owned_message
from chatrt.generation.runner import GenerationRunner
from chatrt.observability import metrics
from chatrt.ratelimit.limits import Limits
from chatrt.realtime.channels import (
    REVOKED,
    conversation_channel,
    message_log,
    unpack,
    user_channel,
)
from chatrt.realtime.delivery import Delivery
from chatrt.realtime.ended import ended_frame
from chatrt.realtime.frames import (
    CLIENT_FRAMES,
    ENCODER,
    KNOWN_TYPES,
    Cancel,
    ClientFrame,
    ErrorFrame,
    MessageDone,
    Ping,
    Pong,
    Resume,
    Send,
    StreamingMessage,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
)
from chatrt.settings import Locale, Settings
from chatrt.tasks import stop
from chatrt.usage.budget import TokenBudget

logger = logging.getLogger("chatrt.ws")

CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_SLOW = 4408
CLOSE_FLOOD = 4429
CLOSE_SIGNED_OUT = 4401
RETRYABLE = frozenset(
    {
        "generation_in_progress",
        "shutting_down",
        "rate_limited",
        "quota_exceeded",
        "internal_error",
        "service_unavailable",
    }
)


class TokenBucket:
    """``rate`` frames a second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class Connection:
    def __init__(
        self,
        socket: WebSocket[Any, Any, Any],
        user: UserOut,
        settings: Settings,
        bus: EventBus,
        generations: GenerationRunner,
        limits: Limits,
        locale: Locale,
    ) -> None:
        self._socket = socket
        self._user = user
        self._settings = settings
        self._bus = bus
        self._generations = generations
        self._limits = limits
        self._locale = locale
        self._out: asyncio.Queue[str] = asyncio.Queue(settings.realtime.send_queue_frames)
        self._bucket = TokenBucket(
            settings.realtime.frames_per_second, settings.realtime.frame_burst
        )
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._delivery = Delivery(bus, self._enqueue_bytes, self._history_lost)
        self._subscription: Subscription | None = None
        self._conversations: set[UUID] = set()
        self._channels: set[str] = set()
        self.close_code: int | None = None
        self._session_id = socket.cookies.get("session")

    # -- output -----------------------------------------------------------

    async def _enqueue(self, text: str) -> None:
        """Queue a frame; a queue that stays full for the send timeout closes with 4408.

        Waiting (not failing at once) lets a long backfill stream through a bounded queue at
        the client's pace; only the dispatcher or receiver of this one socket waits.
        """
        if self.close_code is not None:
            return
        try:
            self._out.put_nowait(text)
            return
        except asyncio.QueueFull:
            pass
        try:
            await asyncio.wait_for(self._out.put(text), self._settings.realtime.send_timeout_s)
        except TimeoutError:
            self._close(CLOSE_SLOW)

    async def _enqueue_bytes(self, frame: bytes) -> None:
        await self._enqueue(frame.decode())

    async def _send_frame(self, frame: msgspec.Struct) -> None:
        await self._enqueue(ENCODER.encode(frame).decode())

    async def _error(
        self,
        code: str,
        ref: str | None,
        *,
        details: str | None = None,
        message_id: UUID | None = None,
        retry_after: float | None = None,
    ) -> None:
        metrics.ERRORS.labels(code, "ws").inc()
        await self._send_frame(
            ErrorFrame(
                code=code,
                message=localize(code, self._locale),
                retryable=code in RETRYABLE,
                retry_after=retry_after,
                ref=ref,
                details=details,
                message_id=message_id,
            )
        )

    async def _history_lost(self, message_id: UUID) -> None:
        await self._error("stream_history_lost", "resume", message_id=message_id)

    def _close(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
            # Operators want to see limits biting; the log carries ids and the code only.
            logger.info(
                "closing websocket", extra={"close_code": code, "user_id": str(self._user.id)}
            )
        self._stop.set()

    # -- lifecycle --------------------------------------------------------

    async def serve(self) -> None:
        """Run until the client leaves or a limit closes the socket (``close_code``)."""
        async with self._bus.subscribe() as subscription:
            self._subscription = subscription
            own = user_channel(self._user.id)
            try:
                await subscription.add(own)
            except Exception as error:
                logger.warning("websocket could not subscribe", extra={"error": repr(error)})
                self._close(CLOSE_INTERNAL)
                return
            self._channels.add(own)
            tasks = [
                asyncio.create_task(self._receive_loop()),
                asyncio.create_task(self._dispatch_loop(subscription)),
                asyncio.create_task(self._send_loop()),
                asyncio.create_task(self._end_quiet_answers()),
                asyncio.create_task(self._stop.wait()),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    exc = None if task.cancelled() else task.exception()
                    if exc is not None and not _is_disconnect(exc):
                        logger.error("websocket task failed", exc_info=exc)
                        # 1011 tells the client to reconnect and resume, unlike a clean 1000.
                        self._close(CLOSE_INTERNAL)
            finally:
                self._stop.set()  # loops that swallowed their cancel end on this
                await stop(tasks)

    async def _send_loop(self) -> None:
        while True:
            text = await self._out.get()
            await self._socket.send(
                WebSocketSendEvent(type="websocket.send", text=text, bytes=None)
            )

    async def _dispatch_loop(self, subscription: Subscription) -> None:
        async for event in subscription:
            async with self._lock:
                if event is not None and event.channel not in self._channels:
                    continue  # queued before an unsubscribe: no longer wanted
                if event is None:
                    await self._repair()
                elif event.data[:1] == REVOKED:
                    if unpack(event.data).frame.decode() == self._session_id:
                        self._close(CLOSE_SIGNED_OUT)
                        return
                else:
                    await self._delivery.on_event(event)

    async def _end_quiet_answers(self) -> None:
        """Now and then, end from the row answers gone quiet (their done may be lost)."""
        every = self._settings.realtime.sse_heartbeat_s
        while not self._stop.is_set():
            await asyncio.sleep(every)
            async with self._lock:
                await self._delivery.end_quiet(self._done_frame, every)

    async def _receive_loop(self) -> None:
        limit = self._settings.realtime.max_frame_bytes
        while True:
            message = cast(dict[str, Any], await self._socket.receive())
            if message["type"] == "websocket.disconnect":
                return
            raw: str | None = message.get("text")
            if raw is None:
                raw_bytes: bytes = message.get("bytes") or b""
                if len(raw_bytes) > limit:
                    self._close(CLOSE_TOO_BIG)
                    return
                try:
                    raw = raw_bytes.decode()
                except UnicodeDecodeError:
                    raw = ""
            if len(raw) > limit:
                self._close(CLOSE_TOO_BIG)
                return
            if not self._bucket.take():
                self._close(CLOSE_FLOOD)
                return
            await self._handle(raw)

    # -- client frames ----------------------------------------------------

    async def _handle(self, raw: str) -> None:
        try:
            frame = CLIENT_FRAMES.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            await self._error("bad_frame", _frame_type(raw), details=str(exc))
            return
        ref = _tag(frame)
        try:
            await self._dispatch_frame(frame)
        except AppError as exc:
            retry_after = None
            if exc.headers and "Retry-After" in exc.headers:
                retry_after = float(exc.headers["Retry-After"])
            await self._error(exc.code, ref, retry_after=retry_after)
        except Exception as exc:
            if is_dependency_down(exc):
                # An outage, not a bug: the client may retry the frame (a send with the same
                # client_message_id) once the database or Redis is back.
                logger.warning("websocket frame failed", extra={"frame": ref, "error": repr(exc)})
                await self._error("service_unavailable", ref, retry_after=1)
                return
            logger.exception("websocket frame failed", extra={"frame": ref})
            await self._error("internal_error", ref)

    async def _dispatch_frame(self, frame: ClientFrame) -> None:
        if isinstance(frame, Ping):
            await self._send_frame(Pong())
        elif isinstance(frame, Subscribe):
            await self._subscribe(frame.conversation_id)
        elif isinstance(frame, Unsubscribe):
            await self._unsubscribe(frame.conversation_id)
        elif isinstance(frame, Send):
            # Per user, across all of their sockets on every instance; refused before any
            # work, with an error frame (retry_after) and the socket left open.
            await self._limits.enforce(self._limits.rules.ws_send, str(self._user.id))
            await service.get(self._user.id, frame.conversation_id)
            await self._follow(frame.conversation_id)
            await submit(
                self._user.id,
                frame.conversation_id,
                MessageCreate(content=frame.content, client_message_id=frame.client_message_id),
                self._settings.limits.max_content_chars,
                self._bus,
                self._generations,
                budget=TokenBudget.from_settings(self._settings),
            )
        elif isinstance(frame, Cancel):
            await cancel(
                self._user.id, frame.message_id, self._bus, self._generations, self._locale
            )
        elif isinstance(frame, Resume):
            await self._resume(frame.message_id, frame.after_seq)

    async def _follow(self, conversation_id: UUID) -> None:
        if conversation_id in self._conversations or self._subscription is None:
            return
        channel = conversation_channel(conversation_id)
        await self._subscription.add(channel)
        self._conversations.add(conversation_id)
        self._channels.add(channel)

    async def _subscribe(self, conversation_id: UUID) -> None:
        await service.get(self._user.id, conversation_id)  # 404 unless it is the user's
        async with self._lock:
            await self._follow(conversation_id)
            streaming = []
            for message_id in await messages.streaming_ids(conversation_id):
                last = await self._bus.last_seq(message_log(message_id))
                streaming.append(StreamingMessage(message_id=message_id, last_seq=last or 0))
            await self._send_frame(Subscribed(conversation_id=conversation_id, streaming=streaming))

    async def _unsubscribe(self, conversation_id: UUID) -> None:
        async with self._lock:
            if conversation_id in self._conversations and self._subscription is not None:
                channel = conversation_channel(conversation_id)
                await self._subscription.remove(channel)
                self._conversations.discard(conversation_id)
                self._channels.discard(channel)
                self._delivery.drop_channel(channel)
            await self._send_frame(Unsubscribed(conversation_id=conversation_id))

    async def _resume(self, message_id: UUID, after_seq: int) -> None:
        row = await owned_message(self._user.id, message_id)
        conversation_id = row["conversation_id"]
        assert isinstance(conversation_id, UUID)
        async with self._lock:
            # Live first, then the log: whatever is published meanwhile waits in the inbox.
            await self._follow(conversation_id)
            current = await messages.get_message(
                self._user.id, conversation_id, message_id, self._locale
            )
            if current.status != "streaming":
                # Asked for explicitly, so sent again even if this socket saw it already.
                self._delivery.forget(message_id)
                metrics.RESUMES.labels("ws", "ended").inc()
                done = ENCODER.encode(MessageDone(message=current))
                await self._delivery.finish(message_id, done, backfill=False)
                return
            whole = await self._delivery.resume(
                message_id, after_seq, conversation_channel(conversation_id)
            )
            metrics.RESUMES.labels("ws", "ok" if whole else "history_lost").inc()

    async def _repair(self) -> None:
        """After a bus gap: catch up what this socket follows, and pick up answers that
        started in the gap in its subscribed conversations (their ``created`` may be lost)."""
        for conversation_id in list(self._conversations):
            for message_id in await messages.streaming_ids(conversation_id):
                if not self._delivery.is_tracked(message_id):
                    self._delivery.follow(message_id, conversation_channel(conversation_id))
        await self._delivery.repair(self._done_frame)

    async def _done_frame(self, message_id: UUID) -> bytes | None:
        return await ended_frame(message_id, self._locale)


def _is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, RuntimeError) and "after sending 'websocket.close'" in str(exc):
        # uvicorn closed the socket itself (an oversized frame: 1009) and refuses the sender's
        # next frame with this, not with the OSError the ASGI spec asks for.
        return True
    return type(exc).__name__ in {"WebSocketDisconnect", "ClientDisconnected"} or isinstance(
        exc, OSError
    )


def _tag(frame: ClientFrame) -> str:
    return str(type(frame).__struct_config__.tag)


def _frame_type(raw: str) -> str | None:
    """The ``type`` of a frame that failed validation, when it is a known one."""
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        # Absurdly nested JSON is the client's fault: a bad_frame, not a failed socket (1011).
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    return kind if isinstance(kind, str) and kind in KNOWN_TYPES else None
