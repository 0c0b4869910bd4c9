"""Waiting on conditions with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio


async def wait_until(
    check: Callable[[], Awaitable[bool]], within_s: float = 10.0, every_s: float = 0.02
) -> None:
    """Poll ``check`` until it is true; fail with TimeoutError after ``within_s``."""
    with anyio.fail_after(within_s):
        while not await check():  # noqa: ASYNC110 - polling state another process owns
            await anyio.sleep(every_s)


def poll_until(check: Callable[[], bool], within_s: float = 10.0, every_s: float = 0.05) -> None:
    """The blocking twin of :func:`wait_until`, for synchronous tests and helpers."""
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {within_s} s")
        time.sleep(every_s)
