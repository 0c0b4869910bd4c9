"""A model server that misbehaves mid-answer never leaves an answer ``streaming``.

chatrt runs on a real port (a uvicorn in the test's loop, as in the real-time tests), on
both backends, with the scripted fake as its one provider. In turn the provider stalls,
drops its connection, ends its body early, sends garbage (non-JSON data lines, chunks of
the wrong shape, binary junk, an error object, a NUL character), streams one endless line,
or runs on past the answer length limit. For each case the test
checks, on a subscribed WebSocket and in the database (REST history): the final status and
error code; that the text kept is exactly what the provider sent before the fault (deltas
1..N joined equal it); that a stall ends within the configured read timeout; that nothing
is left ``streaming``; and that the same instance and conversation then get a normal answer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from chatrt.providers.openai_compat import MAX_LINE_BYTES
from tests.conftest import Backend
from tests.realtime.conftest import Live, providers_env, serving
from tests.support.client import Client
from tests.support.evidence import Evidence
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.ws import WsClient, deltas_of, done_of

pytestmark = [pytest.mark.fault, pytest.mark.anyio]

READ_TIMEOUT_S = 1.5
# Every fault must end its answer within the read timeout plus this (a loaded CI machine).
END_MARGIN_S = 10.0
HEALED = Script(tokens=["all ", "is ", "well"])
MAX_ANSWER_CHARS = 1_000
RUNAWAY = Script(tokens=400)


def _chunk(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


def _tokens(*texts: str) -> bytes:
    return b"".join(_chunk(t) for t in texts)


DONE = _chunk(finish="stop") + b"data: [DONE]\n\n"


@dataclass(frozen=True)
class Fault:
    """One way the provider misbehaves, and how the answer must end."""

    script: Script
    status: str
    code: str | None
    kept: str


def _raw(body: bytes, *, drop: bool = False) -> Script:
    return Script(body=body, drop_after=0 if drop else None)


FAULTS: dict[str, Fault] = {
    "stall_mid_answer": Fault(
        Script(tokens=8, stall_after=3), "failed", "provider_failed", "tok0 tok1 tok2 "
    ),
    "stall_before_first_token": Fault(
        Script(tokens=8, stall_after=0), "failed", "all_providers_failed", ""
    ),
    "drop_mid_answer": Fault(
        Script(tokens=8, drop_after=4), "failed", "provider_failed", "tok0 tok1 tok2 tok3 "
    ),
    "drop_before_first_token": Fault(
        Script(tokens=8, drop_after=0), "failed", "all_providers_failed", ""
    ),
    "drop_mid_chunk": Fault(
        _raw(_tokens("a", "b") + b'data: {"choices": [{"delta": {"cont', drop=True),
        "failed",
        "provider_failed",
        "ab",
    ),
    # A complete HTTP response whose stream just stops: no finish_reason, no [DONE].
    "ends_without_done": Fault(_raw(_tokens("a", "b")), "failed", "provider_failed", "ab"),
    "empty_body": Fault(_raw(b""), "failed", "all_providers_failed", ""),
    "not_json_mid_answer": Fault(
        _raw(_tokens("a", "b") + b"data: {oops\n\n" + DONE), "failed", "provider_failed", "ab"
    ),
    "not_json_first": Fault(
        _raw(b"data: <html>502 Bad Gateway</html>\n\n" + DONE),
        "failed",
        "all_providers_failed",
        "",
    ),
    "wrong_shapes": Fault(
        _raw(
            _tokens("a")
            + b'data: {"choices": "nope"}\n\n'
            + b'data: {"choices": [{"delta": {"content": 42}}]}\n\n'
            + DONE
        ),
        "failed",
        "provider_failed",
        "a",
    ),
    "json_not_an_object": Fault(
        _raw(_tokens("a") + b"data: [1, 2]\n\ndata: null\n\n" + DONE),
        "failed",
        "provider_failed",
        "a",
    ),
    "binary_junk": Fault(
        _raw(_tokens("a", "b") + b"data: \xff\xfe\x00\x9c\x80junk\n\n" + DONE),
        "failed",
        "provider_failed",
        "ab",
    ),
    # vLLM and OpenAI report a failure mid-stream as an error object, often then [DONE].
    "error_event": Fault(
        _raw(
            _tokens("a", "b")
            + b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
            + b"data: [DONE]\n\n"
        ),
        "failed",
        "provider_failed",
        "ab",
    ),
    # Lines that are not data (comments, other fields, stray bytes) are SSE noise to skip.
    "noise_between_chunks": Fault(
        _raw(
            b": keep-alive\n\nevent: ping\nid: 7\nretry: 10\n\n"
            + _tokens("a")
            + b"\x00\xff junk line\n\n"
            + _tokens("b", "c")
            + DONE
        ),
        "complete",
        None,
        "abc",
    ),
    # A line that never ends is not buffered whole: past MAX_LINE_BYTES it is a bad response.
    "endless_line": Fault(
        Script(body=_tokens("a", "b") + b"data: ", repeat=b"x" * (MAX_LINE_BYTES // 16)),
        "failed",
        "provider_failed",
        "ab",
    ),
    # Stopped at CHATRT_MAX_ANSWER_CHARS, keeping exactly that much.
    "runaway_answer": Fault(
        RUNAWAY, "failed", "answer_too_long", "".join(RUNAWAY.token_list())[:MAX_ANSWER_CHARS]
    ),
    # SSE lines may end in CRLF or a bare CR as well as LF.
    "crlf_and_cr_line_ends": Fault(
        _raw(
            _tokens("a").replace(b"\n", b"\r\n")
            + _tokens("b").replace(b"\n", b"\r")
            + _tokens("c")
            + DONE.replace(b"\n", b"\r\n")
        ),
        "complete",
        None,
        "abc",
    ),
    # Valid JSON and Unicode, but PostgreSQL text cannot hold NUL: dropped where it enters.
    "nul_character": Fault(_raw(_tokens("a\x00", "b") + DONE), "complete", None, "ab"),
}


async def _answer(
    alice: Client, ws: WsClient, conversation_id: str
) -> tuple[dict[str, Any], float]:
    """Send, wait for ``message.done`` on the socket: the final message and seconds taken."""
    began = time.monotonic()
    sent = await alice.send(conversation_id, "please answer")
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["assistant_message"]["id"]
    await ws.recv_until(done_of(message_id), within_s=READ_TIMEOUT_S + END_MARGIN_S)
    return ws.frames[-1]["message"], time.monotonic() - began


async def _check(live: Live, fake: FakeOpenAI, alice: Client, fault: Fault) -> None:
    conversation = await alice.create_conversation(title="faults")
    conversation_id = conversation["id"]
    ws = await live.ws(alice)
    await ws.send({"type": "subscribe", "conversation_id": conversation_id})
    await ws.recv()
    fake.script("primary", fault.script)
    done, took = await _answer(alice, ws, conversation_id)
    deltas = deltas_of(ws.frames, done["id"])
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert "".join(d["delta"] for d in deltas) == done["content"] == fault.kept
    assert (done["status"], (done["error"] or {}).get("code")) == (fault.status, fault.code)
    assert took < READ_TIMEOUT_S + END_MARGIN_S
    [row, _] = await alice.history(conversation_id)
    assert (row["id"], row["status"], row["content"]) == (done["id"], fault.status, fault.kept)
    assert (row["error"] or {}).get("code") == fault.code

    # The same instance and conversation serve the next answer normally.
    fake.script("primary", HEALED)
    healed, _ = await _answer(alice, ws, conversation_id)
    assert (healed["status"], healed["content"]) == ("complete", "all is well")
    history = await alice.history(conversation_id)
    assert [m["status"] for m in history] == ["complete", "complete", fault.status, "complete"]
    await ws.close()


async def test_a_faulty_provider_ends_each_answer_in_a_defined_state(
    backend: Backend, fake: FakeOpenAI, evidence: Evidence
) -> None:
    env = {
        "CHATRT_PROVIDERS": providers_env(fake, "primary"),
        "CHATRT_PROVIDER_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
        "CHATRT_MAX_ANSWER_CHARS": str(MAX_ANSWER_CHARS),
    }
    async with serving(backend, **env) as live:
        alice = await live.user()
        for case, fault in FAULTS.items():
            try:
                await _check(live, fake, alice, fault)
            except (AssertionError, TimeoutError) as failure:
                raise AssertionError(f"case {case!r} on {backend.name}: {failure}") from failure
            evidence.record(
                f"provider_fault_{case}",
                runs=1,
                ended_as_expected=1,
                left_streaming=0,
                next_answer_complete=1,
                status=fault.status,
                code=fault.code or "none",
            )
        # Not one message of any case is left streaming.
        listed = await alice.get("/api/conversations", params={"limit": 100})
        for conversation in listed.json()["items"]:
            statuses = [m["status"] for m in await alice.history(conversation["id"])]
            assert "streaming" not in statuses
