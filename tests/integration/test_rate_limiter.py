"""One contract, two rate limiters: the same tests on the in-process and the Redis one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import anyio
import pytest
import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from chatrt.ratelimit.base import Decision, RateLimiter, Rule
from chatrt.ratelimit.memory import MemoryRateLimiter
from chatrt.ratelimit.redis import RedisRateLimiter
from tests.support.servers import RedisServer, free_port
from tests.support.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

# A factory of limiters that share one count, as the instances of one deployment do.
Limiters = Callable[[], RateLimiter]


@pytest.fixture(params=["memory", "redis"])
async def limiters(request: pytest.FixtureRequest) -> AsyncIterator[Limiters]:
    if request.param == "memory":
        shared = MemoryRateLimiter()  # one process: one dict is the shared count
        yield lambda: shared
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    clients: list[aredis.Redis] = []

    def new() -> RateLimiter:
        # A client of its own, like each instance's.
        clients.append(aredis.from_url(server.url()))
        return RedisRateLimiter(clients[-1])

    yield new
    for client in clients:
        await client.aclose()


def _rule(limit: int, window_s: float = 60.0) -> Rule:
    return Rule(f"test{uuid.uuid4().hex[:8]}", limit, window_s)


async def _hits(limiter: RateLimiter, rule: Rule, identity: str, count: int) -> list[Decision]:
    decisions: list[Decision] = []

    async def one() -> None:
        decision = await limiter.hit(rule, identity)
        assert decision is not None
        decisions.append(decision)

    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(one)
    return decisions


async def test_concurrent_hits_from_two_limiters_allow_exactly_the_limit(
    limiters: Limiters,
) -> None:
    rule = _rule(25)
    first, second = limiters(), limiters()
    results: list[list[Decision]] = [[], []]

    async def run(index: int, limiter: RateLimiter) -> None:
        results[index] = await _hits(limiter, rule, "client-a", 40)

    async with anyio.create_task_group() as group:
        group.start_soon(run, 0, first)
        group.start_soon(run, 1, second)
    decisions = results[0] + results[1]
    assert sum(d.allowed for d in decisions) == 25
    assert sum(not d.allowed for d in decisions) == 55
    # Each allowed hit saw a different count: remaining runs 24 down to 0 exactly once each.
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(25))
    assert all(d.remaining == 0 and 1 <= d.reset_s <= 60 for d in decisions if not d.allowed)
    refused = next(d for d in decisions if not d.allowed)
    assert refused.headers()["Retry-After"] == str(refused.reset_s)
    assert refused.headers()["RateLimit-Policy"] == "25;w=60"


async def test_identities_and_rules_count_apart(limiters: Limiters) -> None:
    limiter = limiters()
    rule, other_rule = _rule(2), _rule(2)
    assert [d.allowed for d in await _hits(limiter, rule, "a", 3)].count(True) == 2
    assert [d.allowed for d in await _hits(limiter, rule, "b", 2)] == [True, True]
    assert [d.allowed for d in await _hits(limiter, other_rule, "a", 2)] == [True, True]


async def test_the_window_ends_and_refused_hits_do_not_stretch_it(limiters: Limiters) -> None:
    limiter = limiters()
    rule = _rule(2, window_s=0.6)
    assert [d.allowed for d in await _hits(limiter, rule, "a", 3)].count(True) == 2

    async def allowed_again() -> bool:
        # Knocking all the time: were refused hits to extend the window, this never passes.
        decision = await limiter.hit(rule, "a")
        assert decision is not None
        return decision.allowed

    await wait_until(allowed_again, within_s=5, every_s=0.05)
    decision = await limiter.hit(rule, "a")
    assert decision is not None
    assert decision.allowed, "a fresh window allows the limit again"
    assert decision.remaining == 0


async def test_an_unreachable_redis_lets_hits_through() -> None:
    client = aredis.from_url(
        f"redis://127.0.0.1:{free_port()}/0",
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        assert await RedisRateLimiter(client).hit(_rule(1), "a") is None
    finally:
        await client.aclose()
