"""Delivery edge cases: subscribe-then-resume, resuming below what was sent, long backfills,
a cancel whose signal was lost, and SSE errors in the client's language."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from chatrt.errors import localize
from chatrt.generation.store import Outcome, finish
from chatrt.realtime.channels import cancel_key, message_log
from tests.conftest import Backend
from tests.realtime.conftest import Live, providers_env, start_live
from tests.support.client import Client
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.sse import SseEvent, read_sse
from tests.support.ws import WsClient, deltas_of, done_of

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TOKENS = [f"w{i} " for i in range(120)]
FULL = "".join(TOKENS)


async def _streaming(
    live: Live, fake: FakeOpenAI, script: Script, seen_seq: int = 3
) -> tuple[Client, str, str, WsClient]:
    """An answer now streaming, watched by one socket that has seen ``seen_seq`` deltas."""
    fake.script("primary", script)
    alice = await live.user()
    conversation = await alice.create_conversation(title="edge cases")
    watcher = await live.ws(alice)
    await watcher.send({"type": "subscribe", "conversation_id": conversation["id"]})
    await watcher.recv()
    sent = await alice.send(conversation["id"], "go")
    message_id = sent.json()["assistant_message"]["id"]
    await watcher.recv_until(lambda f: f["type"] == "message.delta" and f["seq"] >= seen_seq)
    return alice, conversation["id"], message_id, watcher


def _seqs(frames: list[dict[str, Any]], message_id: str) -> list[int]:
    return [d["seq"] for d in deltas_of(frames, message_id)]


async def test_a_tab_subscribing_mid_stream_gets_every_delta_from_seq_1(
    live: Live, fake: FakeOpenAI
) -> None:
    """Every subscriber sees the same deltas, however late it came."""
    alice, conversation_id, message_id, watcher = await _streaming(
        live, fake, Script(tokens=TOKENS, delay_s=0.02), seen_seq=5
    )
    late = await live.ws(alice)
    await late.send({"type": "subscribe", "conversation_id": conversation_id})
    subscribed = await late.recv()
    assert [s["message_id"] for s in subscribed["streaming"]] == [message_id]
    await late.recv_until(done_of(message_id))
    await watcher.recv_until(done_of(message_id))
    assert deltas_of(late.frames, message_id) == deltas_of(watcher.frames, message_id)
    assert "".join(d["delta"] for d in deltas_of(late.frames, message_id)) == FULL


async def test_a_client_resuming_before_it_subscribes_gets_nothing_twice(
    live: Live, fake: FakeOpenAI
) -> None:
    alice, conversation_id, message_id, watcher = await _streaming(
        live, fake, Script(tokens=TOKENS, delay_s=0.02), seen_seq=5
    )
    had = deltas_of(watcher.frames, message_id)[:3]
    again = await live.ws(alice)
    await again.send({"type": "resume", "message_id": message_id, "after_seq": 3})
    await again.send({"type": "subscribe", "conversation_id": conversation_id})
    await again.recv_until(done_of(message_id))
    await watcher.recv_until(done_of(message_id))
    reference = deltas_of(watcher.frames, message_id)
    assert deltas_of(again.frames, message_id) == reference[3:]
    assert "".join(d["delta"] for d in had + deltas_of(again.frames, message_id)) == FULL


async def test_a_done_that_was_never_published_is_read_from_the_row(
    backend: Backend, fake: FakeOpenAI
) -> None:
    """The row is the record: a quiet answer that ended there ends for every client."""
    env = {"CHATRT_PROVIDERS": providers_env(fake, "primary"), "CHATRT_SSE_HEARTBEAT_S": "0.3"}
    async for live in start_live(backend, **env):
        await _end_behind_the_bus(live, fake)


async def _end_behind_the_bus(live: Live, fake: FakeOpenAI) -> None:
    fake.script("primary", Script(tokens=["never"], first_token_delay_s=60))
    alice = await live.user()
    conversation = await alice.create_conversation(title="quiet")
    ws = await live.ws(alice)
    await ws.send({"type": "subscribe", "conversation_id": conversation["id"]})
    await ws.recv()
    sent = await alice.send(conversation["id"], "wait")
    message_id = sent.json()["assistant_message"]["id"]
    await ws.recv_until(
        lambda f: f["type"] == "message.created" and f["message"]["id"] == message_id
    )
    url = f"/api/conversations/{conversation['id']}/messages/{message_id}/stream"
    async with alice.http.stream("GET", url) as response:
        lines = response.aiter_lines()
        assert await anext(lines) == ": keep-alive"
        # As if another instance ended it and its message.done never reached the bus.
        ended = await finish(
            uuid.UUID(message_id), Outcome(status="failed", content="", error_code="instance_lost")
        )
        assert ended is not None
        rest = [line async for line in lines if line.startswith(("event:", "data:"))][:2]
    assert rest[0] == "event: message.done"
    assert json.loads(rest[1][6:])["message"]["status"] == "failed"
    await ws.recv_until(done_of(message_id), within_s=10)
    assert ws.frames[-1]["message"]["error"]["code"] == "instance_lost"


async def test_resuming_below_what_a_socket_was_sent_sends_nothing_twice(
    live: Live, fake: FakeOpenAI
) -> None:
    _, _, message_id, watcher = await _streaming(
        live, fake, Script(tokens=TOKENS, delay_s=0.02), seen_seq=5
    )
    await watcher.send({"type": "resume", "message_id": message_id, "after_seq": 0})
    await watcher.recv_until(done_of(message_id))
    seqs = _seqs(watcher.frames, message_id)
    assert seqs == list(range(1, len(seqs) + 1)), "each seq once, in order"
    joined = "".join(d["delta"] for d in deltas_of(watcher.frames, message_id))
    assert joined == watcher.frames[-1]["message"]["content"] == FULL


async def test_a_backfill_longer_than_the_send_queue_streams_through_it(
    backend: Backend, fake: FakeOpenAI
) -> None:
    """The queue bounds memory, not answer length: a resume waits for the client to read."""
    env = {
        "CHATRT_PROVIDERS": providers_env(fake, "primary"),
        "CHATRT_WS_SEND_QUEUE_FRAMES": "4",
        "CHATRT_FLUSH_INTERVAL_MS": "5",
    }
    async for live in start_live(backend, **env):
        alice, _, message_id, watcher = await _streaming(
            live, fake, Script(tokens=TOKENS, delay_s=0.02), seen_seq=40
        )
        late = await live.ws(alice)
        await late.send({"type": "resume", "message_id": message_id, "after_seq": 0})
        await late.recv_until(done_of(message_id), within_s=30)
        await watcher.recv_until(done_of(message_id))
        assert deltas_of(late.frames, message_id) == deltas_of(watcher.frames, message_id)
        assert len(deltas_of(late.frames, message_id)) >= 40
        assert late.frames[-1]["message"]["content"] == FULL


async def test_a_cancel_whose_signal_was_lost_still_stops_the_answer(
    live: Live, fake: FakeOpenAI
) -> None:
    """Pub/sub may drop the signal; the flag it leaves is checked at every lease renewal."""
    alice, conversation_id, message_id, watcher = await _streaming(
        live, fake, Script(tokens=TOKENS * 3, delay_s=0.03)
    )
    # As if the cancel signal had been published and lost: only the flag is there.
    await live.bus.set_flag(cancel_key(uuid.UUID(message_id)), 30)
    await watcher.recv_until(done_of(message_id), within_s=10)
    done = watcher.frames[-1]["message"]
    assert done["status"] == "cancelled"
    joined = "".join(d["delta"] for d in deltas_of(watcher.frames, message_id))
    assert done["content"] == joined
    assert 0 < len(joined) < len(FULL * 3)
    await fake.wait_for_async(lambda: fake.disconnects("primary") == 1, within_s=5)
    assert (await alice.history(conversation_id))[0]["status"] == "cancelled"


@pytest.mark.parametrize("language", ["en", "th"])
async def test_sse_errors_follow_the_requests_language(
    live: Live, fake: FakeOpenAI, language: str
) -> None:
    alice, conversation_id, message_id, _ = await _streaming(
        live, fake, Script(tokens=TOKENS, delay_s=0.02)
    )
    await live.bus.expire_log(message_log(uuid.UUID(message_id)), 0.000001)
    url = f"/api/conversations/{conversation_id}/messages/{message_id}/stream"
    events: list[SseEvent] = []
    await read_sse(alice.http, url, events, headers={"accept-language": language})
    errors = [event.data for event in events if event.name == "error"]
    assert [e["code"] for e in errors] == ["stream_history_lost"]
    assert errors[0]["message"] == localize("stream_history_lost", language)
