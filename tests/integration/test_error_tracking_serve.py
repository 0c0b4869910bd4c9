"""Sentry from a real ``chatrt serve`` process, received by a real local ingest server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SECRET, run_chatrt
from tests.support.client import Client
from tests.support.instances import Instance
from tests.support.sentry_ingest import SentryIngest
from tests.support.servers import free_port
from tests.support.ws import WsClient

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def _marker(name: str) -> str:
    return f"secret-{name}-{uuid.uuid4().hex}"


@pytest.mark.parametrize("with_dsn", [True, False], ids=["dsn", "no-dsn"])
def test_a_failed_start_is_reported_only_with_a_dsn(tmp_path: Path, with_dsn: bool) -> None:
    password = _marker("dbpassword")
    with SentryIngest() as ingest:
        env = {
            # Nothing listens there: opening the pool fails during the lifespan's start.
            "CHATRT_DATABASE_URL": f"postgresql://chatrt:{password}@127.0.0.1:{free_port()}/x",
            "CHATRT_SECRET_KEY": SECRET,
            # sentry-sdk's own variable: it must not switch reporting on by itself.
            "SENTRY_DSN": ingest.dsn,
        }
        if with_dsn:
            env["CHATRT_SENTRY_DSN"] = ingest.dsn
        result = run_chatrt("serve", "--port", str(free_port()), env=env, timeout=60)
        # The process has exited: whatever it was going to send has been sent.
        envelopes = ingest.envelopes()
        raw = ingest.raw()
    assert result.returncode != 0
    assert "Application startup failed" in result.stderr
    if not with_dsn:
        assert envelopes == []
        return
    [event] = ingest.events()
    types = [value["type"] for value in event["exception"]["values"]]
    assert any(name.endswith("Error") for name in types), types
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert any(frame.get("module", "").startswith("chatrt.") for frame in frames)
    assert password.encode() not in raw


async def test_ordinary_traffic_sends_no_reports_and_nothing_it_carried(tmp_path: Path) -> None:
    secrets = {name: _marker(name) for name in ("password", "title", "system", "content", "q")}
    with SentryIngest() as ingest:
        env = {
            "CHATRT_DATABASE_URL": f"sqlite:///{tmp_path / 'chatrt.sqlite3'}",
            "CHATRT_DEMO_CHUNK_DELAY_MS": "1",
            "CHATRT_SENTRY_DSN": ingest.dsn,
            # Every request becomes a transaction, so their scrubbing is exercised too.
            "CHATRT_SENTRY_TRACES_SAMPLE_RATE": "1",
        }
        instance = Instance(env, tmp_path, "sentry")
        instance.start()
        try:
            async with httpx.AsyncClient(base_url=instance.url, timeout=30) as http:
                alice = Client(http)
                user = await alice.register(password=secrets["password"])
                conversation = await alice.create_conversation(
                    title=secrets["title"], system_prompt=secrets["system"]
                )
                socket = await WsClient.connect(instance.url, alice.session)
                await socket.send(
                    {
                        "type": "send",
                        "conversation_id": conversation["id"],
                        "content": secrets["content"],
                    }
                )
                await socket.recv_until(lambda f: f["type"] == "message.done")
                await socket.send('{"type": "send", "content": "' + secrets["content"])
                errors = await socket.recv_until(lambda f: f["type"] == "error")
                assert errors[-1]["code"] == "bad_frame"
                await socket.close()
                malformed = await alice.request(
                    "POST",
                    "/api/conversations",
                    content=b'{"title": "' + secrets["title"].encode(),
                    headers={"content-type": "application/json"},
                )
                assert malformed.status_code == 400
                listed = await alice.get("/api/conversations", params={"q": secrets["q"]})
                assert listed.status_code == 200
                missing = await alice.get(f"/api/conversations/{uuid.uuid4()}")
                assert missing.status_code == 404
                session_id, csrf_token = alice.session, http.cookies["csrftoken"]
            # uvicorn re-raises the SIGTERM it handled after a clean shutdown.
            assert instance.terminate() in (0, -15)
        finally:
            instance.stop()
        envelopes = ingest.envelopes()
        raw = ingest.raw()

    def items(kind: str) -> list[dict[str, Any]]:
        return [payload for envelope in envelopes for payload in envelope.payloads(kind)]

    assert items("event") == [], json.dumps(items("event"))[:2000]
    # Proof the process had Sentry on: release health is sent when the app stops.
    assert items("sessions"), [h for e in envelopes for h, _ in e.items]
    names = {transaction["transaction"] for transaction in items("transaction")}
    assert "/api/conversations/{conversation_id}" in names
    assert "/ws" in names
    assert conversation["id"] not in " ".join(names), "named by route template, not by path"
    everything = [*secrets.values(), session_id, csrf_token, user["email"]]
    assert [secret for secret in everything if secret.encode() in raw] == []
