"""Rate limits hold exactly across two real ``chatrt serve`` processes sharing Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests.conftest import Backend
from tests.multi.conftest import ClientOn
from tests.support.client import Client
from tests.support.instances import Instance
from tests.support.ratelimit import assert_rate_limited, from_ip

pytestmark = [pytest.mark.multi, pytest.mark.anyio]

IP_LIMIT = 20
USER_LIMIT = 15


@pytest.fixture
def cluster(postgres_backend: Backend, tmp_path: Path) -> Iterator[tuple[Instance, Instance]]:
    env = postgres_backend.defaults | postgres_backend.env
    env |= {
        "CHATRT_RATE_LIMIT_IP_PER_WINDOW": str(IP_LIMIT),
        "CHATRT_RATE_LIMIT_USER_PER_WINDOW": str(USER_LIMIT),
    }
    a, b = Instance(env, tmp_path, "a"), Instance(env, tmp_path, "b")
    with a, b:
        yield a, b


async def _all_at_once(
    clients: list[Client], path: str, count: int, headers: list[dict[str, str]]
) -> list[httpx.Response]:
    """``count`` concurrent GETs, alternating between the clients (and so the instances)."""
    responses: list[httpx.Response] = []

    async def one(n: int) -> None:
        responses.append(await clients[n % len(clients)].get(path, headers=headers[n]))

    async with anyio.create_task_group() as group:
        for n in range(count):
            group.start_soon(one, n)
    return responses


async def test_the_per_ip_limit_is_exact_across_instances(
    cluster: tuple[Instance, Instance], client_on: ClientOn
) -> None:
    a, b = cluster
    clients = [client_on(a), client_on(b)]
    # Relayed by a proxy on loopback (trusted by default) for one client address.
    responses = await _all_at_once(
        clients, "/api/auth/me", 3 * IP_LIMIT, [from_ip("203.0.113.10")] * (3 * IP_LIMIT)
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(401) == IP_LIMIT, "exactly the limit passed, on both together"
    assert statuses.count(429) == 2 * IP_LIMIT
    remaining = sorted(
        int(r.headers["ratelimit-remaining"]) for r in responses if r.status_code == 401
    )
    assert remaining == list(range(IP_LIMIT)), "every passed request took its own slot"
    for response in responses:
        if response.status_code == 429:
            assert_rate_limited(response, "ip", IP_LIMIT)
    # Both instances refuse that address now, and both serve another one.
    for client in clients:
        assert (
            await client.get("/api/auth/me", headers=from_ip("203.0.113.10"))
        ).status_code == 429
        assert (
            await client.get("/api/auth/me", headers=from_ip("203.0.113.11"))
        ).status_code == 401


async def test_the_per_user_limit_is_exact_across_instances(
    cluster: tuple[Instance, Instance], client_on: ClientOn
) -> None:
    a, b = cluster
    on_a = client_on(a)
    await on_a.register()
    on_b = client_on(b)
    on_b.sign_in_as(on_a)
    # A fresh address for every request, so only the user limit can bite.
    count = 3 * USER_LIMIT
    addresses = [from_ip(f"198.51.100.{n + 1}") for n in range(count)]
    responses = await _all_at_once([on_a, on_b], "/api/conversations", count, addresses)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == USER_LIMIT
    assert statuses.count(429) == count - USER_LIMIT
    for response in responses:
        if response.status_code == 429:
            assert_rate_limited(response, "user", USER_LIMIT)
        else:
            assert response.headers["ratelimit-limit"] == str(USER_LIMIT)
            assert response.headers["ratelimit-policy"] == f"{USER_LIMIT};w=60, {IP_LIMIT};w=60"


async def test_a_real_server_ignores_forwarded_for_from_an_untrusted_peer(
    postgres_backend: Backend, tmp_path: Path, client_on: ClientOn
) -> None:
    env = postgres_backend.defaults | postgres_backend.env
    env |= {
        "CHATRT_RATE_LIMIT_IP_PER_WINDOW": "3",
        "CHATRT_TRUSTED_PROXIES": "none",
        # uvicorn's own proxy handling is off under chatrt serve; were it on, this would
        # make it believe any peer.
        "FORWARDED_ALLOW_IPS": "*",
    }
    with Instance(env, tmp_path, "untrusting") as instance:
        client = client_on(instance)
        for n in range(3):
            forged = from_ip(f"203.0.113.{n}")
            assert (await client.get("/api/auth/me", headers=forged)).status_code == 401
        over = await client.get("/api/auth/me", headers=from_ip("203.0.113.77"))
        assert_rate_limited(over, "ip", 3)
