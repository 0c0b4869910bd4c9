"""Throwaway PostgreSQL and Redis servers for the test suite.

Each server runs as a child of the test process, on its own port and in its
own directory, so tests can stop, kill -9 and restart it freely.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pathlib
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

__all__ = ["PostgresServer", "PsqlError", "RedisServer", "free_port"]

_POLL_INTERVAL = 0.05
_LOG_TAIL_CHARS = 4000
_KILL_WAIT = 10.0

# Strong references on purpose: a server whose object was dropped without
# stop() must still be killed at exit.
_live_servers: set[_Server] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PsqlError(RuntimeError):
    """A psql invocation failed."""

    def __init__(self, sql: str, returncode: int, stderr: str) -> None:
        super().__init__(f"psql exited with {returncode} for {sql!r}: {stderr.strip()}")
        self.sql = sql
        self.returncode = returncode
        self.stderr = stderr


def _process_table() -> dict[int, tuple[int, str]]:
    """Map pid -> (ppid, state) for every process visible in /proc."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = pathlib.Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces or parentheses; fields after the
        # last ")" are fixed.
        fields = raw[raw.rfind(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), fields[0])
    return table


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _state) in _process_table().items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _wait_gone(pids: Iterable[int], deadline: float) -> None:
    """Wait until each pid has exited (zombies count as exited)."""
    remaining = set(pids)
    while remaining:
        table = _process_table()
        remaining = {p for p in remaining if p in table and table[p][1] not in ("Z", "X")}
        if not remaining or time.monotonic() > deadline:
            return
        time.sleep(_POLL_INTERVAL)


def _read_tail(path: pathlib.Path, offset: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    text = data.decode("utf-8", "replace")
    return text[-_LOG_TAIL_CHARS:] if text else "<log is empty>"


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # Stray PG* variables from a developer shell (PGDATA, PGPASSWORD,
    # PGOPTIONS, ...) would silently change what we connect to or start.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    # Keep messages in English so log matching ("Address already in use")
    # works regardless of the host locale.
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    if extra:
        env.update(extra)
    return env


class _Server:
    """Shared lifecycle: spawn, readiness polling, stop, kill -9, restart."""

    name = "server"
    log_name = "server.log"
    start_timeout = 30.0
    stop_timeout = 30.0
    stop_signal = signal.SIGTERM

    def __init__(self, base_dir: pathlib.Path) -> None:
        self.base_dir = pathlib.Path(base_dir).resolve()
        self.port = free_port()
        self.log_path = self.base_dir / self.log_name
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_once = False

    # -- subclass hooks -------------------------------------------------

    def _prepare(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict[str, Any]:
        return {}

    def _is_ready(self) -> bool:
        raise NotImplementedError

    # -- lifecycle ------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the server and wait until it answers."""
        if self.running:
            raise RuntimeError(f"{self.name} on port {self.port} is already running")
        self._prepare()
        # free_port() can race with other processes; once the server has been
        # up the port is part of its identity (DSNs are handed out), so only
        # the very first start may move to another port.
        attempts = 1 if self._started_once else 3
        for attempt in range(1, attempts + 1):
            try:
                self._launch()
            except _PortInUseError as exc:
                if attempt == attempts:
                    raise RuntimeError(str(exc)) from None
                self.port = free_port()
            else:
                self._started_once = True
                return

    def stop(self) -> None:
        """Shut down gracefully; fall back to kill -9 after a deadline."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, self.stop_signal)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._kill_tree(proc)
        self._proc = None
        _live_servers.discard(self)

    def kill(self) -> None:
        """SIGKILL the server and everything it spawned, then wait for exit."""
        proc = self._proc
        if proc is None:
            return
        self._kill_tree(proc)
        self._proc = None
        _live_servers.discard(self)

    def restart(self) -> None:
        """Start again on the same port and directory (after stop or kill)."""
        if self.running:
            self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------

    def _launch(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            offset = log.tell()
            # A new session makes the server immune to the terminal's Ctrl-C
            # and gives us a process group that we alone own.
            proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._popen_kwargs(),
            )
        self._proc = proc
        _live_servers.add(self)
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = proc.poll()
            if code is not None:
                self._fail_start(proc, offset, f"exited with code {code}")
            if self._is_ready():
                return
            if time.monotonic() > deadline:
                self._fail_start(proc, offset, f"not ready after {self.start_timeout:.0f}s")
            time.sleep(_POLL_INTERVAL)

    def _fail_start(self, proc: subprocess.Popen[bytes], offset: int, reason: str) -> None:
        self._kill_tree(proc)
        self._proc = None
        _live_servers.discard(self)
        tail = _read_tail(self.log_path, offset)
        message = (
            f"{self.name} on port {self.port} failed to start ({reason});"
            f" log {self.log_path}:\n{tail}"
        )
        if "Address already in use" in tail and not self._started_once:
            raise _PortInUseError(message)
        raise RuntimeError(message)

    @staticmethod
    def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
        # Postgres backends call setsid(), so killing our process group alone
        # would leave them running and attached to shared memory, which makes
        # the next postmaster refuse to start. Freeze the leader so it cannot
        # fork while we collect its descendants, then kill them all.
        victims: list[int] = []
        if proc.returncode is None:
            # Until we reap it the leader's pid cannot be reused, so
            # signalling it and its process group is safe.
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGSTOP)
            victims = _descendants(proc.pid)
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + _KILL_WAIT
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_KILL_WAIT)
        # Orphans are re-parented to pid 1, which may never reap them; a
        # zombie holds no sockets or shared memory, so that is good enough.
        _wait_gone(victims, deadline)


class _PortInUseError(RuntimeError):
    pass


@atexit.register
def _kill_leftovers() -> None:
    # Servers live in their own session and would outlive a test run that
    # forgot to stop them.
    for server in list(_live_servers):
        with contextlib.suppress(Exception):
            server.kill()


def _find_pg_bin_dir() -> pathlib.Path:
    def version_key(path: pathlib.Path) -> tuple[int, ...]:
        name = path.parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    candidates = [p.parent for p in pathlib.Path("/usr/lib/postgresql").glob("*/bin/postgres")]
    if candidates:
        return max(candidates, key=version_key)
    found = shutil.which("postgres")
    if found:
        return pathlib.Path(found).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresServer(_Server):
    """A private PostgreSQL cluster tuned for speed, not durability."""

    name = "postgres"
    log_name = "postgres.log"
    stop_signal = signal.SIGINT  # "fast" shutdown: abort sessions, don't wait for clients

    def __init__(
        self, base_dir: pathlib.Path, *, settings: Mapping[str, str] | None = None
    ) -> None:
        """``settings`` adds or overrides server settings (``-c key=value``)."""
        super().__init__(base_dir)
        self.settings = dict(settings or {})
        self.bin_dir = _find_pg_bin_dir()
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "sock"
        self._as_root = os.geteuid() == 0
        self._pg_user = pwd.getpwnam("postgres") if self._as_root else None

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run one SQL string; return unaligned tuples-only output minus the final newline."""
        result = self._run_psql(sql, dbname, timeout=60.0)
        if result.returncode != 0:
            raise PsqlError(sql, result.returncode, result.stderr)
        return result.stdout.removesuffix("\n")

    def create_database(self, name: str, template: str | None = None) -> None:
        """CREATE DATABASE, cloning ``template`` (which must have no connections)."""
        sql = f"CREATE DATABASE {_quote_ident(name)}"
        if template is not None:
            sql += f" TEMPLATE {_quote_ident(template)}"
        self.psql(sql)

    def drop_database(self, name: str, *, missing_ok: bool = False) -> None:
        """DROP DATABASE, terminating any sessions still connected to it."""
        if_exists = " IF EXISTS" if missing_ok else ""
        self.psql(f"DROP DATABASE{if_exists} {_quote_ident(name)} WITH (FORCE)")

    # -- hooks ----------------------------------------------------------

    def _prepare(self) -> None:
        super()._prepare()
        for path in (self.data_dir, self.socket_dir):
            path.mkdir(mode=0o700, exist_ok=True)
        if self._pg_user is not None:
            self._grant_traverse()
            for path in (self.data_dir, self.socket_dir):
                os.chown(path, self._pg_user.pw_uid, self._pg_user.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()

    def _initdb(self) -> None:
        cmd = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]
        result = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **self._popen_kwargs(),
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-_LOG_TAIL_CHARS:]
            raise RuntimeError(f"initdb failed with code {result.returncode}:\n{output}")

    def _command(self) -> list[str]:
        # synchronous_commit=off means a commit acknowledged less than ~0.6s
        # (3 x wal_writer_delay) before kill() may be lost on recovery; fault
        # tests asserting durability should pass synchronous_commit="on".
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
            **self.settings,
        }
        cmd = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"cwd": self.base_dir, "env": _clean_env()}
        if self._pg_user is not None:
            # Drop privileges in the child itself rather than via runuser:
            # runuser would sit between us and the postmaster, and after a
            # kill -9 the orphaned postmaster becomes a zombie under a pid 1
            # that may never reap it. Its pid stays "alive" and the next start
            # refuses with "lock file postmaster.pid already exists".
            kwargs.update(
                user=self._pg_user.pw_uid,
                group=self._pg_user.pw_gid,
                extra_groups=[],
            )
        return kwargs

    def _is_ready(self) -> bool:
        try:
            result = self._run_psql("select 1", "postgres", timeout=5.0)
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0 and result.stdout.strip() == "1"

    # -- internals ------------------------------------------------------

    def _run_psql(self, sql: str, dbname: str, timeout: float) -> subprocess.CompletedProcess[str]:
        cmd = [
            str(self.bin_dir / "psql"),
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            dbname,
            "-c",
            sql,
        ]
        return subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=_clean_env({"PGCONNECT_TIMEOUT": "3"}),
        )

    def _grant_traverse(self) -> None:
        # pytest's temp dirs are mode 0700 and owned by root, so the postgres
        # user could not reach its own data directory. Adding only the search
        # bit lets it pass through without being able to list anything.
        assert self._pg_user is not None
        for path in (self.base_dir, *self.base_dir.parents):
            st = path.stat()
            if st.st_uid == self._pg_user.pw_uid or st.st_mode & stat.S_IXOTH:
                continue
            path.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


class RedisServer(_Server):
    """A private redis-server, optionally with an append-only file."""

    name = "redis"
    log_name = "redis.log"
    start_timeout = 10.0

    def __init__(self, base_dir: pathlib.Path, appendonly: bool = False) -> None:
        super().__init__(base_dir)
        self.appendonly = appendonly
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found on PATH")
        self.binary = pathlib.Path(binary)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def flushall(self) -> None:
        reply = self.command("FLUSHALL")
        if reply != b"+OK":
            raise RuntimeError(f"FLUSHALL failed: {reply!r}")

    def command(self, *args: str) -> bytes:
        """Send one command over a raw socket; return the first reply line."""
        payload = f"*{len(args)}\r\n".encode()
        for arg in args:
            data = arg.encode()
            payload += b"$%d\r\n%s\r\n" % (len(data), data)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5.0) as sock:
            sock.sendall(payload)
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        return reply.split(b"\r\n", 1)[0]

    def _command(self) -> list[str]:
        return [
            str(self.binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--dir",
            str(self.base_dir),
            "--daemonize",
            "no",
        ]

    def _popen_kwargs(self) -> dict[str, Any]:
        return {"cwd": self.base_dir, "env": _clean_env()}

    def _is_ready(self) -> bool:
        try:
            # -LOADING replies while the AOF is replayed count as not ready.
            return self.command("PING") == b"+PONG"
        except OSError:
            return False
