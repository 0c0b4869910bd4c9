"""Someone else's ids get exactly the answer a made-up id gets, over REST and the WebSocket.

Every route of the app's route table with a path parameter, and every client frame with an
id field, is called by another user with the owner's real ids (an active conversation with
an answer still streaming, a soft-deleted one, their messages). The answer must be the 404
(or ``error`` frame) that ids which never existed get, the same bytes in both languages, and
the owner's data must be unchanged. A route or frame added later with an id in it fails the
coverage check until it is added here.
"""

from __future__ import annotations

import typing
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar.routes import HTTPRoute

from chatrt.app import create_app
from chatrt.realtime.frames import ClientFrame
from chatrt.settings import Settings
from tests.conftest import Backend
from tests.realtime.conftest import Live, providers_env, start_live
from tests.support.client import Client
from tests.support.evidence import Evidence
from tests.support.fake_openai import FakeOpenAI, Script
from tests.support.ws import WsClient, done_of

pytestmark = [pytest.mark.security, pytest.mark.anyio]

CONVERSATION = "/api/conversations/{conversation_id:str}"
MESSAGE = CONVERSATION + "/messages/{message_id:str}"
# (method, path template) -> the JSON body a caller would send.
ID_ROUTES: dict[tuple[str, str], dict[str, Any] | None] = {
    ("GET", CONVERSATION): None,
    ("PATCH", CONVERSATION): {"title": "taken over"},
    ("DELETE", CONVERSATION): None,
    ("POST", CONVERSATION + "/restore"): None,
    ("GET", CONVERSATION + "/messages"): None,
    ("POST", CONVERSATION + "/messages"): {"content": "written by someone else"},
    ("POST", MESSAGE + "/cancel"): None,
    ("GET", MESSAGE + "/stream"): None,
}
# Path parameters that are not ids of anything a user owns.
NOT_IDS = {
    ("GET", "/static/{file_path:path}"): "a file of the web client",
    ("HEAD", "/static/{file_path:path}"): "a file of the web client",
    ("GET", "/schema/{path:str}"): "a page of the API docs",
}
# Client frames and their id field; the others carry no id.
ID_FRAMES = {
    "subscribe": "conversation_id",
    "unsubscribe": "conversation_id",
    "send": "conversation_id",
    "cancel": "message_id",
    "resume": "message_id",
}
# Differ from one response to the next whatever the id: not a leak.
VOLATILE = {"date", "x-request-id", "ratelimit-remaining", "ratelimit-reset"}


def _routes_with_path_parameters(settings: Settings) -> set[tuple[str, str]]:
    found = set()
    for route in create_app(settings).routes:
        if isinstance(route, HTTPRoute) and route.path_parameters:
            found |= {(method, route.path) for method in route.methods if method != "OPTIONS"}
    return found


def test_every_route_and_frame_with_an_id_is_covered(tmp_path: Path, evidence: Evidence) -> None:
    settings = Settings.from_env({"CHATRT_DATABASE_URL": f"sqlite:///{tmp_path}/routes.sqlite3"})
    routes = _routes_with_path_parameters(settings)
    assert routes - set(NOT_IDS) == set(ID_ROUTES), "a route with an id is not checked here"
    frames = {}
    for frame in typing.get_args(ClientFrame):
        info = msgspec.inspect.type_info(frame)
        assert isinstance(info, msgspec.inspect.StructType)
        ids = [f.name for f in info.fields if isinstance(f.type, msgspec.inspect.UUIDType)]
        if ids:
            assert len(ids) == 1, frame
            frames[str(frame.__struct_config__.tag)] = ids[0]
    assert frames == ID_FRAMES, "a client frame with an id is not checked here"
    evidence.record("ownership_coverage", id_routes=len(ID_ROUTES), id_frames=len(ID_FRAMES))


@dataclass(frozen=True)
class World:
    """Bob's real ids, Alice's own, and ids nobody has."""

    live: Live
    alice: Client
    bob: Client
    bob_conversation: str  # active, its answer still streaming
    bob_answer: str
    bob_deleted: str  # soft-deleted, restorable by Bob
    bob_deleted_message: str
    alice_conversation: str
    alice_message: str
    alice_deleted: str


def _missing() -> str:
    return str(uuid.uuid4())


@pytest.fixture
async def world(backend: Backend, fake: FakeOpenAI) -> AsyncIterator[World]:
    # One token, then the answer hangs until cancelled: Bob's answer is mid-stream throughout.
    fake.script("stall", Script(tokens=["held "], stall_after=1))
    # Read timeout well past the test: a timed-out answer would end ``failed`` midway.
    env = {
        "CHATRT_PROVIDERS": providers_env(fake, "stall"),
        "CHATRT_PROVIDER_READ_TIMEOUT_S": "120",
    }
    async for live in start_live(backend, **env):
        alice, bob = await live.user(), await live.user()
        watcher = await live.ws(bob)
        deleted = await bob.create_conversation(title="bob's old one")
        old = await bob.send(deleted["id"], "an old question")
        assert old.status_code == 202, old.text
        old_answer = old.json()["assistant_message"]["id"]
        await bob.post(f"/api/conversations/{deleted['id']}/messages/{old_answer}/cancel")
        await bob.wait_finished(deleted["id"], old_answer)
        assert (
            await bob.request("DELETE", f"/api/conversations/{deleted['id']}")
        ).status_code == 204

        active = await bob.create_conversation(title="bob's", system_prompt="bob's prompt")
        await watcher.send({"type": "subscribe", "conversation_id": active["id"]})
        await watcher.recv_until(lambda f: f["type"] == "subscribed")
        sent = await bob.send(active["id"], "bob's question")
        assert sent.status_code == 202, sent.text
        answer = sent.json()["assistant_message"]["id"]
        await watcher.recv_until(lambda f: f["type"] == "message.delta" and f["seq"] == 1)

        own = await alice.create_conversation(title="alice's")
        mine = await alice.send(own["id"], "alice's question")
        assert mine.status_code == 202
        alice_message = mine.json()["user_message"]["id"]
        alice_answer = mine.json()["assistant_message"]["id"]
        # Ended now: a stalled answer would hold up the server's shutdown.
        await alice.post(f"/api/conversations/{own['id']}/messages/{alice_answer}/cancel")
        await alice.wait_finished(own["id"], alice_answer)
        own_deleted = await alice.create_conversation(title="alice's old one")
        gone = await alice.request("DELETE", f"/api/conversations/{own_deleted['id']}")
        assert gone.status_code == 204
        world = World(
            live,
            alice,
            bob,
            active["id"],
            answer,
            deleted["id"],
            old_answer,
            own["id"],
            alice_message,
            own_deleted["id"],
        )
        yield world
        # The owner can still do what the other user could not: the ids were real.
        cancelled = await bob.post(f"/api/conversations/{active['id']}/messages/{answer}/cancel")
        assert cancelled.status_code == 202
        await watcher.recv_until(done_of(answer))
        assert (await bob.post(f"/api/conversations/{deleted['id']}/restore")).status_code == 200


async def _snapshot(client: Client) -> list[tuple[Any, ...]]:
    """What another user's call could change, to compare before and after the attempts.

    The text of an answer still streaming is left out: its checkpoints change it anyway.
    """
    page = await client.get("/api/conversations", params={"limit": 100})
    assert page.status_code == 200
    seen: list[tuple[Any, ...]] = []
    for c in page.json()["items"]:
        seen.append((c["id"], c["title"], c["system_prompt"], c["model"], c["message_count"]))
        for m in await client.history(c["id"]):
            text = None if m["status"] == "streaming" else m["content"]
            seen.append((m["id"], m["role"], m["status"], text))
    return seen


def _pairs(world: World, template: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(what, real ids, look-alike ids nobody has) for one route template."""
    w = world
    if "{message_id" not in template:
        return [
            ("foreign", {"c": w.bob_conversation}, {"c": _missing()}),
            ("foreign deleted", {"c": w.bob_deleted}, {"c": _missing()}),
            ("own deleted", {"c": w.alice_deleted}, {"c": _missing()}),
        ]
    nobody, other = _missing(), _missing()
    return [
        ("foreign both", {"c": w.bob_conversation, "m": w.bob_answer}, {"c": nobody, "m": other}),
        (
            "foreign message in own",
            {"c": w.alice_conversation, "m": w.bob_answer},
            {"c": w.alice_conversation, "m": other},
        ),
        (
            "own message in foreign",
            {"c": w.bob_conversation, "m": w.alice_message},
            {"c": nobody, "m": w.alice_message},
        ),
        (
            "foreign deleted",
            {"c": w.bob_deleted, "m": w.bob_deleted_message},
            {"c": nobody, "m": other},
        ),
    ]


def _fingerprint(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE)
    return response.status_code, response.content, headers


async def _over_rest(world: World) -> int:
    """Every id route, called by Alice with Bob's ids; the number of answers compared."""
    compared = 0
    for (method, template), body in ID_ROUTES.items():
        for n, (what, real, fake_ids) in enumerate(_pairs(world, template)):
            if what == "own deleted" and template.endswith("/restore"):
                continue  # restoring one's own deleted conversation is the point of the route
            # The English text once per route is enough: the language changes only the text.
            for language in ("th", "en") if n == 0 else ("th",):
                answers = []
                for ids in (real, fake_ids):
                    path = template.replace("{conversation_id:str}", ids["c"])
                    path = path.replace("{message_id:str}", ids.get("m", ""))
                    answers.append(
                        await world.alice.request(
                            method, path, json=body, headers={"accept-language": language}
                        )
                    )
                got, expected = (_fingerprint(a) for a in answers)
                where = (method, template, what, language)
                assert got[0] == 404, (where, answers[0].text)
                assert answers[0].json()["error"]["code"] in (
                    "conversation_not_found",
                    "message_not_found",
                ), where
                assert got == expected, where
                compared += 1
    return compared


async def _reply(socket: WsClient, frame: dict[str, Any]) -> dict[str, Any]:
    await socket.send(frame)
    reply: dict[str, Any] = await socket.recv()
    return reply


async def _over_the_websocket(world: World, socket: WsClient) -> int:
    """Every client frame with an id, sent by Alice with Bob's ids; the frames compared."""
    w = world
    # frame type -> [(real id, id nobody has)]
    cases = {
        "subscribe": [(w.bob_conversation, _missing()), (w.bob_deleted, _missing())],
        "unsubscribe": [(w.bob_conversation, _missing())],
        "send": [(w.bob_conversation, _missing()), (w.bob_deleted, _missing())],
        "cancel": [(w.bob_answer, _missing()), (w.bob_deleted_message, _missing())],
        "resume": [(w.bob_answer, _missing()), (w.bob_deleted_message, _missing())],
    }
    assert set(cases) == set(ID_FRAMES)
    extra = {"send": {"content": "written by someone else", "client_message_id": "x1"}}
    compared = 0
    for kind, pairs in cases.items():
        field = ID_FRAMES[kind]
        for real, nobody in pairs:
            got = await _reply(socket, {"type": kind, field: real, **extra.get(kind, {})})
            expected = await _reply(socket, {"type": kind, field: nobody, **extra.get(kind, {})})
            if kind == "unsubscribe":
                # Answered alike for any id: it only leaves what this socket follows.
                assert got == {"type": "unsubscribed", field: real}
                assert expected == {"type": "unsubscribed", field: nobody}
            else:
                assert got["type"] == "error", (kind, got)
                assert got["code"] in ("conversation_not_found", "message_not_found")
                assert got == expected, kind
            compared += 1
    return compared


async def test_foreign_ids_look_like_missing_ones(world: World, evidence: Evidence) -> None:
    w = world
    socket = await w.live.ws(w.alice)
    before = await _snapshot(w.bob)
    requests = await _over_rest(w)
    frames = await _over_the_websocket(w, socket)
    assert await _snapshot(w.bob) == before, "the other user's attempts changed nothing"
    answer = next(m for m in await w.bob.history(w.bob_conversation) if m["id"] == w.bob_answer)
    assert answer["status"] == "streaming", "not cancelled by the other user"

    # Bob's answer ends; nothing of it may reach Alice's socket despite her subscribe and
    # resume attempts.
    await w.bob.post(f"/api/conversations/{w.bob_conversation}/messages/{w.bob_answer}/cancel")
    await w.bob.wait_finished(w.bob_conversation, w.bob_answer)
    assert await _reply(socket, {"type": "ping"}) == {"type": "pong"}
    leaked = [f for f in socket.frames if f["type"] != "unsubscribed" and w.bob_answer in str(f)]
    assert leaked == []
    assert [f["type"] for f in socket.frames if f["type"] not in ("error", "unsubscribed")] == [
        "pong"
    ], "no event of Bob's conversations reached Alice"
    evidence.record(
        "ownership_hidden",
        backends=1,
        rest_answers_compared=requests,
        ws_frames_compared=frames,
        leaks=0,
    )
