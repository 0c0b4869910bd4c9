"""In-process windows for the embedded default (one process, so one dict is exact)."""

from __future__ import annotations

import time
from collections.abc import Callable

from chatrt.ratelimit.base import RateLimiter

SWEEP_EVERY_S = 60.0


class MemoryRateLimiter(RateLimiter):
    """Windows in a dict; ended ones are dropped about once a minute, so it stays small."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[int, float]] = {}
        self._next_sweep = clock() + SWEEP_EVERY_S

    async def _count(self, key: str, window_ms: int) -> tuple[int, int] | None:
        # No await in here: on one event loop this read-modify-write is atomic.
        now = self._clock()
        count, ends = self._windows.get(key, (0, now))
        if ends <= now:
            count, ends = 0, now + window_ms / 1000
        count += 1
        self._windows[key] = (count, ends)
        if now >= self._next_sweep:
            self._windows = {k: w for k, w in self._windows.items() if w[1] > now}
            self._next_sweep = now + SWEEP_EVERY_S
        return count, max(0, round((ends - now) * 1000))
