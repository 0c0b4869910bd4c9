"""ETag, Cache-Control and 304 on the JSON API's GETs, on both backends."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chatrt.middleware.etag import CACHE_CONTROL, strong_etag
from tests.support.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_list_revalidates_until_a_rename_changes_it(alice: Client) -> None:
    conversation = await alice.create_conversation(title="before")
    first = await alice.get("/api/conversations")
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert etag == strong_etag(first.content)
    assert first.headers["cache-control"] == CACHE_CONTROL

    again = await alice.get("/api/conversations", headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == CACHE_CONTROL
    assert "content-length" not in again.headers or again.headers["content-length"] == "0"
    assert again.headers["x-content-type-options"] == "nosniff"

    renamed = await alice.request(
        "PATCH", f"/api/conversations/{conversation['id']}", json={"title": "after"}
    )
    assert renamed.status_code == 200
    assert "etag" not in renamed.headers  # only GETs are tagged

    changed = await alice.get("/api/conversations", headers={"if-none-match": etag})
    assert changed.status_code == 200
    assert changed.json()["items"][0]["title"] == "after"
    assert changed.headers["etag"] != etag
    assert changed.headers["etag"] == strong_etag(changed.content)


async def test_star_and_lists_of_tags(alice: Client) -> None:
    conversation = await alice.create_conversation()
    path = f"/api/conversations/{conversation['id']}"
    etag = (await alice.get(path)).headers["etag"]
    cases = {
        "*": 304,
        f'"stale", {etag}': 304,
        f"W/{etag}": 304,  # If-None-Match compares weakly
        '"stale", "older"': 200,
        "not-a-tag": 200,
    }
    for header, status in cases.items():
        response = await alice.get(path, headers={"if-none-match": header})
        assert response.status_code == status, header
        assert response.headers["etag"] == etag, header
        assert (response.content == b"") is (status == 304), header


async def test_errors_and_non_api_routes_get_no_etag(
    clients: Callable[[], Client], alice: Client
) -> None:
    anonymous = await clients().get("/api/conversations", headers={"if-none-match": "*"})
    assert anonymous.status_code == 401
    assert "etag" not in anonymous.headers
    missing = await alice.get(
        "/api/conversations/00000000-0000-4000-8000-000000000000", headers={"if-none-match": "*"}
    )
    assert missing.status_code == 404
    assert "etag" not in missing.headers
    for path in ("/health/live", "/health/ready", "/schema/openapi.json"):
        response = await alice.get(path, headers={"if-none-match": "*"})
        assert response.status_code == 200, path
        assert "etag" not in response.headers, path


async def test_an_sse_stream_is_never_tagged_or_answered_304(alice: Client) -> None:
    conversation = await alice.create_conversation()
    sent = await alice.send(conversation["id"], "hello")
    answer = sent.json()["assistant_message"]
    await alice.wait_finished(conversation["id"], answer["id"])
    path = f"/api/conversations/{conversation['id']}/messages/{answer['id']}/stream"
    response = await alice.get(path, headers={"if-none-match": "*"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "etag" not in response.headers
    assert b"message.done" in response.content


async def test_messages_page_changes_its_tag_when_an_answer_lands(alice: Client) -> None:
    conversation = await alice.create_conversation()
    path = f"/api/conversations/{conversation['id']}/messages"
    empty = await alice.get(path)
    sent = await alice.send(conversation["id"], "hello")
    await alice.wait_finished(conversation["id"], sent.json()["assistant_message"]["id"])
    after = await alice.get(path, headers={"if-none-match": empty.headers["etag"]})
    assert after.status_code == 200
    assert len(after.json()["items"]) == 2
    settled = await alice.get(path, headers={"if-none-match": after.headers["etag"]})
    assert settled.status_code == 304
