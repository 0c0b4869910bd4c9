"""Stopping background tasks without trusting every library to honour a cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

# How long a stop waits for tasks that were told to stop.
STOP_WAIT_S = 5.0


async def stop(tasks: Iterable[asyncio.Task[object]], within_s: float = STOP_WAIT_S) -> None:
    """Cancel ``tasks`` and wait for them, at most ``within_s``.

    Bounded on purpose: a library that turns a cancel into an ordinary error (redis-py can)
    leaves its task running, and an unbounded wait would hold shutdown forever. Loops that
    might swallow a cancel also check a stop flag of their own.
    """
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=within_s)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved
