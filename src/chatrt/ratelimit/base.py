"""Fixed-window counters behind one interface; Redis (shared) and memory (one process).

A window opens at an identity's first hit and lasts ``window_s``. Within it the first
``limit`` hits are allowed and every later one is refused, however many instances count:
each hit is one atomic increment. Refused hits are counted too but never stretch the window,
so a client that keeps knocking is let in again when the window ends.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

# What a browser script on another allowed origin may read (CORS exposes none by default).
EXPOSED_HEADERS = (
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
)


@dataclass(frozen=True)
class Rule:
    """``limit`` hits per ``window_s`` for each identity; ``scope`` names it in keys and metrics."""

    scope: str
    limit: int
    window_s: float

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    @property
    def window_ms(self) -> int:
        return max(1, round(self.window_s * 1000))

    @property
    def policy(self) -> str:
        """This rule in ``RateLimit-Policy`` syntax (window in whole seconds)."""
        return f"{self.limit};w={math.ceil(self.window_s)}"


@dataclass(frozen=True)
class Decision:
    """The outcome of one hit: allowed or not, and what is left of the window."""

    rule: Rule
    allowed: bool
    remaining: int
    reset_s: int  # whole seconds until the window ends; at least 1

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.rule.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": self.rule.policy,
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_s)
        return headers


class RateLimiter(ABC):
    """Counts hits per (rule, identity) window; the storage behind every limit."""

    async def hit(self, rule: Rule, identity: str) -> Decision | None:
        """Count one hit and decide it; None when the count could not be taken.

        None (the store is unreachable) means "let it through": a Redis outage must not
        take the whole API down with it. Implementations log that case.
        """
        key = f"chatrt:rl:{rule.scope}:{rule.window_ms}:{identity}"
        counted = await self._count(key, rule.window_ms)
        if counted is None:
            return None
        count, ttl_ms = counted
        return Decision(
            rule=rule,
            allowed=count <= rule.limit,
            remaining=max(0, rule.limit - count),
            reset_s=max(1, math.ceil(ttl_ms / 1000)),
        )

    @abstractmethod
    async def _count(self, key: str, window_ms: int) -> tuple[int, int] | None:
        """Atomically add one to ``key``'s window (opening a new one of ``window_ms`` if none
        is open); the count so far and the window's milliseconds left, or None if the store
        is unreachable."""
