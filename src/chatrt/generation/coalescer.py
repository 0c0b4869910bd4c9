"""Coalesce provider tokens into deltas: flush at most every interval, at once when large.

The first token after a quiet spell goes out immediately (no added time to first token);
tokens that arrive faster are batched and a ticker flushes them when the interval ends. A
flush that fails (the bus is down) keeps its text pending under the same seq, so the log
never has a gap and the deltas, joined, always equal the text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger("chatrt.generation")

# Flush at once when this much text is waiting, whatever the interval.
MAX_PENDING_CHARS = 2048


class Coalescer:
    def __init__(self, emit: Callable[[int, str], Awaitable[None]], interval_s: float) -> None:
        self._emit = emit
        self._interval = interval_s
        self._pending: list[str] = []
        self._pending_chars = 0
        self._stuck: str | None = None
        self._closed = False
        self._last_flush = 0.0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.seq = 0
        self.flushed: list[str] = []

    @property
    def text(self) -> str:
        """Everything received so far, flushed or not."""
        return "".join(self.flushed) + (self._stuck or "") + "".join(self._pending)

    async def add(self, text: str) -> None:
        self._pending.append(text)
        self._pending_chars += len(text)
        due = time.monotonic() - self._last_flush >= self._interval
        if due or self._pending_chars >= MAX_PENDING_CHARS:
            await self.flush()
        else:
            self._wake.set()

    async def flush(self) -> bool:
        """Emit everything waiting, one seq per chunk; False (text kept) if an emit failed."""
        while self._stuck is not None or self._pending:
            if not await self._flush_one():
                return False
        return True

    async def _flush_one(self) -> bool:
        async with self._lock:
            if self._stuck is None:
                if not self._pending:
                    return True
                # Frozen until it lands: a retry must resend exactly what a lost reply may
                # already have written under this seq.
                self._stuck = "".join(self._pending)
                self._pending.clear()
                self._pending_chars = 0
            text = self._stuck
            try:
                await self._emit(self.seq + 1, text)
            except ValueError:
                pass  # the log already holds this seq: an earlier try landed
            except Exception as exc:  # the bus is down; redis-py has its own error classes
                logger.warning("delta not published, will retry", extra={"error": repr(exc)})
                return False
            self.seq += 1
            self.flushed.append(text)
            self._stuck = None
            self._last_flush = time.monotonic()
            return True

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop the ticker; pending text is left for a last :meth:`flush`."""
        self._closed = True
        self._wake.set()

    async def tick_forever(self) -> None:
        """Flush batched text when its interval ends; run as a task beside the reader.

        Ends on :meth:`close`, not only on cancel: a cancel that lands inside a Redis call
        can come back as a timeout error, which must not leave the ticker running.
        """
        while not self._closed:
            await self._wake.wait()
            if self._closed:
                return
            self._wake.clear()
            delay = self._last_flush + self._interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not await self.flush():
                await asyncio.sleep(self._interval)
                self._wake.set()
