"""Hypothesis fuzzes the WebSocket of a running instance with frames no client should send.

One real ``chatrt serve`` on PostgreSQL and Redis, a signed-in user with a real
conversation and answer. Each generated frame (random text, truncated JSON, frames past the
configured size limit, binary frames, known frame types with wrongly typed fields, unknown
types, deeply nested JSON, well-formed frames with real and random ids) goes out on one
socket, followed by a fence frame; everything up to the fence's answer is checked. Only
frame types of the contract come back, every ``error`` frame has the contract's shape and
none is an ``internal_error``, and the server closes a socket only with a contract code for
the cause (1009 oversized, 4429 flood), never 1011; a connection reset with no close frame is only
accepted right after an oversized frame (uvicorn drops the connection on it while the
client still sends; counted apart), and the instance logs no error. Afterwards it is
healthy: ``/health/ready`` is 200 and a send on a fresh socket is answered in full.

Plain regression tests for what the fuzzer found follow it: deeply nested JSON closed the
socket 1011, a NUL in a ``send`` was an ``internal_error``, and a send the server refused
after uvicorn's own 1009 close was logged as a failed socket.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import requests
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from chatrt.realtime.connection import _is_disconnect
from tests.security.conftest import (
    Exchange,
    StartInstance,
    cookie,
    finished_exchange,
    idle,
    server_errors_logged,
    signed_in,
)
from tests.support.evidence import Evidence
from tests.support.instances import Instance
from tests.support.wait import poll_until
from tests.support.ws import ORIGIN

pytestmark = [pytest.mark.security, pytest.mark.multi]

FRAMES = 500
MAX_FRAME_BYTES = 4096
PING = json.dumps({"type": "ping"})
SERVER_TYPES = frozenset(
    {
        "subscribed",
        "unsubscribed",
        "pong",
        "message.created",
        "message.delta",
        "message.done",
        "conversation.updated",
        "conversation.deleted",
        "error",
    }
)
# The contract's close codes for what a client did: an oversized frame, a flood.
ALLOWED_CLOSES = frozenset({1009, 4429})


@dataclass
class Tally:
    frames: int = 0
    error_frames: int = 0
    other_frames: int = 0
    close_codes: Counter[int | None] = field(default_factory=Counter)
    resets_after_oversized: int = 0
    server_errors: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class Socket:
    """One signed-in socket at a time; a new one after the server closed the last."""

    url: str
    session: str
    connection: ClientConnection | None = None
    opened: int = 0
    _scope: ExitStack = field(default_factory=ExitStack)

    def current(self) -> ClientConnection:
        if self.connection is None:
            self.connection = self._scope.enter_context(
                connect(
                    self.url.replace("http://", "ws://") + "/ws",
                    additional_headers={"cookie": f"session={self.session}", "origin": ORIGIN},
                    max_size=None,
                    open_timeout=30,
                )
            )
            self.opened += 1
        return self.connection

    def drop(self) -> None:
        self._scope.close()
        self.connection = None


@pytest.fixture(scope="module")
def instance(start_instance: StartInstance) -> Iterator[Instance]:
    with start_instance(
        CHATRT_WS_MAX_FRAME_BYTES=str(MAX_FRAME_BYTES),
        # Every example is two frames; the flood limit would close nearly every socket.
        CHATRT_WS_FRAMES_PER_SECOND="1000",
        CHATRT_WS_FRAME_BURST="1000",
        CHATRT_DEMO_CHUNK_DELAY_MS="1",
    ) as running:
        yield running


def error_frame_problem(frame: dict[str, Any]) -> str | None:
    """Why an ``error`` frame breaks the contract's shape, if it does."""
    expected: dict[str, tuple[type, ...]] = {
        "code": (str,),
        "message": (str,),
        "retryable": (bool,),
        "retry_after": (int, float, type(None)),
        "ref": (str, type(None)),
    }
    for name, types in expected.items():
        if name not in frame or not isinstance(frame[name], types):
            return f"field {name!r} missing or mistyped"
    if not frame["code"] or not frame["message"]:
        return "empty code or message"
    if frame["code"] == "internal_error":
        return "internal_error"
    return None


# -- frame strategies ---------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def frame_strategy(ids: Exchange) -> st.SearchStrategy[str | bytes]:
    uuids = st.sampled_from([ids.conversation_id, ids.message_id]) | st.uuids().map(str)

    def fieldvalue(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        # Mostly the right type, sometimes anything at all.
        return st.one_of(good, good, JSON_VALUES)

    def frame(kind: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {"type": st.just(kind), **{k: fieldvalue(v) for k, v in fields.items()}},
            optional={"extra": JSON_VALUES},
        )

    known = st.one_of(
        frame("subscribe", conversation_id=uuids),
        frame("unsubscribe", conversation_id=uuids),
        frame(
            "send",
            conversation_id=uuids,
            content=st.text(max_size=40),
            client_message_id=st.text(min_size=1, max_size=20),
        ),
        frame("cancel", message_id=uuids),
        frame("resume", message_id=uuids, after_seq=st.integers(-(2**70), 2**70)),
        frame("ping"),
        st.fixed_dictionaries(
            {"type": st.text(max_size=20) | JSON_VALUES},
            optional={"conversation_id": uuids, "message_id": uuids},
        ),
    )
    as_json = known.map(json.dumps)
    truncated = st.tuples(as_json, st.integers(min_value=0)).map(
        lambda pair: pair[0][: pair[1] % max(len(pair[0]), 1)]
    )
    oversized = st.integers(MAX_FRAME_BYTES + 1, 3 * MAX_FRAME_BYTES).flatmap(
        lambda size: st.sampled_from(
            [
                "x" * size,
                json.dumps(
                    {"type": "send", "conversation_id": ids.conversation_id, "content": "y" * size}
                ),
                # Characters of 3 bytes: fewer characters than bytes over the limit.
                "\u0e01" * (size // 3 + 1),
            ]
        )
    )
    # Sizes in characters, shallow and deep alike: integers alone would mostly stay small.
    sizes = st.integers(20, 400) | st.integers(1000, MAX_FRAME_BYTES - 64)
    nested = st.tuples(sizes, st.sampled_from(["[]", '{"a":}'])).flatmap(
        lambda pair: st.sampled_from(
            [
                _nest(pair[0], pair[1]),
                '{"type":"subscribe","conversation_id":' + _nest(pair[0] - 20, pair[1]) + "}",
                '{"type":"ping","x":' + _nest(pair[0] - 10, pair[1]) + "}",
            ]
        )
    )
    texts = st.one_of(
        as_json,
        as_json,
        truncated,
        st.text(max_size=200),
        oversized,
        nested,
    )
    binaries = st.one_of(st.binary(max_size=200), as_json.map(str.encode))
    return st.one_of(texts, texts, texts, binaries)


def _nest(size: int, pair: str) -> str:
    """As many levels of ``[`` ... ``]`` or ``{"a":`` ... ``}`` as fit in ``size`` characters."""
    if pair == "[]":
        depth = max(size // 2, 1)
        return "[" * depth + "0" + "]" * depth
    depth = max(size // 6, 1)
    return '{"a":' * depth + "0" + "}" * depth


# -- the fuzzer ---------------------------------------------------------------------------


def _oversized(raw: str | bytes) -> bool:
    return len(raw.encode() if isinstance(raw, str) else raw) > MAX_FRAME_BYTES


def exchange(socket: Socket, raw: str | bytes, tally: Tally) -> None:
    """Send one frame and a fence; check every frame up to the fence's answer, or the close.

    The fence is an ``unsubscribe`` from a conversation no one has: its ``unsubscribed``
    names an id no fuzzed frame can, so a ``ping`` among them cannot end an exchange early.
    """
    tally.frames += 1
    fence = str(uuid.uuid4())
    try:
        connection = socket.current()
        connection.send(raw)
        connection.send(json.dumps({"type": "unsubscribe", "conversation_id": fence}))
        while True:
            reply = connection.recv(timeout=15)
            frame = json.loads(reply)
            kind = frame.get("type") if isinstance(frame, dict) else None
            if kind not in SERVER_TYPES:
                tally.problems.append(f"{raw!r:.120} -> unknown frame {reply!r:.200}")
            elif kind == "error":
                tally.error_frames += 1
                problem = error_frame_problem(frame)
                if problem is not None:
                    if frame.get("code") == "internal_error":
                        tally.server_errors += 1
                    tally.problems.append(f"{raw!r:.120} -> {problem}: {reply!r:.200}")
            else:
                tally.other_frames += 1
            if kind == "unsubscribed" and frame.get("conversation_id") == fence:
                return
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else None
        tally.close_codes[code] += 1
        # uvicorn drops the connection at once on an oversized frame; the client's frames
        # still in flight make the kernel reset it, which can discard the 1009 on the way.
        if code is None and _oversized(raw):
            tally.resets_after_oversized += 1
        elif code not in ALLOWED_CLOSES:
            tally.server_errors += 1
            tally.problems.append(f"{raw!r:.120} -> closed with {code}")
        socket.drop()
    except TimeoutError:
        tally.problems.append(f"{raw!r:.120} -> no answer to the fence within 15 s")
        socket.drop()


def test_no_frame_gets_more_than_an_error_frame_or_a_contract_close_code(
    instance: Instance, evidence: Evidence
) -> None:
    http = signed_in(instance)
    ids = finished_exchange(instance, http)
    socket = Socket(instance.url, cookie(http, "session"))
    tally = Tally()

    @hypothesis.settings(
        max_examples=FRAMES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(raw=frame_strategy(ids))
    def run(raw: str | bytes) -> None:
        exchange(socket, raw, tally)

    try:
        run()
    finally:
        socket.drop()
    # The server's own word: nothing it logged as an error (a crashed task, a 500, a 1011).
    logged = server_errors_logged(instance)
    tally.server_errors += len(logged)
    tally.problems.extend(f"logged: {line:.300}" for line in logged)
    evidence.record(
        "ws_fuzz",
        frames=tally.frames,
        error_frames=tally.error_frames,
        other_frames=tally.other_frames,
        sockets=socket.opened,
        # No close frame at all (None): the connection was reset.
        **{f"closes_{code or 'reset'}": n for code, n in tally.close_codes.items()},
        resets_after_oversized=tally.resets_after_oversized,
        server_errors=tally.server_errors,
    )
    assert tally.problems == [], "\n".join(tally.problems[:30])
    assert tally.frames >= FRAMES // 2
    # The generator reached the cases it is for: error frames and both kinds of close.
    assert tally.error_frames > tally.frames // 4
    assert tally.close_codes[1009] > 0
    assert_still_healthy(instance, http, ids)


def assert_still_healthy(instance: Instance, http: requests.Session, ids: Exchange) -> None:
    """``/health/ready`` is 200 and a send on a fresh socket is answered to the end."""
    assert requests.get(f"{instance.url}/health/ready", timeout=30).status_code == 200
    socket = Socket(instance.url, cookie(http, "session"))
    connection = socket.current()
    try:
        connection.send(json.dumps({"type": "subscribe", "conversation_id": ids.conversation_id}))
        # Any answer the fuzzer started in the conversation must end before a new send.
        poll_until(lambda: idle(instance, http, ids.conversation_id), within_s=30)
        key = str(uuid.uuid4())
        connection.send(
            json.dumps(
                {
                    "type": "send",
                    "conversation_id": ids.conversation_id,
                    "content": "still there?",
                    "client_message_id": key,
                }
            )
        )
        answer: str | None = None
        deltas: list[str] = []
        while True:
            frame = json.loads(connection.recv(timeout=30))
            assert frame["type"] != "error", frame
            if frame["type"] == "message.created" and frame["message"]["role"] == "assistant":
                answer = frame["message"]["id"]
            if frame["type"] == "message.delta" and frame["message_id"] == answer:
                deltas.append(frame["delta"])
            if frame["type"] == "message.done" and frame["message"]["id"] == answer:
                done = frame["message"]
                break
        assert done["status"] == "complete"
        assert done["content"]
        assert "".join(deltas) == done["content"]
    finally:
        socket.drop()


# -- regression tests for what the fuzzer found -------------------------------------------


def _reply_then_pong(connection: ClientConnection, raw: str) -> dict[str, Any]:
    """The one frame the server answers ``raw`` with; the socket still answers a ping."""
    connection.send(raw)
    connection.send(PING)
    reply = json.loads(connection.recv(timeout=15))
    assert json.loads(connection.recv(timeout=15)) == {"type": "pong"}
    return dict(reply)


@pytest.mark.parametrize("depth", [1000, 2000])
def test_deeply_nested_json_is_a_bad_frame_and_the_socket_stays_open(
    instance: Instance, depth: int
) -> None:
    """msgspec gives up on such nesting with a RecursionError, which closed the socket 1011."""
    http = signed_in(instance)
    socket = Socket(instance.url, cookie(http, "session"))
    try:
        connection = socket.current()
        for raw in (
            "[" * depth + "]" * depth,
            '{"type":"subscribe","conversation_id":' + "[" * depth + "]" * depth + "}",
        ):
            reply = _reply_then_pong(connection, raw)
            assert reply["type"] == "error"
            assert reply["code"] == "bad_frame"
            assert error_frame_problem(reply) is None
    finally:
        socket.drop()


def test_a_nul_character_in_a_send_is_a_bad_frame_not_an_internal_error(
    instance: Instance,
) -> None:
    http = signed_in(instance)
    ids = finished_exchange(instance, http)
    socket = Socket(instance.url, cookie(http, "session"))
    try:
        frame = {"type": "send", "conversation_id": ids.conversation_id, "content": "a\x00b"}
        reply = _reply_then_pong(socket.current(), json.dumps(frame))
        assert reply["type"] == "error"
        assert reply["code"] == "bad_frame"
        assert reply["ref"] == "send"
    finally:
        socket.drop()
    history = http.get(
        f"{instance.url}/api/conversations/{ids.conversation_id}/messages", timeout=30
    ).json()
    assert len(history["items"]) == 2  # only the first exchange: nothing was stored


def test_a_send_refused_after_uvicorn_closed_the_socket_counts_as_a_disconnect() -> None:
    """uvicorn closes a socket itself on an oversized frame (1009), and refuses a send after
    that with a RuntimeError instead of the OSError the ASGI spec asks for. The fuzzer caught
    the sender, busy with deltas at that moment, logging it as a failed socket (an ERROR, and
    a 1011 meant for the client); too racy to provoke on demand, so checked here directly."""
    refused = RuntimeError(
        "Unexpected ASGI message 'websocket.send', after sending 'websocket.close'."
    )
    assert _is_disconnect(refused)
    assert not _is_disconnect(RuntimeError("something else"))
