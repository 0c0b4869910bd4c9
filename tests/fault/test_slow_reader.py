"""A reader that stops mid-answer is closed with 4408, slows no one, and resumes whole.

Two sockets of one user follow a conversation while a long answer streams. One is a bare
socket with a small kernel receive buffer that reads the first deltas and then stops
reading; the other reads normally. The test checks that the stopped reader is closed with
4408 once its send queue stays full for ``CHATRT_WS_SEND_TIMEOUT_S``, that the healthy
reader's deltas kept coming meanwhile (no gap between consecutive deltas of 1 s or more,
and deltas arrived while the other was stuck), and that the stopped reader, reconnecting
and resuming from the last seq it processed, ends up with every seq exactly once and text
equal to the stored content. ``tests/realtime/test_slow_client.py`` covers a reader that
never reads at all; this file adds the timing bound and the resume.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from tests.conftest import Backend
from tests.realtime.conftest import providers_env, serving
from tests.support.evidence import Evidence
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.logs import close_codes, log_records
from tests.support.raw_ws import Closed, StalledClient
from tests.support.wait import wait_until
from tests.support.ws import WsClient, deltas_of, done_of

pytestmark = [pytest.mark.fault, pytest.mark.anyio]

SEND_TIMEOUT_S = 1.0
QUEUE_FRAMES = 16
# About 200 kB/s for 5 s: the stopped reader's buffers fill within a second or two, and the
# answer is still streaming when it comes back.
TOKENS = [f"[{i:04d}]" + "y" * 994 for i in range(1000)]
TOKEN_DELAY_S = 0.005
PAUSE_AFTER_SEQ = 3
MAX_GAP_S = 1.0


async def _read_timed(ws: WsClient, message_id: str, arrivals: list[float]) -> None:
    """Read until ``message.done``, noting when each delta arrived."""
    while True:
        frame = await ws.recv(within_s=30)
        if frame["type"] == "message.delta" and frame["message_id"] == message_id:
            arrivals.append(time.monotonic())
        if done_of(message_id)(frame):
            return


async def test_a_stopped_reader_is_closed_slows_no_one_and_resumes_whole(
    backend: Backend, fake: FakeOpenAI, evidence: Evidence
) -> None:
    env = {
        "CHATRT_PROVIDERS": providers_env(fake, "primary"),
        "CHATRT_WS_SEND_QUEUE_FRAMES": str(QUEUE_FRAMES),
        "CHATRT_WS_SEND_TIMEOUT_S": str(SEND_TIMEOUT_S),
        "CHATRT_MAX_ANSWER_CHARS": str(2 * len("".join(TOKENS))),
    }
    fake.script("primary", Script(tokens=TOKENS, delay_s=TOKEN_DELAY_S))
    with log_records("chatrt.ws") as records:
        async with serving(backend, **env) as live:
            alice = await live.user()
            conversation = await alice.create_conversation(title="slow reader")
            conversation_id = conversation["id"]
            slow = await StalledClient.connect(live.url, alice.session, receive_buffer=4096)
            try:
                await slow.send({"type": "subscribe", "conversation_id": conversation_id})
                healthy = await live.ws(alice)
                await healthy.send({"type": "subscribe", "conversation_id": conversation_id})
                await healthy.recv()
                sent = await alice.send(conversation_id, "a long one, please")
                message_id = sent.json()["assistant_message"]["id"]
                arrivals: list[float] = []
                reading = asyncio.create_task(_read_timed(healthy, message_id, arrivals))

                # The slow reader processes the first deltas, then stops reading.
                processed: list[dict[str, Any]] = []
                while not processed or processed[-1]["seq"] < PAUSE_AFTER_SEQ:
                    frame = await slow.recv()
                    if frame["type"] == "message.delta":
                        processed.append(frame)
                stuck_at = time.monotonic()

                async def closed_slow() -> bool:
                    return 4408 in close_codes(records)

                await wait_until(closed_slow, within_s=30)
                closed_at = time.monotonic()
                # The close frame sits behind whatever the kernel still holds for it.
                close_code = None
                try:
                    while True:
                        await slow.recv(within_s=10)
                except Closed as closed:
                    close_code = closed.code
            finally:
                await slow.aclose()

            # It comes back and resumes from the last seq it processed.
            back = await live.ws(alice)
            last_processed = processed[-1]["seq"]
            await back.send(
                {"type": "resume", "message_id": message_id, "after_seq": last_processed}
            )
            await back.recv_until(done_of(message_id), within_s=30)
            await reading
            history = await alice.history(conversation_id)

    stored = history[0]["content"]
    assert history[0]["status"] == "complete"
    assert stored == "".join(TOKENS)
    assert close_codes(records) == [4408], "only the stopped reader is closed, with 4408"
    assert close_code == 4408, "the client reads the close frame behind what was buffered"

    resumed = deltas_of(back.frames, message_id)
    assert resumed, "the resume started mid-answer, so it replays and follows live deltas"
    seqs = [d["seq"] for d in processed + resumed]
    last = seqs[-1]
    missing = len(set(range(1, last + 1)) - set(seqs))
    doubled = len(seqs) - len(set(seqs))
    assert (missing, doubled) == (0, 0)
    assert seqs == list(range(1, last + 1))
    assert "".join(d["delta"] for d in processed + resumed) == stored
    assert back.frames[-1]["message"]["content"] == stored

    healthy_deltas = deltas_of(healthy.frames, message_id)
    assert "".join(d["delta"] for d in healthy_deltas) == stored
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    max_gap = max(gaps)
    assert max_gap < MAX_GAP_S, f"the healthy reader waited {max_gap:.2f} s for a delta"
    during_stall = [t for t in arrivals if stuck_at < t < closed_at]
    assert during_stall, "the healthy reader got deltas while the other one was stuck"

    evidence.record(
        "slow_reader_closed_4408",
        runs=1,
        closed_4408=1,
        **{f"stuck_to_close_ms_{backend.name}": round((closed_at - stuck_at) * 1000)},
    )
    evidence.record(
        "slow_reader_resume_whole",
        runs=1,
        deltas_checked=len(seqs),
        missing=missing,
        doubled=doubled,
    )
    evidence.record(
        "slow_reader_others_not_delayed",
        runs=1,
        deltas_checked=len(healthy_deltas),
        deltas_while_stuck=len(during_stall),
        **{f"max_gap_ms_{backend.name}": round(max_gap * 1000)},
    )
