"""Registration, sign-in, sessions and logout, on both backends.

CSRF, planted session ids and logout across instances: tests/security/test_sessions_and_csrf.py.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytest

from tests.support.client import PASSWORD, Client, new_email

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_register_signs_in_and_sets_cookies(clients: Callable[[], Client]) -> None:
    client = clients()
    email = new_email()
    response = await client.post(
        "/api/auth/register", json={"email": email.upper(), "password": PASSWORD}
    )
    assert response.status_code == 201
    user = response.json()["user"]
    assert set(user) == {"id", "email", "display_name", "created_at"}
    assert user["email"] == email.lower()
    cookies = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith("session="))
    assert "HttpOnly" in session_cookie
    assert "SameSite=lax" in session_cookie or "samesite=lax" in session_cookie.lower()
    assert any(c.startswith("csrftoken=") and "HttpOnly" not in c for c in cookies)
    me = await client.get("/api/auth/me")
    assert me.status_code == 200
    assert me.json()["user"] == user


async def test_duplicate_email_is_409_case_insensitive(clients: Callable[[], Client]) -> None:
    email = new_email()
    await clients().register(email)
    again = await clients().post(
        "/api/auth/register", json={"email": email.upper(), "password": PASSWORD}
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "email_taken"


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "a@b.co", "password": "short"},
        {"email": "a@b.co", "password": "x" * 1025},
        {"email": ("x" * 320) + "@b.co", "password": PASSWORD},
        {"email": "a@b.co", "password": PASSWORD, "display_name": "x" * 101},
        {"email": "a@b.co"},
        {"email": "a@b.co", "password": PASSWORD, "is_admin": True},
    ],
)
async def test_register_rejects_bad_input_with_422(
    clients: Callable[[], Client], body: dict[str, object]
) -> None:
    response = await clients().post("/api/auth/register", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"], "the failing field is named"


async def test_wrong_password_and_unknown_email_answer_alike(
    clients: Callable[[], Client],
) -> None:
    email = new_email()
    await clients().register(email)
    client = clients()

    async def attempt(mail: str) -> tuple[float, int, dict[str, object]]:
        started = time.perf_counter()
        response = await client.post(
            "/api/auth/login", json={"email": mail, "password": "wrong password!"}
        )
        return time.perf_counter() - started, response.status_code, response.json()

    wrong = [await attempt(email) for _ in range(5)]
    unknown = [await attempt(new_email()) for _ in range(5)]
    assert {status for _, status, _ in wrong + unknown} == {401}
    assert wrong[0][2] == unknown[0][2]
    assert wrong[0][2]["error"]["code"] == "invalid_credentials"  # type: ignore[index]
    # Both paths run one argon2 verification; without that an unknown email answers ~50x faster.
    ratio = statistics.median(t for t, _, _ in unknown) / statistics.median(t for t, _, _ in wrong)
    assert 0.4 < ratio < 2.5


async def test_login_rotates_the_session_id(clients: Callable[[], Client]) -> None:
    email = new_email()
    client = clients()
    await client.register(email)
    first = client.session
    login = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    second = client.session
    assert second != first
    assert (await client.get("/api/auth/me")).status_code == 200
    # The pre-login id is dead.
    stale = clients()
    stale.use_session(first)
    assert (await stale.get("/api/auth/me")).status_code == 401


async def test_anonymous_requests_create_no_session(clients: Callable[[], Client]) -> None:
    response = await clients().get("/api/auth/me")
    assert response.status_code == 401
    cookies = response.headers.get_list("set-cookie")
    assert not any(c.startswith("session=") for c in cookies), cookies


async def test_logout_kills_the_session(alice: Client, clients: Callable[[], Client]) -> None:
    session = alice.session
    response = await alice.post("/api/auth/logout")
    assert response.status_code == 204
    assert (await alice.get("/api/auth/me")).status_code == 401
    replay = clients()
    replay.use_session(session)
    assert (await replay.get("/api/auth/me")).status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/auth/me"),
        ("POST", "/api/auth/logout"),
        ("GET", "/api/conversations"),
        ("POST", "/api/conversations"),
        ("GET", "/api/conversations/3f1c7f3e-0000-4000-8000-000000000000"),
        ("GET", "/api/conversations/3f1c7f3e-0000-4000-8000-000000000000/messages"),
    ],
)
async def test_api_routes_need_a_session(
    clients: Callable[[], Client], method: str, path: str
) -> None:
    response = await clients().request(method, path, json={} if method == "POST" else None)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


async def test_a_long_email_gets_a_display_name_that_fits(clients: Callable[[], Client]) -> None:
    email = "x" * 300 + "@example.com"
    response = await clients().post(
        "/api/auth/register", json={"email": email, "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    assert response.json()["user"]["display_name"] == "x" * 100
