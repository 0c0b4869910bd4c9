"""Ends answers whose generating instance died: every instance runs one.

A generation holds a lease it renews every few seconds. A ``streaming`` message older than
two lease periods whose lease is gone on two sweeps in a row is ended ``failed`` with the
text in its log (or its last checkpoint), and its subscribers get ``message.done``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

import msgspec

from chatrt.bus.base import EventBus
from chatrt.clock import utcnow
from chatrt.conversations.messages import to_message
from chatrt.errors import is_dependency_down
from chatrt.generation.store import Outcome, finish, stale_streaming
from chatrt.realtime import publish
from chatrt.realtime.channels import lease_key, message_log, unpack
from chatrt.realtime.frames import MessageDelta
from chatrt.settings import Settings
from chatrt.tasks import stop

logger = logging.getLogger("chatrt.sweeper")
_DELTA = msgspec.json.Decoder(MessageDelta)


async def logged_text(bus: EventBus, message_id: UUID) -> str | None:
    """The text the log holds for a message, or None without a log."""
    entries = await bus.read_log(message_log(message_id), 0)
    if entries is None:
        return None
    return "".join(_DELTA.decode(unpack(entry.data).frame).delta for entry in entries)


class Sweeper:
    def __init__(self, bus: EventBus, settings: Settings) -> None:
        self._bus = bus
        self._settings = settings
        self._suspects: set[UUID] = set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def sweep_once(self) -> int:
        """One pass; how many messages it ended."""
        lease_ttl = self._settings.generation.lease_ttl_s
        rows = await stale_streaming(utcnow() - timedelta(seconds=2 * lease_ttl))
        suspects: set[UUID] = set()
        ended = 0
        for row in rows:
            try:
                ended += await self._end_if_orphaned(row, suspects)
            except Exception as exc:
                if is_dependency_down(exc):
                    raise  # the rest of the pass would fail the same way
                # One row that cannot be ended must not keep every orphan after it streaming.
                logger.exception(
                    "could not end an orphaned answer", extra={"message_id": str(row["id"])}
                )
        self._suspects = suspects
        return ended

    async def _end_if_orphaned(self, row: dict[str, Any], suspects: set[UUID]) -> int:
        """End one stale row whose generation is gone (seen twice, no lease); 1 if it ended."""
        message_id: UUID = row["id"]
        if await self._bus.lease_holder(lease_key(message_id)) is not None:
            return 0
        if message_id not in self._suspects:
            suspects.add(message_id)  # seen once; a second pass confirms
            return 0
        text = await logged_text(self._bus, message_id)
        content = text if text is not None and len(text) >= len(row["content"]) else None
        outcome = Outcome(
            status="failed",
            content=content if content is not None else row["content"],
            error_code="instance_lost",
        )
        finished = await finish(message_id, outcome)
        if finished is None:
            return 0
        logger.warning("ended an orphaned answer", extra={"message_id": str(message_id)})
        message = to_message(finished, self._settings.server.default_locale)
        await publish.message_done(self._bus, message)
        return 1

    async def run_forever(self) -> None:
        while not self._closing:  # redis-py can turn a cancel into an ordinary error
            await asyncio.sleep(self._settings.generation.sweep_interval_s)
            try:
                await self.sweep_once()
            except Exception as exc:
                if is_dependency_down(exc):
                    # Expected while PostgreSQL or Redis is away; the next pass retries. A
                    # traceback every interval on every instance would only bury the outage.
                    logger.warning("sweep failed, will retry: %s", type(exc).__name__)
                else:
                    logger.exception("sweep failed")

    async def __aenter__(self) -> Sweeper:
        self._task = asyncio.create_task(self.run_forever(), name="sweeper")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        if self._task is not None:
            await stop([self._task])
