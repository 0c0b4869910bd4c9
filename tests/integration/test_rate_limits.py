"""HTTP rate limits in one app: per IP, per user, sign-in throttles, trusted proxies.

On both backends: the memory limiter (SQLite, the embedded default) and the Redis one.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import REGISTRY

from chatrt.settings import Settings
from tests.conftest import Backend
from tests.support.client import PASSWORD, Client, new_email
from tests.support.ratelimit import assert_rate_limited, from_ip
from tests.support.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Serve = Callable[[Settings], AbstractAsyncContextManager[Callable[[], Client]]]


def refused(scope: str) -> float:
    return REGISTRY.get_sample_value("chatrt_rate_limited_total", {"scope": scope}) or 0.0


async def test_per_ip_limit_with_headers_and_exclusions(backend: Backend, serve: Serve) -> None:
    settings = backend.settings(CHATRT_RATE_LIMIT_IP_PER_WINDOW="3")
    async with serve(settings) as new_client:
        client = new_client()
        before = refused("ip")
        passed = [await client.get("/api/auth/me") for _ in range(3)]
        # 401s count: they passed the limit (no signed-in user here).
        assert [r.status_code for r in passed] == [401, 401, 401]
        assert [r.headers["ratelimit-remaining"] for r in passed] == ["2", "1", "0"]
        assert all(r.headers["ratelimit-limit"] == "3" for r in passed)
        assert all(r.headers["ratelimit-policy"] == "3;w=60" for r in passed)
        assert all(1 <= int(r.headers["ratelimit-reset"]) <= 60 for r in passed)
        assert "retry-after" not in passed[0].headers
        over = await client.get("/api/auth/me")
        assert_rate_limited(over, "ip", 3)
        assert over.headers["x-content-type-options"] == "nosniff", "the outer layers still run"
        # Unknown routes count too: a scanner gets no free requests.
        assert_rate_limited(await client.get("/no/such/route"), "ip", 3)
        english = await client.get("/api/auth/me", headers={"accept-language": "en"})
        assert english.json()["error"]["message"] == "Too many requests; slow down."
        assert refused("ip") - before == 3
        # Probes and scrapes are never limited.
        for _ in range(5):
            assert (await client.get("/health/live")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200
        assert "ratelimit-limit" not in (await client.get("/health/live")).headers
        # Another client address has its own count.
        other = await client.get("/api/auth/me", headers=from_ip("203.0.113.5"))
        assert other.status_code == 401
        assert other.headers["ratelimit-remaining"] == "2"


async def test_per_user_limit_spans_sessions_and_headers_show_the_tighter_limit(
    backend: Backend, serve: Serve
) -> None:
    settings = backend.settings(
        CHATRT_RATE_LIMIT_IP_PER_WINDOW="100", CHATRT_RATE_LIMIT_USER_PER_WINDOW="4"
    )
    async with serve(settings) as new_client:
        alice, bob = new_client(), new_client()
        email = new_email()
        await alice.register(email)
        await bob.register()
        first = await alice.get("/api/conversations")
        assert first.status_code == 200
        assert first.headers["ratelimit-limit"] == "4", "the user limit has less left"
        assert first.headers["ratelimit-remaining"] == "3"
        assert first.headers["ratelimit-policy"] == "4;w=60, 100;w=60"
        # A second sign-in of the same user (another device) shares the count.
        laptop = new_client()
        assert (
            await laptop.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        ).status_code == 200
        assert (await laptop.get("/api/conversations")).status_code == 200
        assert (await alice.get("/api/auth/me")).status_code == 200
        assert (await laptop.get("/api/auth/me")).status_code == 200
        before = refused("user")
        over = await alice.post("/api/conversations", json={})
        assert_rate_limited(over, "user", 4)
        assert over.headers["ratelimit-policy"] == "4;w=60, 100;w=60"
        assert_rate_limited(await laptop.get("/api/conversations"), "user", 4)
        assert refused("user") - before == 2
        # Another user on the same address is not affected.
        assert (await bob.get("/api/conversations")).status_code == 200


async def test_concurrent_requests_allow_exactly_the_limit(backend: Backend, serve: Serve) -> None:
    settings = backend.settings(CHATRT_RATE_LIMIT_IP_PER_WINDOW="12")
    async with serve(settings) as new_client:
        client = new_client()
        statuses: list[int] = []

        async def one() -> None:
            statuses.append((await client.get("/api/auth/me")).status_code)

        async with anyio.create_task_group() as group:
            for _ in range(30):
                group.start_soon(one)
        assert statuses.count(401) == 12
        assert statuses.count(429) == 18


async def test_the_window_resets(backend: Backend, serve: Serve) -> None:
    settings = backend.settings(CHATRT_RATE_LIMIT_IP_PER_WINDOW="2", CHATRT_RATE_LIMIT_WINDOW_S="1")
    async with serve(settings) as new_client:
        client = new_client()
        assert [(await client.get("/api/auth/me")).status_code for _ in range(3)] == [
            401,
            401,
            429,
        ]

        async def let_in() -> bool:
            return (await client.get("/api/auth/me")).status_code != 429

        await wait_until(let_in, within_s=5, every_s=0.1)
        # A new window: the limit is available again (one hit taken by the check above).
        last = await client.get("/api/auth/me")
        assert last.status_code == 401
        assert last.headers["ratelimit-remaining"] == "0"


WRONG = "wrong password"


async def _login(client: Client, email: str, address: str, password: str = WRONG) -> Any:
    return await client.post(
        "/api/auth/login", json={"email": email, "password": password}, headers=from_ip(address)
    )


async def test_login_is_throttled_per_email_from_any_address(
    backend: Backend, serve: Serve
) -> None:
    settings = backend.settings(CHATRT_LOGIN_PER_EMAIL="3", CHATRT_LOGIN_PER_IP="100")
    async with serve(settings) as new_client:
        email = new_email()
        await new_client().register(email)
        client = new_client()
        before = refused("login_email")
        # Spread over addresses, as a botnet would; the address of each is its own.
        for n in range(3):
            assert (await _login(client, email, f"203.0.113.{n + 1}")).status_code == 401
        # The email is normalized: case and spaces do not make a new target.
        over = await _login(client, f"  {email.upper()} ", "203.0.113.50")
        assert_rate_limited(over, "login_email", 3)
        # Even the right password waits: the throttle comes before the check.
        right = await _login(client, email, "203.0.113.51", PASSWORD)
        assert_rate_limited(right, "login_email", 3)
        assert "session" not in client.http.cookies
        assert refused("login_email") - before == 2
        # Other accounts sign in as usual from the same addresses.
        other = new_email()
        await new_client().register(other)
        assert (await _login(client, other, "203.0.113.1", PASSWORD)).status_code == 200


async def test_login_is_throttled_per_address(backend: Backend, serve: Serve) -> None:
    settings = backend.settings(CHATRT_LOGIN_PER_EMAIL="100", CHATRT_LOGIN_PER_IP="3")
    async with serve(settings) as new_client:
        client = new_client()
        for _ in range(3):
            assert (await _login(client, new_email(), "198.51.100.7")).status_code == 401
        assert_rate_limited(await _login(client, new_email(), "198.51.100.7"), "login_ip", 3)
        assert (await _login(client, new_email(), "198.51.100.8")).status_code == 401


async def test_registration_is_throttled_per_address(backend: Backend, serve: Serve) -> None:
    settings = backend.settings(CHATRT_REGISTER_PER_IP="2")
    async with serve(settings) as new_client:
        client = new_client()

        async def register(address: str) -> httpx.Response:
            body = {"email": new_email(), "password": PASSWORD}
            return await client.post("/api/auth/register", json=body, headers=from_ip(address))

        assert [(await register("192.0.2.9")).status_code for _ in range(2)] == [201, 201]
        assert_rate_limited(await register("192.0.2.9"), "register_ip", 2)
        assert (await register("192.0.2.10")).status_code == 201


@pytest.mark.parametrize("trusted", ["none", "10.0.0.0/8"])
async def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(
    backend: Backend, serve: Serve, trusted: str
) -> None:
    # The test transport's peer is 127.0.0.1, which these settings do not trust.
    settings = backend.settings(CHATRT_RATE_LIMIT_IP_PER_WINDOW="3", CHATRT_TRUSTED_PROXIES=trusted)
    async with serve(settings) as new_client:
        client = new_client()
        for n in range(3):
            response = await client.get("/api/auth/me", headers=from_ip(f"203.0.113.{n}"))
            assert response.status_code == 401
        forged = await client.get("/api/auth/me", headers=from_ip("203.0.113.99"))
        assert_rate_limited(forged, "ip", 3)


async def test_a_trusted_proxy_chain_yields_the_first_untrusted_address(
    backend: Backend, serve: Serve
) -> None:
    settings = backend.settings(
        CHATRT_RATE_LIMIT_IP_PER_WINDOW="2", CHATRT_TRUSTED_PROXIES="127.0.0.1,10.0.0.0/8"
    )
    async with serve(settings) as new_client:
        client = new_client()
        # The client put "1.1.1.x" there itself; the proxies appended what they saw.
        for n in range(2):
            chain = from_ip(f"1.1.1.{n}, 198.51.100.20, 10.1.2.3")
            assert (await client.get("/api/auth/me", headers=chain)).status_code == 401
        forged = await client.get("/api/auth/me", headers=from_ip("1.1.1.9, 198.51.100.20"))
        assert_rate_limited(forged, "ip", 2)


async def test_an_allowed_origin_can_read_a_429_and_its_headers(
    backend: Backend, serve: Serve
) -> None:
    settings = backend.settings(CHATRT_RATE_LIMIT_IP_PER_WINDOW="1")
    origin = {"origin": "http://localhost:8000"}  # one of the default allowed origins
    async with serve(settings) as new_client:
        client = new_client()
        passed = await client.get("/api/auth/me", headers=origin)
        assert passed.headers["access-control-allow-origin"] == origin["origin"]
        over = await client.get("/api/auth/me", headers=origin)
        assert_rate_limited(over, "ip", 1)
        assert over.headers["access-control-allow-origin"] == origin["origin"]
        assert over.headers["access-control-allow-credentials"] == "true"
        exposed = {
            h.strip().lower() for h in over.headers["access-control-expose-headers"].split(",")
        }
        assert {"retry-after", "ratelimit-remaining", "ratelimit-policy"} <= exposed
        # A preflight is not a request of the app's: it still gets its answer.
        preflight = await client.request(
            "OPTIONS",
            "/api/conversations",
            headers=origin | {"access-control-request-method": "POST"},
        )
        assert preflight.status_code == 204
        foreign = await client.get("/api/auth/me", headers={"origin": "https://evil.example"})
        assert foreign.status_code == 429
        assert "access-control-allow-origin" not in foreign.headers
