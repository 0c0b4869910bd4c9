"""The app-owned generation tasks of one instance, and cancel signals between instances.

A generation belongs to the application, not to the request or socket that started it: a
client that goes away does not stop it. Cancel is a message on the control channel that
every instance hears; the one running the generation stops it. On shutdown the runner waits
up to the grace period, then cancels what is left; a cancelled generation still writes its
final row (``cancelled``, or ``failed`` on shutdown, text kept), so nothing stays
``streaming``.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from uuid import UUID

import msgspec

from chatrt.bus.base import EventBus
from chatrt.generation.job import Job
from chatrt.generation.task import Generation
from chatrt.observability import metrics
from chatrt.providers.chain import ProviderChain
from chatrt.realtime.channels import (
    CONTROL,
    CONTROL_DECODER,
    CancelSignal,
    cancel_key,
    lease_key,
)
from chatrt.settings import Settings
from chatrt.tasks import stop

logger = logging.getLogger("chatrt.generation")

# A cancel flag lives this many lease TTLs: the owner checks it at every renewal (a third).
CANCEL_FLAG_LEASES = 4


class GenerationRunner:
    def __init__(
        self, bus: EventBus, chain: ProviderChain, settings: Settings, instance_id: str
    ) -> None:
        self._bus = bus
        self._chain = chain
        self._settings = settings
        self.instance_id = instance_id
        self._tasks: dict[UUID, tuple[asyncio.Task[None], UUID]] = {}
        self._reasons: dict[UUID, str] = {}
        self._listener: asyncio.Task[None] | None = None
        self._cleanups: set[asyncio.Task[None]] = set()
        self.closing = False

    @property
    def active(self) -> int:
        return len(self._tasks)

    def start(self, job: Job) -> None:
        """Run ``job`` in the background; returns at once."""
        generation = Generation(job, self._bus, self._chain, self._settings, self.instance_id)
        task = asyncio.create_task(
            generation.run(lambda: self._reasons.pop(job.message_id, "cancelled")),
            name=f"generation:{job.message_id}",
        )
        self._tasks[job.message_id] = (task, job.conversation_id)
        metrics.GENERATIONS_ACTIVE.inc()
        task.add_done_callback(lambda done: self._on_done(generation, done))

    def _on_done(self, generation: Generation, task: asyncio.Task[None]) -> None:
        message_id = generation.job.message_id
        self._tasks.pop(message_id, None)
        metrics.GENERATIONS_ACTIVE.dec()
        reason = self._reasons.pop(message_id, "cancelled")
        if task.cancelled() and not generation.started:
            # Cancelled before its first step, so ``run`` never ran: end the row here.
            cleanup = asyncio.create_task(generation.abandon(reason))
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)

    def cancel_local(self, message_id: UUID, reason: str = "cancelled") -> bool:
        """Stop a generation running here; it ends with status ``reason``. False if not here."""
        entry = self._tasks.get(message_id)
        if entry is None:
            return False
        self._reasons[message_id] = reason
        entry[0].cancel()
        return True

    async def request_cancel(self, message_id: UUID) -> None:
        """Cancel wherever the generation runs: here directly, elsewhere via the bus.

        The signal is fast but at most once; the flag is what makes it certain: the owner
        checks it at start, at every lease renewal and after a bus gap.
        """
        if not self.cancel_local(message_id):
            ttl = self._settings.generation.lease_ttl_s * CANCEL_FLAG_LEASES
            await self._bus.set_flag(cancel_key(message_id), ttl)
            await self._bus.publish(CONTROL, msgspec.json.encode(CancelSignal(message_id)))

    async def cancel_conversation(self, conversation_id: UUID, message_ids: list[UUID]) -> None:
        for message_id in message_ids:
            await self.request_cancel(message_id)
        for message_id, (_, owner) in list(self._tasks.items()):
            if owner == conversation_id:
                self.cancel_local(message_id)

    async def owner_of(self, message_id: UUID) -> str | None:
        return await self._bus.lease_holder(lease_key(message_id))

    async def wait_idle(self, within_s: float) -> bool:
        """Wait until no generation runs here; False on timeout."""
        tasks = [task for task, _ in self._tasks.values()]
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=within_s)
        return not pending

    async def _listen_for_cancels(self) -> None:
        """Hear cancel signals for as long as the app runs, whatever goes wrong."""
        backoff = 0.05
        # Not ``while True``: redis-py can turn a cancel into a connection error, and a
        # listener that restarted itself then would hold shutdown forever.
        while not self.closing:
            try:
                await self._hear_cancels()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("cancel listener failed, restarting", extra={"error": repr(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                await self._check_cancel_flags()

    async def _hear_cancels(self) -> None:
        async with self._bus.subscribe() as subscription:
            await subscription.add(CONTROL)
            async for event in subscription:
                if event is None:
                    await self._check_cancel_flags()  # a signal may be among what was lost
                    continue
                try:
                    signal = CONTROL_DECODER.decode(event.data)
                except msgspec.DecodeError:
                    logger.warning("ignored a malformed control message")
                    continue
                self.cancel_local(signal.message_id)

    async def _check_cancel_flags(self) -> None:
        for message_id in list(self._tasks):
            try:
                if await self._bus.flag_raised(cancel_key(message_id)):
                    self.cancel_local(message_id)
            except Exception as exc:
                logger.warning("cancel flag check failed", extra={"error": repr(exc)})
                return

    async def __aenter__(self) -> GenerationRunner:
        self._listener = asyncio.create_task(self._listen_for_cancels(), name="cancel-listener")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.closing = True
        grace = self._settings.server.shutdown_grace_s
        if not await self.wait_idle(grace):
            for message_id in list(self._tasks):
                self.cancel_local(message_id, reason="failed")
            await self.wait_idle(grace)
        if self._cleanups:
            await asyncio.wait(self._cleanups, timeout=grace)
        if self._listener is not None:
            await stop([self._listener])
