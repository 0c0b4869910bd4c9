"""Sentry reports from an in-process app, received by a real local ingest server.

The failing route exists only in these tests: it is registered on the app after
``create_app`` (``app.register``), never in the production routing table.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
import sentry_sdk
from litestar import get, post
from litestar.params import FromPath, JSONBody

import chatrt
from chatrt.app import create_app
from chatrt.observability.scrub import SAFE_HEADERS
from tests.conftest import Backend, serving
from tests.support.raw_provider import RawProvider
from tests.support.sentry_ingest import SentryIngest
from tests.support.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

BOOM_ROUTE = "/test-only/boom/{token}"


@post("/test-only/boom/{token:str}")
async def boom(token: FromPath[str], data: JSONBody[dict[str, Any]]) -> None:
    # A log line quoting user input and an exception message quoting it: both must stay home.
    logging.getLogger("chatrt.test").warning("about to fail with %s", data)
    raise LookupError(f"no entry for {token}")


@get("/test-only/boom", exclude_from_auth=True)
async def anonymous_boom() -> None:
    raise LookupError("anonymous")


def _markers(*names: str) -> dict[str, str]:
    return {name: f"secret-{name}-{uuid.uuid4().hex}" for name in names}


def _leaks(raw: bytes, secrets: list[str]) -> list[str]:
    return [secret for secret in secrets if secret.encode() in raw]


def _event_types(event: dict[str, Any]) -> list[str]:
    return [value["type"] for value in event["exception"]["values"]]


async def _events(ingest: SentryIngest, count: int) -> list[dict[str, Any]]:
    async def arrived() -> bool:
        return len(ingest.events()) >= count

    await wait_until(arrived, within_s=15)
    return ingest.events()


async def test_an_unhandled_error_is_reported_once_without_user_content(
    backend: Backend,
) -> None:
    secrets = _markers(
        "password", "title", "system", "content", "path", "query", "body", "cookie", "auth", "key"
    )
    with SentryIngest() as ingest:
        settings = backend.settings(
            CHATRT_SENTRY_DSN=ingest.dsn, CHATRT_SENTRY_ENVIRONMENT="test-suite"
        )
        app = create_app(settings)
        app.register(boom)
        async with serving(app) as clients:
            assert sentry_sdk.get_client().is_active()
            alice = clients()
            user = await alice.register(password=secrets["password"])
            conversation = await alice.create_conversation(
                title=secrets["title"], system_prompt=secrets["system"]
            )
            sent = await alice.send(conversation["id"], secrets["content"])
            answer = sent.json()["assistant_message"]
            assert (await alice.wait_finished(conversation["id"], answer["id"]))["status"] == (
                "complete"
            )
            # The client's mistakes are answered as before and are not reports.
            malformed = await alice.request(
                "POST",
                "/api/conversations",
                content=b'{"title": "' + secrets["title"].encode(),
                headers={"content-type": "application/json"},
            )
            assert malformed.status_code == 400
            assert (await alice.get(f"/api/conversations/{uuid.uuid4()}")).status_code == 404

            alice.http.cookies.set("extra", secrets["cookie"], domain=alice.http.base_url.host)
            response = await alice.post(
                f"/test-only/boom/{secrets['path']}",
                params={"q": secrets["query"]},
                json={"text": secrets["body"]},
                headers={"authorization": f"Bearer {secrets['auth']}", "x-api-key": secrets["key"]},
            )
            assert response.status_code == 500
            assert response.json()["error"]["code"] == "internal_error"
            [event] = await _events(ingest, 1)
            session_id, csrf_token = alice.session, alice.http.cookies["csrftoken"]
        # The lifespan detached the client: a later app in this process starts clean.
        assert not sentry_sdk.get_client().is_active()
        raw = ingest.raw()

    assert len(ingest.events()) == 1, [_event_types(e) for e in ingest.events()]
    assert _event_types(event)[-1] == "LookupError"
    exception = event["exception"]["values"][-1]
    assert "value" not in exception, "the exception message can quote input"
    frames = exception["stacktrace"]["frames"]
    assert any(f["function"] == "boom" and f["lineno"] > 0 for f in frames)
    assert all("vars" not in frame for frame in frames)
    assert event["logger"] == "chatrt.errors"
    assert event["tags"]["request_id"] == response.headers["x-request-id"]
    assert event["tags"]["route"] == BOOM_ROUTE
    assert event["transaction"] == BOOM_ROUTE
    assert event["user"] == {"id": user["id"]}
    assert event["environment"] == "test-suite"
    assert event["release"] == f"chatrt@{chatrt.__version__}"
    assert event["request"]["method"] == "POST"
    assert set(event["request"]) == {"method", "headers"}
    assert set(event["request"]["headers"]) <= SAFE_HEADERS
    crumbs = [crumb.get("message") for crumb in event["breadcrumbs"]["values"]]
    assert "about to fail with %s" in crumbs, "our log lines come as format strings"
    everything = [*secrets.values(), session_id, csrf_token, user["email"]]
    assert _leaks(raw, everything) == []


# A chunk nested deeper than msgspec decodes: the provider lets RecursionError escape, so
# the generation task ends in its "generation crashed" branch (a real crash path today).
HOSTILE_STREAM = (
    b'data: {"choices": [], "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}\n\ndata: [DONE]\n\n"
)


async def test_a_crashed_generation_is_reported_with_the_request_that_started_it(
    backend: Backend,
) -> None:
    secrets = _markers("title", "system", "content")
    with SentryIngest() as ingest, RawProvider(HOSTILE_STREAM) as provider:
        providers = [{"name": "hostile", "base_url": provider.base_url, "model": "m"}]
        settings = backend.settings(
            CHATRT_SENTRY_DSN=ingest.dsn, CHATRT_PROVIDERS=json.dumps(providers)
        )
        async with serving(create_app(settings)) as clients:
            alice = clients()
            user = await alice.register()
            conversation = await alice.create_conversation(
                title=secrets["title"], system_prompt=secrets["system"]
            )
            sent = await alice.send(conversation["id"], secrets["content"])
            answer = sent.json()["assistant_message"]
            ended = await alice.wait_finished(conversation["id"], answer["id"])
            [event] = await _events(ingest, 1)
        raw = ingest.raw()

    assert provider.requests >= 1
    assert ended["status"] == "failed"
    assert event["logger"] == "chatrt.generation"
    assert event["logentry"] == {"message": "generation crashed"}
    assert _event_types(event)[-1] == "RecursionError"
    assert event["extra"]["message_id"] == answer["id"]
    assert event["tags"]["request_id"] == sent.headers["x-request-id"]
    assert event["tags"]["route"] == "/api/conversations/{conversation_id}/messages"
    assert event["user"] == {"id": user["id"]}
    assert _leaks(raw, [*secrets.values(), user["email"]]) == []


async def test_without_a_dsn_sentry_is_never_initialised(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SentryIngest() as ingest:
        # sentry-sdk's own variable: a stray default ``sentry_sdk.init()`` would pick it up.
        monkeypatch.setenv("SENTRY_DSN", ingest.dsn)
        app = create_app(backend.settings())
        app.register(anonymous_boom)
        async with serving(app) as clients:
            assert not sentry_sdk.get_client().is_active()
            response = await clients().get("/test-only/boom")
            assert response.status_code == 500
            assert not sentry_sdk.get_client().is_active()
        assert ingest.envelopes() == []
