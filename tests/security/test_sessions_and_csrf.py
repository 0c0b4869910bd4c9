"""Sessions and cross-site requests: CSRF, WebSocket origins, fixation, logout, brute force.

- Every unsafe route of the route table refuses a missing, wrong, foreign-signed, another
  user's or cookie-less CSRF token with 403 ``csrf_failed`` and changes nothing.
- A WebSocket handshake from a foreign ``Origin`` is closed with 4403 before any frame.
- A session id planted before sign-in (made up, or the attacker's own) is never adopted.
- Logout on one ``chatrt serve`` process ends the session on another at once: its cookie
  gets 401 there and its open socket there is closed with 4401.
- Sign-in is throttled per email and per address with 429 and ``Retry-After``, and no
  answer (before or after the throttle, right or wrong password) tells whether the email
  has an account.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.middleware.csrf import generate_csrf_token
from litestar.routes import HTTPRoute

from chatrt.app import create_app
from chatrt.errors import MESSAGES
from chatrt.settings import Settings
from tests.conftest import Backend
from tests.realtime.conftest import REALTIME_ENV, providers_env, start_live
from tests.support.client import PASSWORD, UNSAFE, Client, new_email
from tests.support.evidence import Evidence
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.instances import Instance
from tests.support.ratelimit import assert_rate_limited, from_ip
from tests.support.ws import WsClient

pytestmark = [pytest.mark.security, pytest.mark.anyio]

Serve = Callable[[Settings], AbstractAsyncContextManager[Callable[[], Client]]]
CONVERSATION = "/api/conversations/{conversation_id:str}"
# Every unsafe route and its body; sign-in routes are exempt (they check Origin instead).
CSRF_ROUTES: dict[tuple[str, str], dict[str, Any] | None] = {
    ("POST", "/api/conversations"): {"title": "forged"},
    ("PATCH", CONVERSATION): {"title": "forged"},
    ("DELETE", CONVERSATION): None,
    ("POST", CONVERSATION + "/restore"): None,
    ("POST", CONVERSATION + "/messages"): {"content": "forged"},
    ("POST", CONVERSATION + "/messages/{message_id:str}/cancel"): None,
    ("POST", "/api/auth/logout"): None,
}
EXEMPT = {("POST", "/api/auth/login"), ("POST", "/api/auth/register")}


def test_every_unsafe_route_is_covered(tmp_path: Path, evidence: Evidence) -> None:
    settings = Settings.from_env({"CHATRT_DATABASE_URL": f"sqlite:///{tmp_path}/r.sqlite3"})
    unsafe = {
        (method, route.path)
        for route in create_app(settings).routes
        if isinstance(route, HTTPRoute)
        for method in route.methods & UNSAFE
    }
    assert unsafe - EXEMPT == set(CSRF_ROUTES), "an unsafe route is not checked here"
    evidence.record("csrf_coverage", unsafe_routes=len(CSRF_ROUTES), exempt=len(EXEMPT))


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The contract's error shape, in Thai (the default)."""
    assert response.status_code == status, response.text
    assert response.json() == {
        "error": {"code": code, "message": MESSAGES[code][0], "details": None}
    }


async def _state(client: Client) -> str:
    """Everything a forged request could have changed for this user."""
    me = await client.get("/api/auth/me")
    page = await client.get("/api/conversations", params={"limit": 100})
    items = page.json()["items"]
    seen = [(c["id"], c["title"], c["message_count"]) for c in items]
    for c in items:
        seen += [(m["id"], m["status"]) for m in await client.history(c["id"])]
    return json.dumps([me.status_code, seen])


async def test_unsafe_routes_refuse_bad_csrf_tokens(
    backend: Backend, serve: Serve, fake: FakeOpenAI, evidence: Evidence
) -> None:
    # The answer hangs after one token, so a forged cancel has something to stop.
    fake.script("stall", Script(tokens=["held "], stall_after=1))
    settings = backend.settings(
        CHATRT_PROVIDERS=providers_env(fake, "stall"), CHATRT_PROVIDER_READ_TIMEOUT_S="120"
    )
    async with serve(settings) as new_client:
        alice, bob = new_client(), new_client()
        await alice.register()
        await bob.register()
        conversation = await alice.create_conversation(title="mine")
        sent = await alice.send(conversation["id"], "question")
        answer = sent.json()["assistant_message"]["id"]
        deleted = await alice.create_conversation(title="deleted")
        assert (
            await alice.request("DELETE", f"/api/conversations/{deleted['id']}")
        ).status_code == 204

        def path(template: str) -> str:
            cid = deleted["id"] if template.endswith("/restore") else conversation["id"]
            return template.replace("{conversation_id:str}", cid).replace(
                "{message_id:str}", answer
            )

        # A client with Alice's session cookie but no csrftoken cookie at all.
        cookieless = new_client()
        cookieless.use_session(alice.session)
        tokens: dict[str, tuple[Client, str | None]] = {
            "missing": (alice, None),
            "wrong": (alice, "wrong"),
            "same length, wrong": (alice, "0" * len(alice.http.cookies["csrftoken"])),
            "signed by another secret": (alice, generate_csrf_token("another-secret-0123456789")),
            "another user's": (alice, bob.http.cookies["csrftoken"]),
            "no csrf cookie": (cookieless, alice.http.cookies["csrftoken"]),
        }
        before = await _state(alice)
        attempts = 0
        for (method, template), body in CSRF_ROUTES.items():
            for what, (client, token) in tokens.items():
                headers = {} if token is None else {"x-csrftoken": token}
                refused = await client.request(
                    method, path(template), json=body, headers=headers, csrf=False
                )
                assert refused.status_code == 403, (method, template, what, refused.text)
                _assert_error(refused, 403, "csrf_failed")
                attempts += 1
        assert await _state(alice) == before, "no forged request had an effect"

        # With the right token each of them works (logout last: it ends the session).
        order = [
            ("POST", "/api/conversations"),
            ("PATCH", CONVERSATION),
            ("POST", CONVERSATION + "/messages/{message_id:str}/cancel"),
            ("POST", CONVERSATION + "/restore"),
            ("POST", CONVERSATION + "/messages"),
            ("DELETE", CONVERSATION),  # also cancels the answer just started
            ("POST", "/api/auth/logout"),
        ]
        assert set(order) == set(CSRF_ROUTES)
        for method, template in order:
            accepted = await alice.request(
                method, path(template), json=CSRF_ROUTES[method, template]
            )
            assert accepted.status_code < 300, (method, template, accepted.text)
            if template.endswith("/cancel"):
                await alice.wait_finished(conversation["id"], answer)
        assert (await alice.get("/api/auth/me")).status_code == 401
    evidence.record("csrf_refused", backends=1, forged_requests=attempts, accepted=0)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_websockets_refuse_foreign_origins_and_planted_sessions(
    backend: Backend, evidence: Evidence
) -> None:
    async for live in start_live(backend):
        alice = await live.user()
        # A planted id, then a sign-in in that browser: the id still opens no socket.
        planted = "c" * 64
        victim = await live.user()
        assert victim.user is not None
        victim.use_session(planted)
        login = await victim.post(
            "/api/auth/login", json={"email": victim.user["email"], "password": PASSWORD}
        )
        assert login.status_code == 200
        socket = await WsClient.connect(live.url, planted)
        assert await socket.close_code() == 4401
        port = live.url.rsplit(":", 1)[1]
        forged = [
            "https://evil.example",
            "null",
            "http://127.0.0.1:8000.evil.example",
            "http://evil.example:8000",
            f"{live.url}.evil.example",
            f"https://127.0.0.1:{port}",  # this host, another scheme
            f"http://127.0.0.1:{int(port) + 1}",  # this host, another port
            "http://localhost:8000/",
            "http://LOCALHOST:8000",
        ]
        for origin in forged:
            socket = await WsClient.connect(live.url, alice.session, origin=origin)
            assert await socket.close_code() == 4403, origin
            assert socket.frames == [], origin
        # The server's own origin and the configured ones are let in.
        for origin in (live.url, "http://localhost:8000", "http://127.0.0.1:8000"):
            allowed = await WsClient.connect(live.url, alice.session, origin=origin)
            live.sockets.append(allowed)
            await allowed.send({"type": "ping"})
            assert await allowed.recv() == {"type": "pong"}, origin
    evidence.record("ws_origin_refused", forged_origins=len(forged), accepted=0)


async def test_planted_session_ids_are_never_adopted(
    clients: Callable[[], Client], evidence: Evidence
) -> None:
    victim_email = new_email()
    await clients().register(victim_email)
    attacker = clients()
    await attacker.register()
    plants = {
        "made up": "a" * 64,
        "the attacker's own session": attacker.session,
    }
    for what, planted in plants.items():
        # Login: the victim's browser carries the planted id when they sign in.
        victim = clients()
        victim.use_session(planted)
        login = await victim.post(
            "/api/auth/login", json={"email": victim_email, "password": PASSWORD}
        )
        assert login.status_code == 200, what
        assert victim.session != planted, what
        assert (await victim.get("/api/auth/me")).json()["user"]["email"] == victim_email
        replay = clients()
        replay.use_session(planted)
        me = await replay.get("/api/auth/me")
        assert me.status_code == 401 or me.json()["user"]["email"] != victim_email, what
    # Registration signs in too.
    planted = "b" * 64
    newcomer = clients()
    newcomer.use_session(planted)
    await newcomer.register()
    assert newcomer.session != planted
    replay = clients()
    replay.use_session(planted)
    assert (await replay.get("/api/auth/me")).status_code == 401
    evidence.record("session_fixation", planted_ids=len(plants) + 1, adopted=0)


@pytest.fixture
def pair(postgres_backend: Backend, tmp_path: Path) -> Iterator[tuple[Instance, Instance]]:
    env = postgres_backend.defaults | postgres_backend.env | REALTIME_ENV
    a, b = Instance(env, tmp_path, "a"), Instance(env, tmp_path, "b")
    with a, b:
        yield a, b


@pytest.fixture
async def sockets() -> AsyncIterator[list[WsClient]]:
    opened: list[WsClient] = []
    yield opened
    for socket in opened:
        await socket.close()


@pytest.fixture
async def client_on() -> AsyncIterator[Callable[[Instance], Client]]:
    opened: list[httpx.AsyncClient] = []

    def connect(instance: Instance) -> Client:
        http = httpx.AsyncClient(base_url=instance.url, timeout=30)
        opened.append(http)
        return Client(http)

    yield connect
    for http in opened:
        await http.aclose()


@pytest.mark.multi
async def test_logout_on_one_instance_ends_the_session_on_another(
    pair: tuple[Instance, Instance],
    client_on: Callable[[Instance], Client],
    sockets: list[WsClient],
    evidence: Evidence,
) -> None:
    a, b = pair
    alice = client_on(a)
    email = new_email()
    await alice.register(email)
    same_browser_on_b = client_on(b)
    same_browser_on_b.sign_in_as(alice)
    assert (await same_browser_on_b.get("/api/auth/me")).status_code == 200
    laptop = client_on(b)  # Alice's other device: a session of its own
    assert (
        await laptop.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    ).status_code == 200
    on_b = await WsClient.connect(b.url, alice.session)
    laptop_socket = await WsClient.connect(b.url, laptop.session)
    sockets += [on_b, laptop_socket]
    for socket in (on_b, laptop_socket):
        await socket.send({"type": "ping"})
        assert await socket.recv() == {"type": "pong"}

    session = alice.session
    assert (await alice.post("/api/auth/logout")).status_code == 204
    # At once on B: no wait, no retry.
    _assert_error(await same_browser_on_b.get("/api/auth/me"), 401, "not_authenticated")
    _assert_error(
        await same_browser_on_b.post("/api/conversations", json={}), 401, "not_authenticated"
    )
    assert await on_b.close_code(within_s=15) == 4401
    again = await WsClient.connect(b.url, session)
    sockets.append(again)
    assert await again.close_code() == 4401
    # The other device's session is its own and lives on.
    await laptop_socket.send({"type": "ping"})
    assert await laptop_socket.recv() == {"type": "pong"}
    assert (await laptop.get("/api/auth/me")).status_code == 200
    evidence.record("logout_across_instances", sessions_ended=1, sockets_closed=1, survivors=1)


WRONG = "wrong password"


def _comparable(response: httpx.Response) -> tuple[int, Any, list[str]]:
    """Status, body and header names; the seconds to wait may tick between two answers."""
    body = response.json()
    details = body["error"].get("details")
    if isinstance(details, dict) and "retry_after" in details:
        details["retry_after"] = "n"
    names = sorted(k for k in response.headers if k not in ("date", "x-request-id", "set-cookie"))
    return response.status_code, body, names


async def _login(client: Client, email: str, address: str, password: str = WRONG) -> httpx.Response:
    return await client.post(
        "/api/auth/login", json={"email": email, "password": password}, headers=from_ip(address)
    )


async def test_login_throttles_reveal_no_account(
    backend: Backend, serve: Serve, evidence: Evidence
) -> None:
    settings = backend.settings(CHATRT_LOGIN_PER_EMAIL="2", CHATRT_LOGIN_PER_IP="2")
    async with serve(settings) as new_client:
        known = [new_email() for _ in range(2)]
        for email in known:
            await new_client().register(email)
        client = new_client()
        compared = 0

        # Per email, from a new address each time (a botnet): known and unknown alike.
        unknown = new_email()
        for n in range(4):
            with_account = await _login(client, known[0], f"203.0.113.{n + 1}")
            without = await _login(client, unknown, f"203.0.113.{n + 101}")
            assert _comparable(with_account) == _comparable(without), n
            assert with_account.status_code == (401 if n < 2 else 429), n
            compared += 1
        assert_rate_limited(with_account, "login_email", 2)
        # The right password, throttled, gets the very same answer as a wrong one.
        right = await _login(client, known[0], "203.0.113.200", PASSWORD)
        assert _comparable(right) == _comparable(with_account)
        assert "session" not in client.http.cookies
        compared += 1

        # Per address: accounts that exist and ones that do not, alternating.
        emails = [known[1], new_email(), known[1], new_email()]
        answers = [await _login(client, email, "198.51.100.7") for email in emails]
        assert [r.status_code for r in answers] == [401, 401, 429, 429]
        for first, second in ((0, 1), (2, 3)):
            assert _comparable(answers[first]) == _comparable(answers[second])
            compared += 1
        assert_rate_limited(answers[2], "login_ip", 2)
        right = await _login(client, known[1], "198.51.100.7", PASSWORD)
        assert _comparable(right) == _comparable(answers[2])
        compared += 1
        # Another address is not held up by this one.
        assert (await _login(client, known[1], "198.51.100.8", PASSWORD)).status_code == 200
    evidence.record("login_throttle", answers_compared=compared, revealing=0)
