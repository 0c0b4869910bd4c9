"""Fixtures for the security suite: a real ``chatrt serve`` on PostgreSQL and Redis."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from tests.conftest import SECRET, Backend
from tests.support.instances import Instance
from tests.support.servers import PostgresServer, RedisServer

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
