"""Self-check for tests.support.servers against real server binaries."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis

from tests.support.servers import PostgresServer, PsqlError, RedisServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.fault]


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with PostgresServer(tmp_path_factory.mktemp("pg")) as server:
        yield server


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_postgres_survives_stop_and_restart(pg: PostgresServer) -> None:
    assert pg.psql("select current_setting('fsync')") == "off"
    assert pg.psql("show max_connections") == "300"
    pg.psql("create table survivor (v text); insert into survivor values ('kept')")
    port, pid = pg.port, pg.pid

    pg.stop()
    assert not pg.running
    pg.restart()

    assert pg.port == port
    assert pg.pid != pid
    assert pg.psql("select v from survivor") == "kept"
    assert pg.dsn("x") == f"postgresql://postgres@127.0.0.1:{port}/x"


def test_postgres_kill_and_recover(pg: PostgresServer) -> None:
    # The server runs with synchronous_commit=off, which would let kill -9
    # drop this just-acknowledged commit; ask for a durable commit instead.
    pg.psql(
        "set synchronous_commit = on;"
        " create table crashy (n int); insert into crashy values (1), (2)"
    )
    pg.kill()
    assert not pg.running
    with pytest.raises(PsqlError):
        pg.psql("select 1")

    pg.restart()
    assert pg.psql("select sum(n) from crashy") == "3"


def test_postgres_template_clone_and_drop(pg: PostgresServer) -> None:
    pg.create_database("tpl")
    pg.psql("create table seeded (v int); insert into seeded values (42)", dbname="tpl")
    pg.create_database("clone", template="tpl")
    assert pg.psql("select v from seeded", dbname="clone") == "42"

    pg.drop_database("clone")
    with pytest.raises(PsqlError, match="does not exist"):
        pg.psql("select 1", dbname="clone")
    pg.drop_database("clone", missing_ok=True)


def test_psql_raises_on_sql_error(pg: PostgresServer) -> None:
    with pytest.raises(PsqlError, match="no_such_table"):
        pg.psql("select * from no_such_table")


def test_redis_kill_and_restart(tmp_path_factory: pytest.TempPathFactory) -> None:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        client = redis.Redis.from_url(server.url(), socket_timeout=2)
        try:
            assert client.set("k", "v")
            assert client.get("k") == b"v"
            server.flushall()
            assert client.get("k") is None

            server.kill()
            with pytest.raises(redis.ConnectionError):
                client.ping()

            server.restart()
            assert client.ping()
            # Without persistence the restarted server starts empty.
            assert client.dbsize() == 0
        finally:
            client.close()


def test_redis_appendonly_keeps_data_across_kill(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with RedisServer(tmp_path_factory.mktemp("redis-aof"), appendonly=True) as server:
        assert server.command("SET", "durable", "yes") == b"+OK"
        server.kill()
        with pytest.raises(ConnectionRefusedError):
            server.command("PING")
        server.restart()
        assert server.command("GET", "durable") == b"$3"
        client = redis.Redis.from_url(server.url(), socket_timeout=2)
        try:
            assert client.get("durable") == b"yes"
        finally:
            client.close()
