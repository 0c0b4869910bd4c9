"""The Redis client every part of an instance shares (pub/sub keeps a link of its own)."""

from __future__ import annotations

import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from chatrt.settings import RedisSettings


def connect(settings: RedisSettings) -> aredis.Redis:
    """A client whose pool waits for a free connection rather than failing at once.

    redis-py's default pool raises as soon as it is full; under a burst of answers that is a
    failed publish, which is a lost delta. Here a burst waits, up to the command timeout.
    """
    assert settings.url is not None
    pool = aredis.BlockingConnectionPool.from_url(
        settings.url,
        max_connections=settings.max_connections,
        timeout=settings.timeout_s,
        health_check_interval=30,
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        # One quick retry (a dropped idle connection), not redis-py's default ten with
        # backoff, which would stretch a dead link's timeout to about a minute.
        retry=Retry(NoBackoff(), 1),
    )
    return aredis.Redis.from_pool(pool)
