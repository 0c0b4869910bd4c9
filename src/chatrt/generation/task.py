"""One answer, from prompt to final row: stream, coalesce, log, publish, checkpoint, finish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec

from chatrt.bus.base import EventBus
from chatrt.conversations import service as conversations
from chatrt.conversations.messages import to_message
from chatrt.generation.coalescer import Coalescer
from chatrt.generation.job import Job
from chatrt.generation.prompt import build_prompt
from chatrt.generation.store import Outcome, checkpoint, finish
from chatrt.generation.titles import name_conversation
from chatrt.observability import metrics
from chatrt.providers.base import ProviderError, Started, TextDelta, Usage
from chatrt.providers.chain import ProviderChain
from chatrt.realtime import publish
from chatrt.realtime.channels import (
    DELTA,
    cancel_key,
    conversation_channel,
    lease_key,
    message_log,
    pack,
)
from chatrt.realtime.frames import ENCODER, MessageDelta
from chatrt.settings import Settings

logger = logging.getLogger("chatrt.generation")

DONE_RETRY_PAUSES_S = (0.1, 0.5, 2.0)


class AnswerTooLong(Exception):
    """The model ran past ``max_answer_chars``: a runaway stream must not grow memory."""


class Generation:
    def __init__(
        self,
        job: Job,
        bus: EventBus,
        chain: ProviderChain,
        settings: Settings,
        instance_id: str,
    ) -> None:
        self.job = job
        self._bus = bus
        self._chain = chain
        self._settings = settings.generation
        self._locale = settings.server.default_locale
        self._owner = instance_id
        self._log = message_log(job.message_id)
        self._lease = lease_key(job.message_id)
        self._cancel_flag = cancel_key(job.message_id)
        self._channel = conversation_channel(job.conversation_id)
        self._coalescer = Coalescer(self._emit, self._settings.flush_interval_ms / 1000)
        self._ended_elsewhere = False
        self._main: asyncio.Task[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._released = False
        self.started = False

    async def _emit(self, seq: int, text: str) -> None:
        frame = ENCODER.encode(
            MessageDelta(
                conversation_id=self.job.conversation_id,
                message_id=self.job.message_id,
                seq=seq,
                delta=text,
            )
        )
        with metrics.timed(metrics.BUS_PUBLISH, "append_and_publish"):
            await self._bus.append_and_publish(
                self._log,
                seq,
                self._channel,
                pack(DELTA, frame, self.job.message_id, seq),
                self._settings.stream_log_ttl_s,
            )
        metrics.DELTAS.inc()

    async def _hold_lease(self) -> None:
        """Renew the lease every third of its TTL; never waits on anything but Redis."""
        ttl = self._settings.lease_ttl_s
        while not self._released:
            await asyncio.sleep(ttl / 3)
            if self._released:
                return
            try:
                if not await self._bus.renew_lease(self._lease, self._owner, ttl):
                    # Lapsed (e.g. Redis restarted): take it back unless someone else has it.
                    await self._bus.acquire_lease(self._lease, self._owner, ttl)
                await self._obey_cancel_flag()
            except Exception as exc:
                logger.warning("lease renewal failed", extra={"error": repr(exc)})

    async def _obey_cancel_flag(self) -> None:
        """Stop if a cancel was requested: the flag outlives a cancel signal that was lost."""
        if self._main is not None and await self._bus.flag_raised(self._cancel_flag):
            self._main.cancel()

    async def _checkpoint(self) -> None:
        """Save the text so far every few seconds, so a Redis loss still leaves it readable.

        Kept apart from the lease: waiting for a database connection under load must not
        let the lease lapse.
        """
        saved = ""
        while not self._coalescer.closed:
            await asyncio.sleep(self._settings.checkpoint_interval_s)
            if self._coalescer.closed:
                return
            text = self._coalescer.text
            if text == saved:
                continue
            if not await checkpoint(self.job.message_id, text):
                # Someone ended the row (the sweeper, an orphan cancel): stop here.
                self._ended_elsewhere = True
                if self._main is not None:
                    self._main.cancel()
                return
            saved = text

    async def run(self, cancel_reason: Callable[[], str]) -> None:
        job = self.job
        started = time.perf_counter()
        first_token_at: float | None = None
        usage: Usage | None = None
        provider: str | None = None
        model: str | None = None
        status, error_code = "complete", None
        self.started = True
        self._main = asyncio.current_task()
        stopped_early = False
        room = self._settings.max_answer_chars
        try:
            await self._bus.acquire_lease(self._lease, self._owner, self._settings.lease_ttl_s)
            await self._bus.open_log(self._log, self._settings.stream_log_ttl_s)
            await self._obey_cancel_flag()  # cancelled before this instance took the lease
        except asyncio.CancelledError:
            stopped_early = True  # a Stop during start-up ends the answer like any other
        except Exception as exc:
            # The bus is down: still answer; the row is the record.
            logger.warning("bus unavailable at generation start", extra={"error": repr(exc)})
        # The lease is held until the final row is written, so a slow final write under load
        # never looks like a dead instance to the sweeper.
        self._lease_task = asyncio.create_task(self._hold_lease())
        helpers = [
            asyncio.create_task(self._checkpoint()),
            asyncio.create_task(self._coalescer.tick_forever()),
        ]
        try:
            if stopped_early:
                raise asyncio.CancelledError
            if not await conversations.is_active(job.conversation_id):
                # Deleted between the send's commit and this start: nothing to answer.
                raise asyncio.CancelledError
            prompt = await build_prompt(
                job.conversation_id,
                job.message_index,
                job.system_prompt,
                self._settings.context_budget_chars,
            )
            events = self._chain.stream(prompt, job.model)
            try:
                async for event in events:
                    if isinstance(event, TextDelta):
                        if first_token_at is None:
                            first_token_at = time.perf_counter()
                        if len(event.text) > room:
                            if room:
                                await self._coalescer.add(event.text[:room])
                            raise AnswerTooLong
                        await self._coalescer.add(event.text)
                        room -= len(event.text)
                    elif isinstance(event, Started):
                        provider, model = event.provider, event.model
                    elif isinstance(event, Usage):
                        usage = event
            finally:
                # Closes the upstream HTTP response at once, also on cancel.
                await events.aclose()
        except asyncio.CancelledError:
            status = cancel_reason()
            error_code = "shutdown" if status == "failed" else None
        except ProviderError as exc:
            status = "failed"
            error_code = "all_providers_failed" if first_token_at is None else "provider_failed"
            logger.warning(
                "generation failed",
                extra={"message_id": str(job.message_id), "provider_error": exc.code},
            )
        except AnswerTooLong:
            status, error_code = "failed", "answer_too_long"
            logger.warning(
                "generation stopped at the answer length limit",
                extra={"message_id": str(job.message_id)},
            )
        except Exception:
            logger.exception("generation crashed", extra={"message_id": str(job.message_id)})
            status, error_code = "failed", "internal_error"
        self._coalescer.close()
        for task in helpers:
            task.cancel()
        outcome = Outcome(
            status=status,
            content="",
            ai_model=model,
            provider=provider,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            usage_estimated=usage.estimated if usage else False,
            response_time_ms=_ms(time.perf_counter() - started),
            time_to_first_token_ms=(
                _ms(first_token_at - started) if first_token_at is not None else None
            ),
            error_code=error_code,
        )
        _observe(outcome)
        # From here on the row must leave ``streaming``: a second cancel (a double Stop,
        # shutdown) is absorbed until the final write is done.
        wrap_up = asyncio.ensure_future(self._wrap_up(helpers, outcome))
        while not wrap_up.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(wrap_up)

    async def _wrap_up(self, helpers: list[asyncio.Task[None]], outcome: Outcome) -> None:
        # Bounded: a helper that swallowed its cancel must not hold the answer hostage.
        await asyncio.wait(helpers, timeout=2)
        try:
            if self._ended_elsewhere:
                self._log_end(outcome, recorded=False)
            else:
                await self._write_final(outcome)
        finally:
            await self._let_go()

    async def abandon(self, status: str) -> None:
        """End an answer that never started (cancelled before its first step)."""
        try:
            await self._write_final(
                Outcome(
                    status=status,
                    content="",
                    error_code="shutdown" if status == "failed" else None,
                )
            )
        finally:
            await self._let_go()

    async def _let_go(self) -> None:
        """Stop renewing and drop the lease, whichever way the answer ended."""
        self._released = True
        if self._lease_task is not None:
            self._lease_task.cancel()
        await _quietly(self._bus.release_lease(self._lease, self._owner))

    async def _write_final(self, outcome: Outcome) -> None:
        job = self.job
        await self._coalescer.flush()
        outcome = msgspec.structs.replace(outcome, content=self._coalescer.text)
        row = await finish(job.message_id, outcome)
        self._log_end(outcome, recorded=row is not None)
        if row is None:
            return
        message = to_message(row, self._locale)
        # Retried: subscribers whose bus link stayed up would otherwise wait forever.
        await _quietly(
            _retried(lambda: publish.message_done(self._bus, message, self._coalescer.seq))
        )
        await _quietly(self._bus.expire_log(self._log, self._settings.stream_log_ttl_s))
        if outcome.status == "complete" and job.title is None and job.message_index == 1:
            await _quietly(name_conversation(job, self._chain, outcome.provider, self._bus))
        await _quietly(self._conversation_updated())

    def _log_end(self, outcome: Outcome, *, recorded: bool) -> None:
        """One line per answer: ids, provider, timings and token counts, never the text.

        ``recorded`` is false when another party (the sweeper, a cancel with no owner)
        wrote the final row first; that row's status wins.
        """
        job = self.job
        logger.info(
            "generation ended",
            extra={
                "message_id": str(job.message_id),
                "conversation_id": str(job.conversation_id),
                "user_id": str(job.user_id),
                "provider": outcome.provider,
                "model": outcome.ai_model,
                "status": outcome.status,
                "error_code": outcome.error_code,
                "ttft_ms": outcome.time_to_first_token_ms,
                "response_ms": outcome.response_time_ms,
                "prompt_tokens": outcome.prompt_tokens,
                "completion_tokens": outcome.completion_tokens,
                "tokens_estimated": outcome.usage_estimated,
                "recorded": recorded,
            },
        )

    async def _conversation_updated(self) -> None:
        conversation = await conversations.get(self.job.user_id, self.job.conversation_id)
        await publish.conversation_updated(self._bus, self.job.user_id, conversation)


async def _quietly(step: Awaitable[None]) -> None:
    """Best-effort follow-ups: the row is final; a bus hiccup must not undo that."""
    try:
        await step
    except Exception as exc:
        logger.warning("post-generation step failed", extra={"error": repr(exc)})


def _observe(outcome: Outcome) -> None:
    model, provider = outcome.ai_model or "none", outcome.provider or "none"
    metrics.GENERATIONS.labels(model, provider, outcome.status).inc()
    if outcome.response_time_ms is not None:
        metrics.RESPONSE_TIME.labels(model, provider).observe(outcome.response_time_ms / 1000)
    if outcome.time_to_first_token_ms is not None:
        ttft = outcome.time_to_first_token_ms / 1000
        metrics.TIME_TO_FIRST_TOKEN.labels(model, provider).observe(ttft)
    if outcome.prompt_tokens:
        metrics.TOKENS.labels(model, provider, "prompt").inc(outcome.prompt_tokens)
    if outcome.completion_tokens:
        metrics.TOKENS.labels(model, provider, "completion").inc(outcome.completion_tokens)


async def _retried(step: Callable[[], Awaitable[None]]) -> None:
    """Run ``step``, retrying a bus error a few times over about three seconds."""
    for pause in DONE_RETRY_PAUSES_S:
        try:
            await step()
            return
        except Exception as exc:
            logger.warning("bus step failed, retrying", extra={"error": repr(exc)})
            await asyncio.sleep(pause)
    await step()


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
