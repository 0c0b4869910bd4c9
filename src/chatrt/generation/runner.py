"""The app-owned generation tasks.

A generation belongs to the application, not to the request or socket that started it: a
client that goes away does not stop it. On shutdown the runner waits up to the grace period,
then cancels what is left; a cancelled generation still writes its final row (status
``cancelled`` or ``failed``, partial text kept), so nothing stays ``streaming``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType
from uuid import UUID

import msgspec

from chatrt.generation.prompt import build_prompt
from chatrt.generation.store import Outcome, finish
from chatrt.providers.base import Provider, ProviderError, TextDelta, Usage

logger = logging.getLogger("chatrt.generation")


class Job(msgspec.Struct, frozen=True, kw_only=True):
    conversation_id: UUID
    message_id: UUID
    message_index: int
    system_prompt: str | None
    model: str | None


class GenerationRunner:
    def __init__(self, providers: list[Provider], context_budget_chars: int, grace_s: float):
        self._providers = providers
        self._budget = context_budget_chars
        self._grace = grace_s
        self._tasks: dict[UUID, tuple[asyncio.Task[None], UUID]] = {}
        self._cancel_reasons: dict[UUID, str] = {}
        self._closing = False

    @property
    def active(self) -> int:
        return len(self._tasks)

    def start(self, job: Job) -> None:
        """Run ``job`` in the background; returns at once."""
        task = asyncio.create_task(self._run(job), name=f"generation:{job.message_id}")
        self._tasks[job.message_id] = (task, job.conversation_id)
        task.add_done_callback(lambda _: self._tasks.pop(job.message_id, None))

    def cancel(self, message_id: UUID, reason: str = "cancelled") -> bool:
        """Stop a generation running here; it ends with status ``reason``. False if not here."""
        entry = self._tasks.get(message_id)
        if entry is None:
            return False
        self._cancel_reasons[message_id] = reason
        entry[0].cancel()
        return True

    def cancel_conversation(self, conversation_id: UUID) -> None:
        for message_id, (_, owner) in list(self._tasks.items()):
            if owner == conversation_id:
                self.cancel(message_id)

    async def wait_idle(self, within_s: float) -> bool:
        """Wait until no generation runs here; False on timeout."""
        tasks = [task for task, _ in self._tasks.values()]
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=within_s)
        return not pending

    async def __aenter__(self) -> GenerationRunner:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        if not await self.wait_idle(self._grace):
            for message_id in list(self._tasks):
                self.cancel(message_id, reason="failed")
            await self.wait_idle(self._grace)

    async def _run(self, job: Job) -> None:
        started = time.perf_counter()
        first_token_at: float | None = None
        parts: list[str] = []
        usage: Usage | None = None
        provider = self._providers[0]
        status, error_code = "complete", None
        try:
            prompt = await build_prompt(
                job.conversation_id, job.message_index, job.system_prompt, self._budget
            )
            async for event in provider.stream(prompt):
                if isinstance(event, TextDelta):
                    if first_token_at is None:
                        first_token_at = time.perf_counter()
                    parts.append(event.text)
                elif isinstance(event, Usage):
                    usage = event
        except asyncio.CancelledError:
            status = self._cancel_reasons.pop(job.message_id, "cancelled")
            error_code = "shutdown" if status == "failed" else None
        except ProviderError as exc:
            status, error_code = "failed", exc.code
        except Exception:
            logger.exception("generation crashed", extra={"message_id": str(job.message_id)})
            status, error_code = "failed", "internal_error"
        outcome = Outcome(
            status=status,
            content="".join(parts),
            ai_model=provider.model,
            provider=provider.name,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            response_time_ms=_ms(time.perf_counter() - started),
            time_to_first_token_ms=_ms(first_token_at - started) if first_token_at else None,
            error_code=error_code,
        )
        # Shielded: a cancel must not stop the row from leaving ``streaming``.
        await asyncio.shield(finish(job.message_id, outcome))


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
