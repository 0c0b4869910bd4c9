"""Fixtures and helpers for the security suite: a real ``chatrt serve`` on PostgreSQL and
Redis, and signed-in browser sessions against it."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import SECRET, Backend
from tests.support.client import PASSWORD, new_email
from tests.support.instances import Instance
from tests.support.servers import PostgresServer, RedisServer
from tests.support.wait import poll_until

StartInstance = Callable[..., AbstractContextManager[Instance]]
_names = itertools.count()


@pytest.fixture(scope="module")
def start_instance(
    pg_server: PostgresServer,
    redis_server: RedisServer,
    pg_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> StartInstance:
    """``with start_instance(**env) as instance``: one process on its own fresh database.

    Module-scoped, so a fuzz file pays for one start; the database is dropped afterwards.
    """

    @contextmanager
    def start(**env: str) -> Iterator[Instance]:
        name = f"chatrt_security_{os.getpid()}_{next(_names)}"
        pg_server.create_database(name, template=pg_template)
        redis_server.flushall()
        backend = Backend(
            "postgres",
            {
                "CHATRT_DATABASE_URL": pg_server.dsn(name),
                "CHATRT_REDIS_URL": redis_server.url(),
                "CHATRT_SECRET_KEY": SECRET,
                "CHATRT_DB_POOL_MIN": "1",
                "CHATRT_DB_POOL_MAX": "10",
            },
        )
        log_dir: Path = tmp_path_factory.mktemp("security")
        try:
            with Instance(backend.defaults | backend.env | env, log_dir, "fuzzed") as instance:
                yield instance
        finally:
            pg_server.drop_database(name, missing_ok=True)

    return start


@dataclass
class Exchange:
    """A conversation of the user with one finished question and answer."""

    conversation_id: str
    message_id: str


def cookie(http: requests.Session, name: str) -> str:
    value = http.cookies.get(name)
    assert isinstance(value, str), f"no {name} cookie"
    return value


def signed_in(instance: Instance) -> requests.Session:
    """A new user's browser session: session cookie plus the CSRF header on every request."""
    http = requests.Session()
    registered = http.post(
        f"{instance.url}/api/auth/register",
        json={"email": new_email(), "password": PASSWORD},
        timeout=30,
    )
    assert registered.status_code == 201, registered.text
    # A safe request hands out the csrftoken cookie that unsafe ones must echo.
    assert http.get(f"{instance.url}/api/auth/me", timeout=30).status_code == 200
    http.headers["x-csrftoken"] = cookie(http, "csrftoken")
    return http


def finished_exchange(instance: Instance, http: requests.Session) -> Exchange:
    """Ids of a real conversation and answer, for fuzzers to reach past the 404s."""
    created = http.post(f"{instance.url}/api/conversations", json={}, timeout=30)
    assert created.status_code == 201, created.text
    conversation_id = created.json()["conversation"]["id"]
    sent = http.post(
        f"{instance.url}/api/conversations/{conversation_id}/messages",
        json={"content": "hello"},
        timeout=30,
    )
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["assistant_message"]["id"]
    poll_until(lambda: idle(instance, http, conversation_id), within_s=30)
    return Exchange(conversation_id, message_id)


def idle(instance: Instance, http: requests.Session, conversation_id: str) -> bool:
    """No answer in the conversation is still streaming."""
    url = f"{instance.url}/api/conversations/{conversation_id}/messages"
    history = http.get(url, timeout=30).json()
    return all(item["status"] != "streaming" for item in history["items"])


def server_errors_logged(instance: Instance) -> list[str]:
    """ERROR lines of the instance's JSON log: each one is a failure an operator is paged for."""
    return [
        line
        for line in instance.log_path.read_text().splitlines()
        if '"level": "error"' in line or '"level": "critical"' in line
    ]
