"""Benchmark 4: capacity: memory per idle WebSocket connection, and of many active streams.

Idle connections: a fresh chatrt instance (PostgreSQL + Redis by default) takes a few
warm-up sockets, then its resident memory (``VmRSS`` in /proc) is read; ``bench.load.ws_hold``
(several processes) opens the connections, signed in as a few users, each one answering a
``ping`` so that it is really being served; the memory is read again. The baseline is the
same count held by the bare ``websockets`` server of the fan-out benchmark
(``bench.baselines.fanout_server``). File-descriptor limits are raised to the hard limit in
this process (the servers inherit it) and in each load generator.

Active streams: on another fresh instance, ``bench.load.ws_hold --streams`` opens one
subscribed socket per conversation (memory read with them idle), then starts every answer at
once (paced upstream) and the memory is sampled until the last ``message.done``; the peak
over the idle reading is what the streams hold.

    python -m bench.capacity              # defaults as in docs/benchmarks.md
    python -m bench.capacity --tiny       # seconds; what the test suite runs
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench import support
from bench.fanout import baseline_server
from bench.streaming import chatrt_env

BACKENDS = ("production", "embedded")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000, help="idle connections")
    parser.add_argument(
        "--users", type=int, default=8, help="users the idle sockets share (sign-up is slow)"
    )
    parser.add_argument("--load-processes", type=int, default=2, help="per wave")
    parser.add_argument(
        "--waves",
        type=int,
        default=4,
        help="connections open in this many steps, RSS read after each",
    )
    parser.add_argument("--streams", type=int, default=1000, help="concurrent answers")
    parser.add_argument("--tokens", type=int, default=60, help="tokens per streamed answer")
    parser.add_argument(
        "--rate",
        type=float,
        default=2.0,
        help="tokens/s per answer: slow, so that all the answers are streaming at once",
    )
    parser.add_argument("--runs", type=int, default=1, help="full runs (each takes minutes)")
    parser.add_argument("--backend", choices=BACKENDS, default="production")
    support.add_run_flags(
        parser,
        "sample the chatrt instances with py-spy and write only their top frames, to "
        "their own section (the figures of a profiled run carry the sampling overhead)",
    )
    parser.add_argument(
        "--trace-memory",
        type=int,
        default=0,
        metavar="N",
        help="instead: N idle connections on an instance that traces its allocations "
        "(tracemalloc), and what they added by source file, to its own section",
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.connections, args.users, args.streams, args.waves = 40, 1, 4, 2
        args.tokens, args.rate, args.runs, args.backend = 10, 50.0, 1, "embedded"
    return args


class Holders:
    """``bench.load.ws_hold`` processes, each printing READY and then waiting for a line."""

    def __init__(self, commands: list[list[str]]) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.load.ws_hold", *command],
                cwd=support.ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=support._without_chatrt(os.environ),
            )
            for command in commands
        ]

    def ready(self) -> None:
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "READY":
                raise RuntimeError(f"a load generator said {line!r} ({proc.wait()})")

    def tell(self, line: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(line + "\n")
            proc.stdin.flush()

    def running(self) -> bool:
        return any(proc.poll() is None for proc in self.procs)

    def results(self, timeout: float = 300) -> list[dict[str, Any]]:
        out = []
        for proc in self.procs:
            stdout, _ = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"a load generator failed ({proc.returncode})")
            out.append(json.loads(stdout.strip().splitlines()[-1]))
        return out

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def holders(commands: list[list[str]]) -> Iterator[Holders]:
    group = Holders(commands)
    try:
        yield group
    finally:
        group.kill()


def settle(pid: int) -> int:
    """RSS once it stops moving (within 64 KiB over half a second), or after 10 s."""
    last = support.rss_kib(pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = support.rss_kib(pid)
        if abs(now - last) <= 64:
            return now
        last = now
    return last


def hold_idle(args: argparse.Namespace, url: str, pid: int, chatrt: bool) -> dict[str, Any]:
    """Open the idle connections against ``url`` in waves; memory before and after each."""
    auth = ["--ping", "--origin", support.ORIGIN] if chatrt else []
    # Warm-up: first-use imports and caches are not a connection's cost.
    with holders(
        [["--url", url, "--idle", "20", *(["--users", "1"] if chatrt else []), *auth]]
    ) as warm:
        warm.ready()
        warm.tell("QUIT")
        warm.results()
    readings = [(0, settle(pid))]
    wave = args.connections // args.waves
    share, extra = divmod(wave, args.load_processes)
    per_holder = max(1, args.users // (args.waves * args.load_processes)) if chatrt else 0
    opened_s = 0.0
    with contextlib.ExitStack() as stack:
        groups = []
        for _ in range(args.waves):
            commands = [
                ["--url", url, "--idle", str(share + (n < extra)), *auth,
                 *(["--users", str(per_holder)] if chatrt else [])]
                for n in range(args.load_processes)
            ]  # fmt: skip
            group = stack.enter_context(holders(commands))
            started = time.monotonic()
            group.ready()
            opened_s += time.monotonic() - started
            groups.append(group)
            readings.append((readings[-1][0] + wave, settle(pid)))
        for group in groups:
            group.tell("QUIT")
        results = [r for group in groups for r in group.results()]
    steps = [
        (kib - before_kib) / (count - before_count)
        for (before_count, before_kib), (count, kib) in itertools.pairwise(readings)
    ]
    connections = readings[-1][0]
    return {
        "connections": connections,
        "before_kib": readings[0][1],
        "after_kib": readings[-1][1],
        "per_connection_kib": (readings[-1][1] - readings[0][1]) / connections,
        "per_wave_kib": steps,
        "opened": sum(r["opened"] for r in results),
        "still_open": sum(r["still_open"] for r in results),
        "seconds": opened_s,
    }


def hold_streams(args: argparse.Namespace, url: str, pid: int) -> dict[str, Any]:
    deadline = 2 * args.tokens / args.rate + 60
    with holders(
        [["--url", url, "--origin", support.ORIGIN, "--streams", str(args.streams),
          "--deadline", str(deadline)]]
    ) as group:  # fmt: skip
        group.ready()
        idle = settle(pid)
        group.tell("GO")
        peak, active = idle, 0
        while group.running():
            peak = max(peak, support.rss_kib(pid))
            active = max(active, generations_active(url))
            time.sleep(0.1)
        result = group.results()[0]
    return {
        "idle_kib": idle,
        "peak_kib": peak,
        "active_max": active,
        # Per answer generating at the peak: with a burst of sends, not all overlap.
        "per_stream_kib": (peak - idle) / max(1, active),
        **result,
    }


def snapshot(pid: int, prefix: Path, n: int) -> dict[str, tuple[int, int]]:
    """Ask the traced process for snapshot ``n``: {file: (bytes, blocks)}."""
    os.kill(pid, signal.SIGUSR1)
    path = Path(f"{prefix}.{n}")
    deadline = time.monotonic() + 120
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("no tracemalloc snapshot came")
        time.sleep(0.2)
    stats = {}
    for line in path.read_text().splitlines():
        size, count, name = line.split(" ", 2)
        stats[name] = (int(size), int(count))
    return stats


def trace_memory(args: argparse.Namespace) -> str:
    """What ``--trace-memory`` idle connections add, by source file (bytes per connection)."""
    count = args.trace_memory
    with support.workdir() as work, contextlib.ExitStack() as stack:
        if args.backend == "production":
            backend = stack.enter_context(support.production_backend(work))
        else:
            backend = support.embedded_backend(work)
        prefix = work / "snapshot"
        env = (
            backend
            | support.UNLIMITED
            | {
                "CHATRT_ALLOWED_ORIGINS": support.ORIGIN,
                "CHATRT_LOG_LEVEL": "warning",
                "PYTHONPATH": str(support.ROOT / "bench" / "memtrace"),
                "BENCH_TRACEMALLOC": str(prefix),
            }
        )
        url = stack.enter_context(support.chatrt(env, work, "traced"))
        pid = support.SERVED[url]
        auth = ["--ping", "--origin", support.ORIGIN, "--users", "1"]
        with holders([["--url", url, "--idle", "20", *auth]]) as warm:
            warm.ready()
            warm.tell("QUIT")
            warm.results()
        settle(pid)
        before = snapshot(pid, prefix, 0)
        with holders([["--url", url, "--idle", str(count), *auth]]) as group:
            group.ready()
            settle(pid)
            after = snapshot(pid, prefix, 1)
            group.tell("QUIT")
            group.results()
    added = {
        name: (after[name][0] - before.get(name, (0, 0))[0],
               after[name][1] - before.get(name, (0, 0))[1])
        for name in after
    }  # fmt: skip
    ranked = sorted(added.items(), key=lambda item: item[1][0], reverse=True)
    total = sum(size for size, _ in added.values())
    lines = [
        "### What an idle connection holds (tracemalloc)",
        "",
        f"`python -m bench.capacity --trace-memory {count}` ({support.now()}): {count:,} idle "
        "connections on an instance running Python's `tracemalloc`, snapshot before and "
        "after, the difference by the source file that allocated it. Python's own "
        f"allocations: {total / count / 1024:.1f} KiB per connection in all (RSS adds the "
        "allocator's overhead and free space on top).",
        "",
        "| allocated in | bytes per connection | blocks per connection |",
        "|---|---|---|",
        *(
            f"| `{support._short(f'x ({name}:0)')[3:-1]}` | {size / count:,.0f} | "
            f"{blocks / count:.1f} |"
            for name, (size, blocks) in ranked[:15]
        ),
    ]
    return "\n".join(lines)


def generations_active(url: str) -> int:
    """``chatrt_generations_active`` from the instance's public ``/metrics``."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.TransportError:
        return 0
    for line in text.splitlines():
        if line.startswith("chatrt_generations_active"):
            return int(float(line.split()[-1]))
    return 0


def measure(args: argparse.Namespace, profiles: dict[str, list[str]]) -> dict[str, list[Any]]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers
    results: dict[str, list[Any]] = {"chatrt": [], "baseline": [], "streams": []}
    with support.workdir() as work, contextlib.ExitStack() as stack:
        if args.backend == "production":
            backend = stack.enter_context(support.production_backend(work))
        else:
            backend = support.embedded_backend(work)
            # Migrated once here: two instances starting side by side on one SQLite file
            # would both migrate it at start, and one would trip over the other.
            support.migrate(backend)
        upstream = stack.enter_context(support.upstream(work, args.tokens, args.rate))
        env = chatrt_env(backend, upstream)
        redis_url = backend.get("CHATRT_REDIS_URL")
        for run in range(args.runs):
            names = [f"idle-{run}", f"streams-{run}"]
            # Both fresh, started side by side; the second waits idle while the first is used.
            traced = [work / f"profile-{n}-0.txt" if args.profile and run == 0 else None
                      for n in ("idle", "streams")]  # fmt: skip
            with support.chatrt_group(env, work, names, traced) as (idle_url, streams_url):
                results["chatrt"].append(hold_idle(args, idle_url, support.SERVED[idle_url], True))
                if redis_url is not None:
                    with baseline_server(work, redis_url, f"baseline-{run}") as url:
                        results["baseline"].append(hold_idle(args, url, support.SERVED[url], False))
                results["streams"].append(
                    hold_streams(args, streams_url, support.SERVED[streams_url])
                )
            print(
                f"run {run + 1}: idle {results['chatrt'][-1]['per_connection_kib']:.1f} KiB, "
                f"streams {results['streams'][-1]['per_stream_kib']:.1f} KiB",
                file=sys.stderr,
                flush=True,
            )
        if args.profile:
            for kind, label in (("idle", "idle connections"), ("streams", "active streams")):
                profiles[kind] = support.profile_tables(
                    f"chatrt holding {label}", work / f"profile-{kind}-0.txt"
                )
    return results


def _kib(value: float) -> str:
    return f"{value / 1024:,.0f} MiB" if value >= 10 * 1024 else f"{value:,.0f} KiB"


def report(args: argparse.Namespace, results: dict[str, list[Any]], machine: str) -> str:
    idle, base, streams = results["chatrt"], results["baseline"], results["streams"]
    per = support.median([w for r in idle for w in r["per_wave_kib"]])
    kb = per * 1.024  # the target is in KB (1,000 bytes)
    backend = "PostgreSQL + Redis" if args.backend == "production" else "embedded (SQLite + memory)"
    lines = [
        "## Capacity (benchmark 4)",
        "",
        f"Measured {support.now()} on {machine}.",
        "The machine is shared and was busy with other work; each figure is the median of the "
        "runs, each on a fresh process.",
        "",
        f"Parameters: one chatrt instance ({backend}); {args.connections:,} idle WebSocket "
        f"connections opened in {args.waves} waves (RSS read after each; the per-connection "
        f"figure is the median of the waves' increments), {args.load_processes} load generator "
        f"processes per wave, signed in as {args.users} users (sign-up runs argon2, slow on "
        "purpose), each socket answering a `ping` before it counts; then, on another fresh "
        f"instance, {args.streams:,} answers of {args.tokens} tokens at {args.rate:g} tokens/s "
        "(slow, so that all of them stream at once), 100 conversations per user followed by "
        f"10 sockets of 10 conversations each. {args.runs} run(s). Memory is the process's "
        "`VmRSS` from /proc, read once it has settled.",
        "",
        "| Measured | RSS before | RSS with them | per connection (median of the waves) | each "
        "wave | target | still open at the end |",
        "|---|---|---|---|---|---|---|",
        f"| chatrt, {args.connections:,} idle WebSockets | "
        f"{_kib(support.median([r['before_kib'] for r in idle]))} | "
        f"{_kib(support.median([r['after_kib'] for r in idle]))} | {per:.1f} KiB ({kb:.1f} KB) | "
        + ", ".join(f"{w:.1f}" for r in idle for w in r["per_wave_kib"])
        + f" KiB | <= 30 KB ({'met' if kb <= 30 else 'missed'}) | "
        f"{min(r['still_open'] for r in idle):,} of {args.connections:,} |",
    ]
    if base:
        base_per = support.median([w for r in base for w in r["per_wave_kib"]])
        lines.append(
            f"| baseline: bare `websockets` server, {args.connections:,} idle connections | "
            f"{_kib(support.median([r['before_kib'] for r in base]))} | "
            f"{_kib(support.median([r['after_kib'] for r in base]))} | {base_per:.1f} KiB | "
            + ", ".join(f"{w:.1f}" for r in base for w in r["per_wave_kib"])
            + f" KiB | - (chatrt {per / base_per:.1f}x) | "
            f"{min(r['still_open'] for r in base):,} of {args.connections:,} |"
        )
    opened = support.median([r["seconds"] for r in idle])
    stream_per = support.median([r["per_stream_kib"] for r in streams])
    lost = sum(r["lost"] for r in streams)
    lines += [
        "",
        f"chatrt took {opened:.0f} s (median) to accept and serve the {args.connections:,} "
        "connections.",
        "",
        "| Measured | RSS, sockets open and idle | peak while streaming | per active stream "
        "(median) | per run | most answers generating at once | answers lost / of which timed "
        "out |",
        "|---|---|---|---|---|---|---|",
        f"| chatrt, {args.streams:,} answers streaming at once | "
        f"{_kib(support.median([r['idle_kib'] for r in streams]))} | "
        f"{_kib(support.median([r['peak_kib'] for r in streams]))} | {stream_per:.1f} KiB | "
        + ", ".join(f"{r['per_stream_kib']:.1f}" for r in streams)
        + f" KiB | {min(r['active_max'] for r in streams):,} | {lost} / "
        f"{sum(r['timed_out'] for r in streams)} |",
        "",
        "The issue sets no target for active streams, and no bare-library baseline does the "
        "same job (a generation holds an upstream HTTP stream, a coalescer, a lease, a log "
        "and its subscribers' delivery state), so the figure stands alone. A stream's cost "
        "is the peak RSS while streaming over the reading with the sockets already open and "
        "subscribed, divided by the most answers generating at once "
        "(`chatrt_generations_active` on `/metrics`, sampled every 0.1 s): the sends arrive "
        "as one burst that the instance takes seconds to accept, so not every answer "
        "overlaps every other.",
        "",
        f"Reproduce: `python -m bench.capacity --connections {args.connections} --users "
        f"{args.users} --load-processes {args.load_processes} --streams {args.streams} "
        f"--tokens {args.tokens} --rate {args.rate:g} --runs {args.runs} --backend "
        f"{args.backend}` from the repository root, in the dev venv, with PostgreSQL and "
        "Redis binaries installed as for the test suite.",
    ]
    return "\n".join(lines)


def profile_report(args: argparse.Namespace, profiles: dict[str, list[str]]) -> str:
    lines = [
        "### Where chatrt's time goes holding connections and streams (py-spy)",
        "",
        f"`python -m bench.capacity --profile` ({support.now()}, {args.connections:,} idle "
        f"connections, then {args.streams:,} streams; first run only). {support.PROFILE_NOTE}",
    ]
    for tables in profiles.values():
        lines += tables
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.trace_memory:
        traced = trace_memory(args)
        support.write_section("capacity-memory", traced, args.output)
        print(traced)
        return
    machine = support.machine()
    profiles: dict[str, list[str]] = {}
    results = measure(args, profiles)
    text = report(args, results, machine)
    if not args.profile:  # a profiled run's figures carry the sampling overhead
        support.write_section("capacity", text, args.output)
    print(text)
    if profiles:
        profiled = profile_report(args, profiles)
        support.write_section("capacity-profile", profiled, args.output)
        print(profiled)


if __name__ == "__main__":
    main()
