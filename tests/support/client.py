"""A thin HTTP client for tests: one signed-in browser-like user per instance."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import anyio
import httpx

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
PASSWORD = "correct horse battery"
_emails = itertools.count()


def new_email() -> str:
    return f"user{next(_emails)}-{uuid.uuid4().hex[:8]}@example.com"


class Client:
    """An httpx client that echoes the ``csrftoken`` cookie on unsafe methods, like a browser."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.user: dict[str, Any] | None = None

    @property
    def session(self) -> str:
        return self.http.cookies["session"]

    def use_session(self, session_id: str) -> None:
        """Send this session cookie from now on, as a replayed or planted cookie would be."""
        self.http.cookies.set("session", session_id, domain=self.http.base_url.host)

    def sign_in_as(self, other: Client) -> None:
        """Share ``other``'s session and CSRF cookies, like a second tab of the same browser."""
        self.use_session(other.session)
        token = other.http.cookies["csrftoken"]
        self.http.cookies.set("csrftoken", token, domain=self.http.base_url.host)
        self.user = other.user

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        csrf: bool = True,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        token = self.http.cookies.get("csrftoken")
        if csrf and method in UNSAFE and token and "x-csrftoken" not in sent:
            sent["x-csrftoken"] = token
        return await self.http.request(
            method, url, json=json, content=content, headers=sent, params=params
        )

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def register(self, email: str | None = None, password: str = PASSWORD) -> dict[str, Any]:
        response = await self.post(
            "/api/auth/register", json={"email": email or new_email(), "password": password}
        )
        assert response.status_code == 201, response.text
        self.user = response.json()["user"]
        return self.user

    async def create_conversation(self, **fields: Any) -> dict[str, Any]:
        response = await self.post("/api/conversations", json=fields)
        assert response.status_code == 201, response.text
        conversation: dict[str, Any] = response.json()["conversation"]
        return conversation

    async def send(
        self, conversation_id: str, content: str, client_message_id: str | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"content": content}
        if client_message_id is not None:
            body["client_message_id"] = client_message_id
        return await self.post(f"/api/conversations/{conversation_id}/messages", json=body)

    async def history(self, conversation_id: str, **params: Any) -> list[dict[str, Any]]:
        """Every message, newest first, by following the cursor."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = dict(params)
            if cursor:
                query["cursor"] = cursor
            response = await self.get(
                f"/api/conversations/{conversation_id}/messages", params=query
            )
            assert response.status_code == 200, response.text
            page = response.json()
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items

    async def wait_finished(
        self, conversation_id: str, message_id: str, within_s: float = 15.0
    ) -> dict[str, Any]:
        """Poll history until the message leaves ``streaming``; fail after the deadline."""
        with anyio.fail_after(within_s):
            while True:
                page = await self.get(
                    f"/api/conversations/{conversation_id}/messages", params={"limit": 100}
                )
                assert page.status_code == 200, page.text
                for item in page.json()["items"]:
                    if item["id"] == message_id and item["status"] != "streaming":
                        found: dict[str, Any] = item
                        return found
                await anyio.sleep(0.02)
