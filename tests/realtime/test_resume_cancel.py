"""Resume, SSE and cancel on one instance, on both backends."""

from __future__ import annotations

import json
import uuid
from typing import Any

import anyio
import pytest

from chatrt.realtime.channels import message_log
from tests.conftest import Backend
from tests.realtime.conftest import Live, providers_env, start_live
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.sse import SseEvent, read_sse, sse_deltas
from tests.support.ws import WsClient, deltas_of, done_of

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

SLOW = Script(tokens=[f"w{i} " for i in range(60)], delay_s=0.03)
FULL = "".join(f"w{i} " for i in range(60))


async def _streaming(live: Live, fake: FakeOpenAI) -> tuple[Any, str, str, WsClient]:
    """A signed-in user, a conversation and an answer now streaming, watched by one socket."""
    fake.script("primary", SLOW)
    alice = await live.user()
    conversation = await alice.create_conversation()
    watcher = await live.ws(alice)
    await watcher.send({"type": "subscribe", "conversation_id": conversation["id"]})
    await watcher.recv()
    sent = await alice.send(conversation["id"], "go slowly")
    message_id = sent.json()["assistant_message"]["id"]
    await watcher.recv_until(lambda f: f["type"] == "message.delta" and f["seq"] >= 3)
    return alice, conversation["id"], message_id, watcher


@pytest.mark.parametrize("case", ["from 0", "middle", "end so far", "future"])
async def test_resume_while_streaming(live: Live, fake: FakeOpenAI, case: str) -> None:
    alice, _, message_id, watcher = await _streaming(live, fake)
    seen = deltas_of(watcher.frames, message_id)[-1]["seq"]
    after = {"from 0": 0, "middle": seen // 2, "end so far": seen, "future": 10_000}[case]
    ws = await live.ws(alice)
    await ws.send({"type": "resume", "message_id": message_id, "after_seq": after})
    await ws.recv_until(done_of(message_id))
    await watcher.recv_until(done_of(message_id))
    reference = deltas_of(watcher.frames, message_id)
    got = deltas_of(ws.frames, message_id)
    done = ws.frames[-1]["message"]
    assert done["content"] == FULL
    assert "".join(d["delta"] for d in reference) == FULL
    expected = [d for d in reference if d["seq"] > after]
    assert got == expected, "every delta after the resume point, once, in order"
    if case != "future":
        assert got[0]["seq"] == after + 1


async def test_resume_after_done_is_just_the_done_frame(live: Live, fake: FakeOpenAI) -> None:
    alice, _, message_id, watcher = await _streaming(live, fake)
    await watcher.recv_until(done_of(message_id))
    ws = await live.ws(alice)
    for after in (0, 5):
        await ws.send({"type": "resume", "message_id": message_id, "after_seq": after})
        frame = await ws.recv()
        assert frame["type"] == "message.done"
        assert frame["message"]["content"] == FULL
    assert not deltas_of(ws.frames, message_id)


@pytest.mark.parametrize("how", ["expired", "deleted"])
async def test_a_lost_log_is_reported_never_a_silent_gap(
    live: Live, fake: FakeOpenAI, how: str
) -> None:
    alice, _, message_id, _ = await _streaming(live, fake)
    log = message_log(uuid.UUID(message_id))
    # "expired": the TTL ran out; "deleted": gone at once (Redis flushed or restarted).
    await live.bus.expire_log(log, 0.001 if how == "expired" else 0.000001)
    await anyio.sleep(0.01)
    ws = await live.ws(alice)
    await ws.send({"type": "resume", "message_id": message_id, "after_seq": 0})
    frames = await ws.recv_until(done_of(message_id))
    errors = [f for f in frames if f["type"] == "error"]
    assert errors, frames[:3]
    assert errors[0]["code"] == "stream_history_lost"
    assert errors[0]["message_id"] == message_id
    # The text is still whole in the history.
    history = await alice.history(frames[-1]["message"]["conversation_id"])
    assert history[0]["content"] == FULL


async def test_a_resume_before_the_log_is_opened_is_not_a_loss(
    live: Live, fake: FakeOpenAI
) -> None:
    """The row says ``streaming`` a moment before its generation opens the log.

    A client that resumes from 0 in that moment (its ``subscribed`` frame listed the
    answer) has lost nothing. Here the log is removed before the first token, which leaves
    the server in the same state; the first token then opens it again.
    """
    fake.script("primary", Script(tokens=[f"w{i} " for i in range(60)], first_token_delay_s=2))
    alice = await live.user()
    conversation = await alice.create_conversation()
    sent = await alice.send(conversation["id"], "wait a little")
    message_id = sent.json()["assistant_message"]["id"]
    log = message_log(uuid.UUID(message_id))
    # The model is asked only after the log is opened.
    await fake.wait_for_async(lambda: fake.requests("primary") == 1)
    assert await live.bus.last_seq(log) == 0
    await live.bus.expire_log(log, 0.000001)
    ws = await live.ws(alice)
    await ws.send({"type": "resume", "message_id": message_id, "after_seq": 0})
    frames = await ws.recv_until(done_of(message_id), within_s=15)
    assert [f for f in frames if f["type"] == "error"] == []
    deltas = deltas_of(frames, message_id)
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert "".join(d["delta"] for d in deltas) == frames[-1]["message"]["content"] == FULL


async def test_sse_streams_the_same_events_from_after_seq(live: Live, fake: FakeOpenAI) -> None:
    alice, conversation_id, message_id, watcher = await _streaming(live, fake)
    url = f"/api/conversations/{conversation_id}/messages/{message_id}/stream"
    events: list[SseEvent] = []
    await read_sse(alice.http, url, events, params={"after_seq": 2})
    await watcher.recv_until(done_of(message_id))
    reference = [d for d in deltas_of(watcher.frames, message_id) if d["seq"] > 2]
    assert sse_deltas(events) == reference
    assert events[-1].name == "message.done"
    assert events[-1].data["message"]["content"] == FULL
    finished = await alice.http.get(url)
    assert "event: message.done" in finished.text
    assert "event: message.delta" not in finished.text
    missing = await alice.http.get(url.replace(message_id, str(uuid.uuid4())))
    assert missing.status_code == 404


@pytest.mark.parametrize("how", ["socket", "rest"])
async def test_cancel_mid_stream_keeps_the_partial_text(
    live: Live, fake: FakeOpenAI, how: str
) -> None:
    alice, conversation_id, message_id, watcher = await _streaming(live, fake)
    if how == "socket":
        await watcher.send({"type": "cancel", "message_id": message_id})
    else:
        response = await alice.post(
            f"/api/conversations/{conversation_id}/messages/{message_id}/cancel"
        )
        assert response.status_code == 202
    await watcher.recv_until(done_of(message_id))
    done = watcher.frames[-1]["message"]
    assert done["status"] == "cancelled"
    joined = "".join(d["delta"] for d in deltas_of(watcher.frames, message_id))
    assert done["content"] == joined
    assert FULL.startswith(joined)
    assert 0 < len(joined) < len(FULL)
    await fake.wait_for_async(lambda: fake.disconnects("primary") == 1, within_s=5)
    history = await alice.history(conversation_id)
    assert history[0]["status"] == "cancelled"
    assert history[0]["content"] == joined


async def test_cancel_before_the_first_token(live: Live, fake: FakeOpenAI) -> None:
    fake.script("primary", Script(tokens=5, first_token_delay_s=30))
    alice = await live.user()
    conversation = await alice.create_conversation()
    ws = await live.ws(alice)
    await ws.send(
        {
            "type": "send",
            "conversation_id": conversation["id"],
            "content": "x",
            "client_message_id": "1",
        }
    )
    created = await ws.recv_until(
        lambda f: f["type"] == "message.created" and f["message"]["role"] == "assistant"
    )
    message_id = created[-1]["message"]["id"]
    await fake.wait_for_async(lambda: fake.requests("primary") == 1)
    await ws.send({"type": "cancel", "message_id": message_id})
    await ws.recv_until(done_of(message_id))
    done = ws.frames[-1]["message"]
    assert (done["status"], done["content"]) == ("cancelled", "")
    await fake.wait_for_async(lambda: fake.disconnects("primary") == 1, within_s=5)


async def test_cancelling_a_finished_answer_changes_nothing(live: Live) -> None:
    alice = await live.user()
    conversation = await alice.create_conversation()
    sent = await alice.send(conversation["id"], "hi")
    message_id = sent.json()["assistant_message"]["id"]
    done = await alice.wait_finished(conversation["id"], message_id)
    response = await alice.post(
        f"/api/conversations/{conversation['id']}/messages/{message_id}/cancel"
    )
    assert response.status_code == 202
    again = await alice.wait_finished(conversation["id"], message_id)
    assert again == done


async def test_a_foreign_cancel_is_404(live: Live) -> None:
    alice, bob = await live.user(), await live.user()
    conversation = await alice.create_conversation()
    sent = await alice.send(conversation["id"], "mine")
    message_id = sent.json()["assistant_message"]["id"]
    response = await bob.post(
        f"/api/conversations/{conversation['id']}/messages/{message_id}/cancel"
    )
    assert response.status_code == 404
    done = await alice.wait_finished(conversation["id"], message_id)
    assert done["status"] == "complete"


async def test_sse_survives_quiet_spells_with_keep_alives(
    backend: Backend, fake: FakeOpenAI
) -> None:
    fake.script("primary", Script(tokens=["late ", "but ", "whole"], first_token_delay_s=1.0))
    env = {"CHATRT_PROVIDERS": providers_env(fake, "primary"), "CHATRT_SSE_HEARTBEAT_S": "0.1"}
    async for live in start_live(backend, **env):
        alice = await live.user()
        conversation = await alice.create_conversation(title="quiet")
        sent = await alice.send(conversation["id"], "take your time")
        message_id = sent.json()["assistant_message"]["id"]
        url = f"/api/conversations/{conversation['id']}/messages/{message_id}/stream"
        lines: list[str] = []
        async with alice.http.stream("GET", url) as response:
            async for line in response.aiter_lines():
                lines.append(line)
                if line == "event: message.done":
                    break
        assert lines.count(": keep-alive") >= 3
        deltas = [
            json.loads(x[6:])["delta"]
            for x in lines
            if x.startswith('data: {"type":"message.delta')
        ]
        assert "".join(deltas) == "late but whole"
