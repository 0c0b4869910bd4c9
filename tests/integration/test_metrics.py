"""``GET /metrics``: HTTP series by route template, and what chatrt itself does."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Backend
from tests.realtime.conftest import Live, start_live
from tests.support.instances import Instance
from tests.support.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def _scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


async def test_requests_generations_and_errors_are_counted(backend: Backend) -> None:
    async for live in start_live(backend):
        await _count_one_conversation(live)


async def _count_one_conversation(live: Live) -> None:
    alice = await live.user()
    before = await _scrape(alice.http)
    conversation = await alice.create_conversation(title="metrics")
    sent = await alice.send(conversation["id"], "count me")
    message_id = sent.json()["assistant_message"]["id"]
    done = await alice.wait_finished(conversation["id"], message_id)
    assert (await alice.http.get(f"/no/such/{message_id}")).status_code == 404
    gone = await alice.http.get(f"/api/conversations/{message_id}")
    assert gone.status_code == 404
    ws = await live.ws(alice)

    async def connected() -> bool:
        now = await _scrape(alice.http)
        return _total(now, "chatrt_websocket_connections") == (
            _total(before, "chatrt_websocket_connections") + 1
        )

    await wait_until(connected)
    after = await _scrape(alice.http)
    await ws.close()

    def grew(name: str, **labels: str) -> float:
        return _total(after, name, **labels) - _total(before, name, **labels)

    template = "/api/conversations/{conversation_id}/messages"
    assert grew("chatrt_requests_total", path=template, method="POST") == 1
    assert grew("chatrt_generations_total", status="complete") == 1
    model, provider = done["ai_model"], done["provider"]
    assert grew("chatrt_time_to_first_token_seconds_count", model=model) == 1
    assert grew("chatrt_response_seconds_count", provider=provider) == 1
    assert grew("chatrt_tokens_total", kind="completion") == done["completion_tokens"]
    assert grew("chatrt_deltas_published_total") >= 1
    assert grew("chatrt_bus_publish_seconds_count", operation="append_and_publish") >= 1
    assert grew("chatrt_errors_total", code="conversation_not_found", transport="http") >= 1
    labels = {value for (_, ls) in after for _, value in ls}
    assert not [v for v in labels if UUID_RE.search(v)], "no ids in labels"

    async def disconnected() -> bool:
        now = await _scrape(alice.http)
        return _total(now, "chatrt_websocket_connections") == _total(
            before, "chatrt_websocket_connections"
        )

    await wait_until(disconnected)


@pytest.mark.multi
async def test_several_workers_report_one_sum(postgres_backend: Backend, tmp_path: Path) -> None:
    """Whichever worker answers ``/metrics``, it counts every worker's requests."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = postgres_backend.defaults | postgres_backend.env
    env |= {"PROMETHEUS_MULTIPROC_DIR": str(directory)}
    with Instance(env, tmp_path, "workers", args=("--workers", "2")) as instance:
        requests = 60
        async with httpx.AsyncClient(base_url=instance.url) as http:
            for _ in range(requests):
                # A fresh connection each time, so the kernel spreads them over both workers.
                assert (await http.get("/health/live", headers={"connection": "close"})).is_success
            writers = {p.stem.rsplit("_", 1)[-1] for p in directory.glob("counter_*.db")}
            assert len(writers) == 2, "both workers served requests"
            for _ in range(4):
                samples = await _scrape(http)
                counted = _total(samples, "chatrt_requests_total", path="/health/live")
                # The readiness probe of Instance.start also hits /health/ready, not /live.
                assert counted == requests
