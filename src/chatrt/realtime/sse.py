"""``GET .../messages/{message_id}/stream?after_seq=N``: one answer as Server-Sent Events.

The same ``message.delta`` and ``message.done`` frames as the WebSocket, from seq N+1, with
the same live-first-then-log resume; the stream ends after ``message.done``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, Parameter
from litestar.response import Stream

from chatrt.auth.guards import SESSION_REQUIRED
from chatrt.auth.schemas import UserOut
from chatrt.bus.base import Event, EventBus
from chatrt.conversations import messages
from chatrt.errors import error_responses, localize, preferred_locale
from chatrt.observability import metrics
from chatrt.realtime.channels import DELTA, DONE, conversation_channel, unpack
from chatrt.realtime.delivery import Delivery
from chatrt.realtime.ended import ended_frame
from chatrt.realtime.frames import ENCODER, ErrorFrame, MessageDone
from chatrt.settings import Settings

AfterSeq = Annotated[int, Parameter(ge=0, le=2**31 - 1, description="Last seq already seen.")]


# JSON leaves these raw, and SSE readers that split lines like ``str.splitlines`` (httpx's
# ``aiter_lines`` among them) would cut a data line at them; escaped, the JSON is the same.
_LINE_BREAKS = (
    (b"\xc2\x85", b"\\u0085"),
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
)


def _event(name: str, frame: bytes) -> bytes:
    for raw, escaped in _LINE_BREAKS:
        frame = frame.replace(raw, escaped)
    return b"event: " + name.encode() + b"\ndata: " + frame + b"\n\n"


@get(
    "/api/conversations/{conversation_id:str}/messages/{message_id:str}/stream",
    tags=["messages"],
    security=SESSION_REQUIRED,
    summary="Stream one answer as Server-Sent Events (message.delta, then message.done)",
    media_type="text/event-stream",
    responses=error_responses(400, 401, 404, 422),
)
async def stream_message(
    request: Request[UserOut, Any, Any],
    conversation_id: FromPath[UUID],
    message_id: FromPath[UUID],
    settings: NamedDependency[Settings],
    bus: NamedDependency[EventBus],
    after_seq: FromQuery[AfterSeq] = 0,
) -> Stream:
    locale = preferred_locale(
        request.headers.get("accept-language"), settings.server.default_locale
    )
    # Checked before the stream starts, so a foreign or missing id is a plain 404.
    await messages.get_message(request.user.id, conversation_id, message_id, locale)

    async def events() -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def send(frame: bytes) -> None:
            name = "message.done" if b'"type":"message.done"' in frame[:40] else "message.delta"
            queue.put_nowait(_event(name, frame))

        async def history_lost(lost: UUID) -> None:
            error = ErrorFrame(
                code="stream_history_lost",
                message=localize("stream_history_lost", locale),
                ref="resume",
                message_id=lost,
            )
            queue.put_nowait(_event("error", ENCODER.encode(error)))

        async def ended(message: UUID) -> bytes | None:
            return await ended_frame(message, locale)

        delivery = Delivery(bus, send, history_lost)
        async with bus.subscribe() as subscription:
            await subscription.add(conversation_channel(conversation_id))
            latest = await messages.get_message(
                request.user.id, conversation_id, message_id, locale
            )
            if latest.status != "streaming":
                metrics.RESUMES.labels("sse", "ended").inc()
                await delivery.finish(
                    message_id, ENCODER.encode(MessageDone(message=latest)), False
                )
            else:
                whole = await delivery.resume(
                    message_id, after_seq, conversation_channel(conversation_id)
                )
                metrics.RESUMES.labels("sse", "ok" if whole else "history_lost").inc()
            feed = subscription.__aiter__()
            # One pending read survives heartbeats: cancelling the feed's generator on a
            # timeout would end it for good.
            next_event: asyncio.Future[Event | None] | None = None
            try:
                while not delivery.is_finished(message_id) or not queue.empty():
                    while not queue.empty():
                        item = queue.get_nowait()
                        if item is not None:
                            yield item
                    if delivery.is_finished(message_id):
                        break
                    if next_event is None:
                        next_event = asyncio.ensure_future(feed.__anext__())
                    done, _ = await asyncio.wait(
                        {next_event}, timeout=settings.realtime.sse_heartbeat_s
                    )
                    if not done:
                        yield b": keep-alive\n\n"
                        # A message.done whose publish failed leaves no gap: ask the row.
                        await delivery.end_quiet(ended, settings.realtime.sse_heartbeat_s)
                        continue
                    event, next_event = next_event.result(), None
                    if event is None:
                        # message.done may be among what was lost: the row knows.
                        await delivery.repair(ended)
                        continue
                    envelope = unpack(event.data)
                    if envelope.message_id == message_id and envelope.kind in (DELTA, DONE):
                        await delivery.on_event(event)
            finally:
                if next_event is not None:
                    next_event.cancel()

    return Stream(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
