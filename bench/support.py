"""Orchestration helpers shared by the benchmark commands (never used by load generators).

Starts the fake upstream, PostgreSQL/Redis (reusing the test suite's throwaway servers) and
``chatrt serve`` as subprocesses; runs load generators as subprocesses and reads their JSON;
describes the machine; writes a benchmark's section of the results Markdown file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from tests.support.servers import PostgresServer, RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.md"
ORIGIN = "http://bench.invalid"
SECRET = "bench-secret-key-0123456789abcdef0123456789"

# Benchmarks measure the hot path, not the abuse limits: 0 switches each limit off.
UNLIMITED = {
    "CHATRT_RATE_LIMIT_IP_PER_WINDOW": "0",
    "CHATRT_RATE_LIMIT_USER_PER_WINDOW": "0",
    "CHATRT_WS_SENDS_PER_WINDOW": "0",
    "CHATRT_LOGIN_PER_EMAIL": "0",
    "CHATRT_LOGIN_PER_IP": "0",
    "CHATRT_REGISTER_PER_IP": "0",
}


def add_run_flags(parser: argparse.ArgumentParser, profile_help: str) -> None:
    """The flags every benchmark command shares: ``--tiny``, ``--output`` and ``--profile``."""
    parser.add_argument("--tiny", action="store_true", help="a few seconds' worth, for tests")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--profile", action="store_true", help=profile_help)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def machine() -> str:
    """Cores, memory and load, from /proc where it exists."""
    cores = os.cpu_count() or 0
    memory = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        if found:
            model = found.group(1).strip()
    load = "?"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (
        f"{cores} cores ({model}), {memory} RAM, load average at start {load}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def write_section(name: str, body: str, path: Path = RESULTS) -> None:
    """Replace this benchmark's section of the results file (or append it)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def run_json(args: list[str], timeout: float = 300) -> dict[str, Any]:
    """Run a load generator (``python -m ...``) and parse the JSON it prints."""
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_without_chatrt(os.environ),
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_json_parallel(commands: list[list[str]], timeout: float = 300) -> list[dict[str, Any]]:
    """``run_json`` for several load generators at once (each its own process and core)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_without_chatrt(os.environ),
        )
        for args in commands
    ]
    results = []
    try:
        for args, proc in zip(commands, procs, strict=True):
            out, err = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"{args[0]} failed ({proc.returncode}):\n{err[-3000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def rss_kib(pid: int) -> int:
    """Resident memory of a process now (``VmRSS`` from /proc), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def _without_chatrt(env: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith(("CHATRT_", "PICCOLO_"))}


class Process:
    """A child process in its own session, stopped with SIGTERM then SIGKILL."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def _wait(predicate: Any, within_s: float, what: str, proc: Process) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if not proc.alive():
            raise RuntimeError(f"{what} exited:\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not get ready:\n{proc.tail()}")
        time.sleep(0.05)


@contextlib.contextmanager
def upstream(workdir: Path, tokens: int, rate: float = 0.0, stamp: bool = False) -> Iterator[str]:
    """The bench upstream as a process; yields its OpenAI base URL."""
    port = free_port()
    proc = Process(
        [
            sys.executable,
            "-m",
            "bench.upstream",
            "--tokens",
            str(tokens),
            "--rate",
            str(rate),
            "--port",
            str(port),
            *(["--stamp"] if stamp else []),
        ],
        _without_chatrt(os.environ),
        workdir / f"upstream-{port}.log",
    )
    try:
        _wait(lambda: "PORT" in proc.log.read_text(), 30, "upstream", proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.stop()


@contextlib.contextmanager
def chatrt(
    env: dict[str, str], workdir: Path, name: str, profile: Path | None = None
) -> Iterator[str]:
    """``python -m chatrt serve`` with only the given CHATRT_* variables; yields its URL.

    With ``profile``, py-spy samples the process from ready to stop and writes its raw
    (collapsed stacks) output there.
    """
    with chatrt_group(env, workdir, [name], [profile]) as urls:
        yield urls[0]


SERVED: dict[str, int] = {}
"""The process id of each running ``chatrt serve``, by URL (for reading its memory)."""


@contextlib.contextmanager
def chatrt_group(
    env: dict[str, str],
    workdir: Path,
    names: list[str],
    profiles: Sequence[Path | None] | None = None,
) -> Iterator[list[str]]:
    """Several ``chatrt serve`` processes started side by side (each takes seconds to get
    ready); yields their URLs. ``profiles``: as ``chatrt``'s ``profile``, one per name."""
    with contextlib.ExitStack() as stack:
        started = []
        for name in names:
            port = free_port()
            proc = Process(
                [sys.executable, "-m", "chatrt", "serve", "--port", str(port)],
                _without_chatrt(os.environ) | env,
                workdir / f"{name}.log",
            )
            stack.callback(proc.stop)
            started.append((name, proc, f"http://127.0.0.1:{port}"))
            SERVED[f"http://127.0.0.1:{port}"] = proc.proc.pid
        for (name, proc, url), profile in zip(
            started, profiles or [None] * len(names), strict=True
        ):

            def ready(url: str = url) -> bool:
                try:
                    return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            _wait(ready, 60, name, proc)
            if profile is not None:
                stack.enter_context(_py_spy(proc, profile, workdir, name))
        yield [url for _, _, url in started]


@contextlib.contextmanager
def _py_spy(proc: Process, profile: Path, workdir: Path, name: str) -> Iterator[None]:
    spy = Process(
        [str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
         str(proc.proc.pid), "--format", "raw", "--rate", "200", "--nonblocking", "--gil",
         "--output", str(profile)],
        dict(os.environ),
        workdir / f"{name}-py-spy.log",
    )  # fmt: skip
    try:
        yield
    finally:
        # SIGINT makes py-spy write its output and exit.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(spy.proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.proc.wait(timeout=30)
        spy.stop()


_PREFIXES = re.compile(r"\((?:/[^()]*/(?:site-packages|lib/python3\.\d+|src)/)")


def _short(frame: str) -> str:
    """``func (/abs/.../site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py)``."""
    return _PREFIXES.sub("(", re.sub(r":\d+\)$", ")", frame))


def top_frames(raw: Path, count: int = 15) -> list[tuple[str, float, float]]:
    """From py-spy's raw output: (function, self %, inclusive %) for the busiest functions."""
    own: dict[str, int] = {}
    total_in: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        n = int(number)
        samples += n
        # Frames look like "func (path/to/file.py:123)"; drop the line and the venv prefix.
        frames = [_short(f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            total_in[frame] = total_in.get(frame, 0) + n
    if not samples:
        return []
    ranked = sorted(own, key=lambda f: own[f], reverse=True)[:count]
    return [(f, 100 * own[f] / samples, 100 * total_in[f] / samples) for f in ranked]


def top_inclusive(raw: Path, needle: str, count: int = 15) -> list[tuple[str, float]]:
    """Functions whose frame mentions ``needle`` (e.g. ``chatrt/``), by inclusive share."""
    total_in: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        samples += int(number)
        for frame in {_short(f) for f in stack.split(";")}:
            if needle in frame:
                total_in[frame] = total_in.get(frame, 0) + int(number)
    ranked = sorted(total_in, key=lambda f: total_in[f], reverse=True)[:count]
    return [(f, 100 * total_in[f] / samples) for f in ranked] if samples else []


PROFILE_NOTE = (
    "py-spy sampled the chatrt process at 200 Hz for the whole run with `--gil` (only the "
    "thread holding the GIL, so shares are of Python CPU time; C code that releases the GIL, "
    "such as SQLite's, is not counted) and `--nonblocking` (some stacks come out truncated, so "
    "inclusive shares are lower bounds)."
)


def profile_tables(label: str, raw: Path) -> list[str]:
    """Markdown: the busiest frames by own time, and chatrt's functions by inclusive time."""
    return [
        "",
        f"**{label}**: top frames by own time",
        "",
        "| function (file) | own % | inclusive % |",
        "|---|---|---|",
        *(f"| `{f}` | {a:.1f} | {b:.1f} |" for f, a, b in top_frames(raw)),
        "",
        f"**{label}**: chatrt's own functions by inclusive time",
        "",
        "| function (file) | inclusive % |",
        "|---|---|",
        *(f"| `{f}` | {b:.1f} |" for f, b in top_inclusive(raw, "chatrt/")),
    ]


def migrate(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chatrt", "migrate"],
        cwd=ROOT,
        env=_without_chatrt(os.environ) | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"chatrt migrate failed:\n{done.stdout}\n{done.stderr}")


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="chatrt-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def production_backend(base: Path) -> Iterator[dict[str, str]]:
    """PostgreSQL and Redis, migrated; yields the CHATRT_* variables that reach them."""
    # Not under the bench's own temp dir's 0700 parents: postgres runs as its own user.
    pg_base = Path(tempfile.mkdtemp(prefix="chatrt-bench-pg-"))
    try:
        with PostgresServer(pg_base) as pg, RedisServer(base / "redis") as redis:
            pg.create_database("bench")
            env = {
                "CHATRT_DATABASE_URL": pg.dsn("bench"),
                "CHATRT_REDIS_URL": redis.url(),
                "CHATRT_SECRET_KEY": SECRET,
            }
            migrate(env)
            yield env
    finally:
        shutil.rmtree(pg_base, ignore_errors=True)


def embedded_backend(base: Path) -> dict[str, str]:
    """The embedded default: a SQLite file, in-process bus and stores."""
    return {"CHATRT_DATABASE_URL": f"sqlite:///{base / 'bench.db'}"}
