"""Edge cases found in review: stale tokens, cross-site sign-in, forged cursors, limits."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable

import pytest

from chatrt.generation.prompt import build_prompt
from tests.conftest import run_chatrt
from tests.support.client import PASSWORD, Client, new_email
from tests.support.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_a_stale_csrf_cookie_is_replaced_at_sign_in(clients: Callable[[], Client]) -> None:
    client = clients()
    client.http.cookies.set("csrftoken", "signed-by-an-old-secret", domain="testserver.local")
    await client.register()
    assert client.http.cookies["csrftoken"] != "signed-by-an-old-secret"
    assert (await client.post("/api/conversations", json={})).status_code == 201


async def test_a_stale_csrf_cookie_is_replaced_on_a_safe_request(alice: Client) -> None:
    alice.http.cookies.set("csrftoken", "x" * 128, domain="testserver.local")
    response = await alice.get("/api/auth/me")
    assert response.status_code == 200
    assert any(c.startswith("csrftoken=") for c in response.headers.get_list("set-cookie"))
    assert (await alice.post("/api/conversations", json={})).status_code == 201


async def test_sign_in_refuses_foreign_origins_and_form_bodies(
    clients: Callable[[], Client],
) -> None:
    email = new_email()
    await clients().register(email)
    client = clients()
    body = {"email": email, "password": PASSWORD}
    foreign = await client.post(
        "/api/auth/login", json=body, headers={"origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    assert foreign.json()["error"]["code"] == "origin_not_allowed"
    as_form = await client.post(
        "/api/auth/login",
        content=b'{"email": "' + email.encode() + b'", "password": "' + PASSWORD.encode() + b'"}',
        headers={"content-type": "text/plain"},
    )
    assert as_form.status_code == 400
    assert "session" not in client.http.cookies
    same_origin = await client.post(
        "/api/auth/login", json=body, headers={"origin": "http://testserver.local"}
    )
    assert same_origin.status_code == 200
    configured = await clients().post(
        "/api/auth/login", json=body, headers={"origin": "http://localhost:8000"}
    )
    assert configured.status_code == 200


async def test_logout_expires_the_cookie(alice: Client) -> None:
    response = await alice.post("/api/auth/logout")
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("session="))
    assert "Max-Age=0" in cookie


@pytest.mark.parametrize(
    "key",
    [b"99999999999", b"-1", b"2147483648", b'["2026-01-01T00:00:00", "x"]', b"1.5"],
)
async def test_forged_cursors_are_422_not_500(alice: Client, key: bytes) -> None:
    cursor = base64.urlsafe_b64encode(key).decode().rstrip("=")
    conversation = await alice.create_conversation()
    for path in ("/api/conversations", f"/api/conversations/{conversation['id']}/messages"):
        response = await alice.get(path, params={"cursor": cursor})
        assert response.status_code == 422, (path, key, response.text)


async def test_undecodable_bodies_are_400(alice: Client) -> None:
    bad_utf8 = await alice.request(
        "POST",
        "/api/conversations",
        content=b'{"title": "\xff\xfe"}',
        headers={"content-type": "application/json"},
    )
    assert bad_utf8.status_code in (400, 422)
    deep = await alice.request(
        "POST",
        "/api/conversations",
        content=b"[" * 100_000 + b"]" * 100_000,
        headers={"content-type": "application/json"},
    )
    assert deep.status_code in (400, 413, 422)
    assert deep.json()["error"]["code"] != "internal_error"


async def test_a_huge_system_prompt_leaves_room_for_the_question(alice: Client) -> None:
    conversation = await alice.create_conversation(system_prompt="s" * 30_000)
    sent = await alice.send(conversation["id"], "hello there my friend")
    assert sent.status_code == 202
    prompt = await build_prompt(uuid.UUID(conversation["id"]), 1, "s" * 30_000, 24_000)
    assert prompt[-1].content == "hello there my friend"
    assert len(prompt[0].content) == 12_000
    done = await alice.wait_finished(conversation["id"], sent.json()["assistant_message"]["id"])
    assert "hello there my friend" in done["content"]


async def test_restoring_an_active_conversation_is_a_no_op(alice: Client) -> None:
    conversation = await alice.create_conversation(title="here")
    restored = await alice.post(f"/api/conversations/{conversation['id']}/restore")
    assert restored.status_code == 200
    assert restored.json()["conversation"]["id"] == conversation["id"]


def test_several_workers_need_redis() -> None:
    done = run_chatrt("serve", "--workers", "2", "--port", str(free_port()), env={}, timeout=30)
    assert done.returncode == 2
    assert "CHATRT_REDIS_URL" in done.stderr
