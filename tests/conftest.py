"""Shared fixtures: the suite's own PostgreSQL and Redis, migrated templates, apps and clients.

Every API test runs twice through the ``backend`` fixture: on SQLite with in-memory stores
(the embedded default) and on PostgreSQL with Redis (production). Each test gets a fresh
database cloned from a template migrated by the real ``chatrt migrate`` command.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from chatrt.app import create_app
from chatrt.settings import Settings
from tests.support.client import Client
from tests.support.evidence import Evidence
from tests.support.fake_openai import FakeOpenAI
from tests.support.servers import PostgresServer, RedisServer

SECRET = "test-secret-key-0123456789abcdef"
RATE_LIMIT_VARIABLES = (
    "CHATRT_RATE_LIMIT_IP_PER_WINDOW",
    "CHATRT_RATE_LIMIT_USER_PER_WINDOW",
    "CHATRT_WS_SENDS_PER_WINDOW",
    "CHATRT_LOGIN_PER_EMAIL",
    "CHATRT_LOGIN_PER_IP",
    "CHATRT_REGISTER_PER_IP",
)
_db_names = itertools.count()


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


_evidence = pytest.StashKey[Evidence]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_evidence] = Evidence()


def pytest_sessionfinish(session: pytest.Session) -> None:
    found = session.config.stash[_evidence]
    if found.figures:
        found.save()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    found = config.stash[_evidence]
    if found.figures:
        terminalreporter.section("reliability evidence")
        for line in found.lines():
            terminalreporter.write_line(line)


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> Evidence:
    """Where a fault, fuzz or security test records what it checked (docs/reliability.md)."""
    return request.config.stash[_evidence]


def run_chatrt(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real ``chatrt`` CLI with only the given CHATRT_* variables set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CHATRT_", "PICCOLO_"))}
    return subprocess.run(
        [sys.executable, "-m", "chatrt", *args],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    # Not under pytest's temp root: another pytest run resets that to 0700, which locks the
    # postgres user out of its own data directory mid-run.
    base = Path(tempfile.mkdtemp(prefix="chatrt-pg-"))
    try:
        with PostgresServer(base) as server:
            yield server
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeOpenAI]:
    """The one thing the suite fakes: an OpenAI-compatible model server on a real port."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeOpenAI) -> FakeOpenAI:
    fake_server.reset()
    return fake_server


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str:
    name = "chatrt_template"
    pg_server.create_database(name)
    done = run_chatrt("migrate", env={"CHATRT_DATABASE_URL": pg_server.dsn(name)})
    assert done.returncode == 0, done.stderr + done.stdout
    return name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite3"
    done = run_chatrt("migrate", env={"CHATRT_DATABASE_URL": f"sqlite:///{path}"})
    assert done.returncode == 0, done.stderr + done.stdout
    return path


@dataclass
class Backend:
    """One test's database (and Redis, on the production backend) as CHATRT_* variables."""

    name: str
    env: dict[str, str]
    pg: PostgresServer | None = None
    redis: RedisServer | None = None
    db_name: str | None = None
    defaults: dict[str, str] = field(
        default_factory=lambda: {
            "CHATRT_DEMO_CHUNK_DELAY_MS": "10",
            "CHATRT_MAX_CONTENT_CHARS": "2000",
            "CHATRT_MAX_BODY_BYTES": "65536",
            "CHATRT_SHUTDOWN_GRACE_S": "5",
            # Counted on every request, but out of reach: every client of the suite is
            # 127.0.0.1. The rate-limit tests set their own small limits.
            **dict.fromkeys(RATE_LIMIT_VARIABLES, "1000000"),
        }
    )

    @property
    def is_postgres(self) -> bool:
        return self.name == "postgres"

    def settings(self, **overrides: str) -> Settings:
        return Settings.from_env(self.defaults | self.env | overrides)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "chatrt.sqlite3"
        shutil.copy(template, path)
        yield Backend("sqlite", {"CHATRT_DATABASE_URL": f"sqlite:///{path}"})
        return
    pg: PostgresServer = request.getfixturevalue("pg_server")
    redis: RedisServer = request.getfixturevalue("redis_server")
    template_name: str = request.getfixturevalue("pg_template")
    name = f"chatrt_test_{os.getpid()}_{next(_db_names)}"
    pg.create_database(name, template=template_name)
    redis.flushall()
    env = {
        "CHATRT_DATABASE_URL": pg.dsn(name),
        "CHATRT_REDIS_URL": redis.url(),
        "CHATRT_SECRET_KEY": SECRET,
        "CHATRT_DB_POOL_MIN": "1",
        "CHATRT_DB_POOL_MAX": "10",
    }
    yield Backend("postgres", env, pg=pg, redis=redis, db_name=name)
    pg.drop_database(name)


@pytest.fixture
def postgres_backend(
    pg_server: PostgresServer, redis_server: RedisServer, pg_template: str
) -> Iterator[Backend]:
    """The production backend only, for tests that are about PostgreSQL or Redis."""
    name = f"chatrt_test_{os.getpid()}_{next(_db_names)}"
    pg_server.create_database(name, template=pg_template)
    redis_server.flushall()
    env = {
        "CHATRT_DATABASE_URL": pg_server.dsn(name),
        "CHATRT_REDIS_URL": redis_server.url(),
        "CHATRT_SECRET_KEY": SECRET,
        "CHATRT_DB_POOL_MIN": "1",
        "CHATRT_DB_POOL_MAX": "10",
    }
    yield Backend("postgres", env, pg=pg_server, redis=redis_server, db_name=name)
    pg_server.drop_database(name)


@asynccontextmanager
async def serving(app: Litestar) -> AsyncIterator[Callable[[], Client]]:
    """Run ``app``'s lifespan in this event loop; yield a factory of clients bound to it."""
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.lifespan())
        transport = httpx.ASGITransport(app=app)

        def new_client() -> Client:
            http = httpx.AsyncClient(transport=transport, base_url="http://testserver.local")
            stack.push_async_callback(http.aclose)
            return Client(http)

        yield new_client


@pytest.fixture
def serve() -> Callable[[Settings], AbstractAsyncContextManager[Callable[[], Client]]]:
    """``async with serve(settings) as new_client``: an app instance for these settings."""

    def start(settings: Settings) -> AbstractAsyncContextManager[Callable[[], Client]]:
        return serving(create_app(settings))

    return start


@pytest.fixture
async def clients(backend: Backend) -> AsyncIterator[Callable[[], Client]]:
    """A factory of clients against one app instance on the current backend."""
    async with serving(create_app(backend.settings())) as new_client:
        yield new_client


@pytest.fixture
async def alice(clients: Callable[[], Client]) -> Client:
    client = clients()
    await client.register()
    return client


@pytest.fixture
async def bob(clients: Callable[[], Client]) -> Client:
    client = clients()
    await client.register()
    return client
