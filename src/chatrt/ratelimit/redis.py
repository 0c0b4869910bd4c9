"""Windows in Redis, shared by every instance: one Lua script per hit, so no two instances
can both take the last slot."""

from __future__ import annotations

import logging
import time

import redis.asyncio as aredis
from redis.exceptions import RedisError

from chatrt.ratelimit.base import RateLimiter

logger = logging.getLogger("chatrt.ratelimit")

# INCR, then give the key its window if it has none (a new window). PTTL rather than
# "count == 1" also repairs a key that somehow lost its expiry, so none lives forever.
_HIT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""
WARN_EVERY_S = 10.0


class RedisRateLimiter(RateLimiter):
    """Counts in the app's Redis; when Redis fails, requests pass (and a warning is logged)."""

    def __init__(self, client: aredis.Redis) -> None:
        self._hit = client.register_script(_HIT)
        self._warned_at = -WARN_EVERY_S

    async def _count(self, key: str, window_ms: int) -> tuple[int, int] | None:
        try:
            count, ttl_ms = await self._hit(keys=[key], args=[window_ms])
        except (RedisError, OSError) as error:
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                logger.warning("rate limit not checked", extra={"error": repr(error)})
            return None
        return int(count), int(ttl_ms)
