"""Benchmark 2: fan-out of streamed answers to many subscribers over two instances.

Two chatrt instances (PostgreSQL + Redis) and 200 WebSocket subscribers split across them
(``bench.load.ws_fanout``, two processes), every subscriber subscribed to every conversation
of one user. At each offered-load step, that many conversations stream an answer at once
from ``bench.upstream --stamp`` (paced; every token's text is its send time), half of them
generated on each instance. Each subscriber counts every delta and measures each token's
latency from the upstream's write to the read that brought it.

The baseline does the same job with the bare libraries: two ``websockets`` server processes
(``bench.baselines.fanout_server``) fed by Redis pub/sub, a publisher process
(``bench.baselines.fanout_publisher``) sending the same frames at the same pace, and the same
subscriber processes. Each step runs on the baseline and then on chatrt, back to back.

    python -m bench.fanout              # defaults as in docs/benchmarks.md
    python -m bench.fanout --tiny       # seconds; what the test suite runs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from tests.support.servers import free_port

from bench import support
from bench.load.ws_fanout import BUCKETS_PER_E, SLOT_US
from bench.streaming import chatrt_env

SYSTEMS = ("baseline", "chatrt")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--load-processes", type=int, default=2, help="subscriber processes")
    parser.add_argument(
        "--steps",
        default="1,4,16,32",
        help="offered-load steps: conversations streaming at once, comma-separated",
    )
    parser.add_argument("--tokens", type=int, default=80, help="tokens per answer")
    parser.add_argument("--rate", type=float, default=20.0, help="tokens/s per answer")
    parser.add_argument("--runs", type=int, default=3)
    support.add_run_flags(
        parser,
        "sample both chatrt instances with py-spy and write only their top frames, to "
        "their own section (the figures of a profiled run carry the sampling overhead)",
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.subscribers, args.steps, args.tokens, args.rate, args.runs = 4, "2", 10, 20.0, 1
    args.steps = [int(s) for s in str(args.steps).split(",") if s]
    if not args.steps or min(args.steps) < 1 or args.subscribers < args.load_processes:
        parser.error("need steps >= 1 and at least one subscriber per load process")
    return args


@contextlib.contextmanager
def baseline_server(work: Path, redis_url: str, name: str) -> Iterator[str]:
    port = free_port()
    proc = support.Process(
        [sys.executable, "-m", "bench.baselines.fanout_server", "--redis", redis_url,
         "--port", str(port)],
        support._without_chatrt(os.environ),
        work / f"{name}.log",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "PORT" not in proc.log.read_text():
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{proc.tail()}")
            time.sleep(0.05)
        support.SERVED[f"http://127.0.0.1:{port}"] = proc.proc.pid
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


class Subscribers:
    """The subscriber processes of one system, driven over their stdin and stdout."""

    def __init__(
        self, args: argparse.Namespace, urls: list[str], conversations: list[str], cookie: str
    ) -> None:
        share, extra = divmod(args.subscribers, args.load_processes)
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.load.ws_fanout", "--urls", ",".join(urls),
                 "--sockets", str(share + (n < extra)), "--conversations",
                 ",".join(conversations), "--tokens", str(args.tokens), "--cookie", cookie,
                 "--origin", support.ORIGIN],
                cwd=support.ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=support._without_chatrt(os.environ),
            )
            for n in range(args.load_processes)
        ]  # fmt: skip

    def _read(self, proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a subscriber process exited ({proc.wait()})")
        return line.strip()

    def ready(self) -> None:
        for proc in self.procs:
            line = self._read(proc)
            if line != "READY":
                raise RuntimeError(f"a subscriber process said {line!r}")

    def step(self, within_s: float, message_ids: list[str]) -> list[dict[str, Any]]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(f"STEP {within_s} {','.join(message_ids)}\n")
            proc.stdin.flush()
        return [json.loads(self._read(proc)) for proc in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError, ValueError):
                assert proc.stdin is not None
                proc.stdin.write("QUIT\n")
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def sign_up(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    response = client.post(
        "/api/auth/register",
        json={"email": f"fanout-{uuid.uuid4().hex[:12]}@example.com",
              "password": "bench password 1234", "display_name": "bench"},
    )  # fmt: skip
    response.raise_for_status()
    return client


def csrf(client: httpx.Client) -> dict[str, str]:
    return {"x-csrftoken": client.cookies.get("csrftoken") or ""}


async def start_answers(
    urls: list[str], cookies: httpx.Cookies, conversations: list[str]
) -> list[str]:
    """POST one message to each conversation, spread over the instances; the answers' ids."""
    headers = {"x-csrftoken": cookies.get("csrftoken") or ""}
    clients = [httpx.AsyncClient(base_url=u, cookies=cookies, timeout=60) for u in urls]

    async def post(n: int, conversation_id: str) -> str:
        client = clients[n % len(clients)]
        for _ in range(100):
            response = await client.post(
                f"/api/conversations/{conversation_id}/messages",
                json={"content": "go"},
                headers=headers,
            )
            if response.status_code != 409:  # the last answer's row may still be closing
                break
            await asyncio.sleep(0.1)
        if response.status_code != 202:
            raise RuntimeError(f"send: {response.status_code} {response.text}")
        message_id: str = response.json()["assistant_message"]["id"]
        return message_id

    try:
        return list(await asyncio.gather(*(post(n, c) for n, c in enumerate(conversations))))
    finally:
        for client in clients:
            await client.aclose()


def summarize(parts: list[dict[str, Any]], offered: float) -> dict[str, Any]:
    """Merge the subscriber processes' reports of one step into its figures."""
    spans: dict[str, list[int]] = {}
    histogram: dict[int, int] = {}
    for part in parts:
        for message_id, (deltas, tokens, first, last) in part["spans"].items():
            merged = spans.setdefault(message_id, [0, 0, 0, 0])
            merged[0] += deltas
            merged[1] += tokens
            if deltas:
                merged[2] = min(merged[2], first) if merged[2] else first
                merged[3] = max(merged[3], last)
        for bucket, count in part["histogram"].items():
            histogram[int(bucket)] = histogram.get(int(bucket), 0) + count
    frames_at: dict[int, int] = {}
    tokens_at: dict[int, int] = {}
    for part in parts:
        for slot, count in part["frames_at"].items():
            frames_at[int(slot)] = frames_at.get(int(slot), 0) + count
        for slot, count in part["tokens_at"].items():
            tokens_at[int(slot)] = tokens_at.get(int(slot), 0) + count
    # The step's rate is measured while every one of its answers was being delivered (the
    # slots wholly between the last first delivery and the first last one), so neither the
    # staggered starts nor the tail of the slowest answer dilute it.
    started = [first for d, _, first, _ in spans.values() if d]
    ended = [last for d, _, _, last in spans.values() if d]
    window = range(max(started) // SLOT_US + 1, min(ended) // SLOT_US) if started else range(0)
    if len(window) < 5:  # too short to tell (tiny runs): the whole step instead
        window = range(min(started) // SLOT_US, max(ended) // SLOT_US + 1) if started else window
    seconds = max(1, len(window)) * SLOT_US / 1e6
    rate = sum(frames_at.get(slot, 0) for slot in window) / seconds
    token_rate = sum(tokens_at.get(slot, 0) for slot in window) / seconds

    def pct(q: float) -> float:
        total = sum(histogram.values())
        seen = 0
        for bucket in sorted(histogram):
            seen += histogram[bucket]
            if seen >= q * total:
                return math.exp((bucket + 0.5) / BUCKETS_PER_E) / 1000
        return float("nan")

    def total(key: str) -> int:
        return sum(int(p[key]) for p in parts)

    return {
        "offered": offered,
        "delivered": rate,
        "delivered_tokens": token_rate,
        "deltas": total("deltas"),
        "tokens": total("tokens"),
        "missing": total("missing"),
        "doubled": total("doubled"),
        "lost": total("lost"),
        "answers": total("answers"),
        "closed": total("closed"),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


def measure(args: argparse.Namespace, profiles: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Per run: {system: [one summary per step]}."""
    runs: list[dict[str, Any]] = []
    with support.workdir() as work:
        with contextlib.ExitStack() as stack:
            _measure(args, work, stack, runs)
        for n in range(2) if args.profile else ():
            raw = work / f"profile-{n}.txt"
            profiles[f"instance {n + 1}"] = support.profile_tables(
                f"chatrt instance {n + 1} of 2", raw
            )
    return runs


def _measure(
    args: argparse.Namespace,
    work: Path,
    stack: contextlib.ExitStack,
    runs: list[dict[str, Any]],
) -> None:
    backend = stack.enter_context(support.production_backend(work))
    redis_url = backend["CHATRT_REDIS_URL"]
    upstream = stack.enter_context(support.upstream(work, args.tokens, args.rate, stamp=True))
    env = chatrt_env(backend, upstream)
    chatrt_urls = stack.enter_context(
        support.chatrt_group(
            env,
            work,
            ["chatrt-0", "chatrt-1"],
            [work / f"profile-{n}.txt" if args.profile else None for n in range(2)],
        )
    )
    baseline_urls = [
        stack.enter_context(baseline_server(work, redis_url, f"baseline-{n}")) for n in range(2)
    ]
    client = sign_up(chatrt_urls[0])
    stack.callback(client.close)
    conversations = []
    for _ in range(max(args.steps)):
        created = client.post("/api/conversations", json={"title": "fanout"}, headers=csrf(client))
        created.raise_for_status()
        conversations.append(created.json()["conversation"]["id"])
    cookie = f"session={client.cookies.get('session')}"
    systems = {
        "baseline": Subscribers(args, baseline_urls, conversations, ""),
        "chatrt": Subscribers(args, chatrt_urls, conversations, cookie),
    }
    for subscribers in systems.values():
        stack.callback(subscribers.stop)
    for subscribers in systems.values():
        subscribers.ready()
    within = 3 * args.tokens / args.rate + 30
    for _ in range(args.runs):
        run: dict[str, list[dict[str, Any]]] = {name: [] for name in SYSTEMS}
        for count in args.steps:
            offered = count * args.rate * args.subscribers
            chosen = conversations[:count]
            ids = [str(uuid.uuid4()) for _ in chosen]
            publisher = subprocess.Popen(
                [sys.executable, "-m", "bench.baselines.fanout_publisher", "--redis", redis_url,
                 "--conversations", ",".join(chosen), "--messages", ",".join(ids),
                 "--tokens", str(args.tokens), "--rate", str(args.rate)],
                cwd=support.ROOT,
                stdout=subprocess.DEVNULL,
                env=support._without_chatrt(os.environ),
            )  # fmt: skip
            parts = systems["baseline"].step(within, ids)
            if publisher.wait(timeout=within) != 0:
                raise RuntimeError("the baseline publisher failed")
            run["baseline"].append(summarize(parts, offered))
            ids = asyncio.run(start_answers(chatrt_urls, client.cookies, chosen))
            run["chatrt"].append(summarize(systems["chatrt"].step(within, ids), offered))
            print(
                f"step {count}: "
                + ", ".join(f"{s} {run[s][-1]['delivered']:,.0f}/s p99 "
                            f"{run[s][-1]['p99_ms']:.1f} ms lost {run[s][-1]['lost']}"
                            for s in SYSTEMS),
                file=sys.stderr,
                flush=True,
            )  # fmt: skip
        runs.append(run)


def _median(runs: list[dict[str, Any]], system: str, step: int, key: str) -> float:
    return support.median([r[system][step][key] for r in runs])


def report(args: argparse.Namespace, runs: list[dict[str, Any]], machine: str) -> str:
    lines = [
        "## Fan-out across instances (benchmark 2)",
        "",
        f"Measured {support.now()} on {machine}.",
        "The machine is shared and was busy with other work, so figures are noisy; each figure",
        "is the median of the runs, and each ratio compares the baseline and chatrt runs of the",
        "same step, taken back to back.",
        "",
        f"Parameters: {args.subscribers} WebSocket subscribers in {args.load_processes} "
        "processes, split evenly over two instances (PostgreSQL + Redis) and each subscribed to "
        "every conversation of the step; at each step that many conversations stream a "
        f"{args.tokens}-token answer at {args.rate:g} tokens/s at once (half generated on each "
        f"instance); offered = conversations x {args.rate:g} tokens/s x {args.subscribers} "
        f"subscribers. {args.runs} runs. Baseline: two `websockets` processes fed by Redis "
        "pub/sub, one frame per token published at the same pace, the same subscribers.",
        "",
        "| offered | baseline delivered | chatrt delivered | ratio | baseline p50 / p99 | "
        "chatrt p50 / p99 | p99 ratio (target <= 1.5) | chatrt tokens missing / answers lost "
        "/ sockets closed | baseline missing / lost |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    p99_ok: list[bool] = []
    kept_up: list[int] = []
    for n, count in enumerate(args.steps):
        offered = count * args.rate * args.subscribers
        frames = _median(runs, "chatrt", n, "delivered")
        tokens = _median(runs, "chatrt", n, "delivered_tokens")
        ratio = support.median(
            [r["chatrt"][n]["delivered"] / r["baseline"][n]["delivered"] for r in runs]
        )
        p99_ratio = support.median(
            [r["chatrt"][n]["p99_ms"] / r["baseline"][n]["p99_ms"] for r in runs]
        )
        # A step counts for the latency target while chatrt keeps up with it (its tokens).
        keeps_up = tokens >= 0.9 * offered
        if keeps_up:
            kept_up.append(count)
            p99_ok.append(p99_ratio <= 1.5)
        verdict = ("met" if p99_ratio <= 1.5 else "missed") if keeps_up else "not kept up"

        def total(system: str, key: str, step: int = n) -> int:
            return sum(int(r[system][step][key]) for r in runs)

        lines.append(
            f"| {offered:,.0f} token deliveries/s ({count} conversations) | "
            f"{_median(runs, 'baseline', n, 'delivered'):,.0f} frames/s | "
            f"{frames:,.0f} frames/s, {tokens:,.0f} tokens/s | {ratio:.2f} | "
            f"{_median(runs, 'baseline', n, 'p50_ms'):.1f} / "
            f"{_median(runs, 'baseline', n, 'p99_ms'):.1f} ms | "
            f"{_median(runs, 'chatrt', n, 'p50_ms'):.1f} / "
            f"{_median(runs, 'chatrt', n, 'p99_ms'):.1f} ms | {p99_ratio:.2f} ({verdict}) | "
            f"{total('chatrt', 'missing')} / {total('chatrt', 'lost')} / "
            f"{total('chatrt', 'closed')} | {total('baseline', 'missing')} / "
            f"{total('baseline', 'lost')} |"
        )

    def peaks(system: str, key: str) -> list[float]:
        return [max(step[key] for step in r[system]) for r in runs]

    frame_ratio = support.median(
        [c / b for c, b in zip(peaks("chatrt", "delivered"), peaks("baseline", "delivered"),
                               strict=True)]
    )  # fmt: skip
    token_ratio = support.median(
        [c / b for c, b in zip(peaks("chatrt", "delivered_tokens"),
                               peaks("baseline", "delivered_tokens"), strict=True)]
    )  # fmt: skip
    missing = sum(step["missing"] for r in runs for step in r["chatrt"])
    lost = sum(step["lost"] for r in runs for step in r["chatrt"])
    counted = sum(step["tokens"] for r in runs for step in r["chatrt"])
    deltas = sum(step["deltas"] for r in runs for step in r["chatrt"])
    answers = sum(step["answers"] for r in runs for step in r["chatrt"])

    def per_run(system: str, key: str) -> str:
        return ", ".join(f"{v:,.0f}" for v in peaks(system, key))

    lines += [
        "",
        "| Target | Figure | Met? |",
        "|---|---|---|",
        "| deliveries/s at saturation >= 0.7x the baseline's (frames) | chatrt "
        f"{support.median(peaks('chatrt', 'delivered')):,.0f} frames/s (per run "
        f"{per_run('chatrt', 'delivered')}), baseline "
        f"{support.median(peaks('baseline', 'delivered')):,.0f} (per run "
        f"{per_run('baseline', 'delivered')}): {frame_ratio:.2f}x | "
        f"{'met' if frame_ratio >= 0.7 else 'missed'} |",
        "| the same counted in tokens (chatrt's frames carry several once it is busy) | chatrt "
        f"{support.median(peaks('chatrt', 'delivered_tokens')):,.0f} tokens/s (per run "
        f"{per_run('chatrt', 'delivered_tokens')}), baseline "
        f"{support.median(peaks('baseline', 'delivered_tokens')):,.0f}: {token_ratio:.2f}x | "
        f"{'met' if token_ratio >= 0.7 else 'missed'} |",
        "| p99 latency within 1.5x of the baseline's at the same offered load | "
        + (
            f"{sum(p99_ok)} of {len(p99_ok)} steps that chatrt keeps up with (up to "
            f"{max(kept_up) * args.rate * args.subscribers:,.0f} token deliveries/s) | "
            f"{'met' if all(p99_ok) else 'missed'} |"
            if p99_ok
            else "chatrt kept up with no step | missed |"
        ),
        f"| no loss: every delta at every subscriber | {counted:,} tokens in {deltas:,} "
        f"deltas counted over {answers:,} answer deliveries; {missing:,} tokens missing, "
        f"{lost:,} answers not intact | {'met' if missing == 0 and lost == 0 else 'missed'} |",
        "",
        "Delivered counts `message.delta` frames (and the tokens in them) received per second "
        "while every answer of the step was being delivered (from the latest first delivery to "
        "the earliest last one, in 0.1 s slots); the best step of a run is its saturation "
        "figure. chatrt coalesces tokens that arrive less than `CHATRT_FLUSH_INTERVAL_MS` "
        "(30 ms) apart into one delta; paced 50 ms apart they go out one per delta until the "
        "instance falls behind, and then its frames carry several. A step counts as kept up "
        "with while chatrt delivers at least 90 % of the offered tokens; beyond that, latency "
        "mostly measures the backlog. Latency is per token: from the upstream writing it (its "
        "text is the time, CLOCK_MONOTONIC) to the read that brought its delta to the "
        "subscriber. An answer is intact when its deltas arrived with seq 1..N, no seq twice, "
        "all tokens present and joined equal to `message.done`'s content.",
        "",
        f"Reproduce: `python -m bench.fanout --subscribers {args.subscribers} --load-processes "
        f"{args.load_processes} --steps {','.join(map(str, args.steps))} --tokens {args.tokens} "
        f"--rate {args.rate:g} --runs {args.runs}` from the repository root, in the dev venv, "
        "with PostgreSQL and Redis binaries installed as for the test suite.",
    ]
    return "\n".join(lines)


def profile_report(args: argparse.Namespace, profiles: dict[str, list[str]]) -> str:
    lines = [
        "### Where chatrt's fan-out time goes (py-spy)",
        "",
        f"`python -m bench.fanout --profile` ({support.now()}, {args.subscribers} subscribers, "
        f"steps {','.join(map(str, args.steps))} conversations at {args.rate:g} tokens/s). "
        f"{support.PROFILE_NOTE}",
    ]
    for tables in profiles.values():
        lines += tables
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    machine = support.machine()
    profiles: dict[str, list[str]] = {}
    runs = measure(args, profiles)
    text = report(args, runs, machine)
    if not args.profile:  # a profiled run's figures carry the sampling overhead
        support.write_section("fanout", text, args.output)
    print(text)
    if profiles:
        profiled = profile_report(args, profiles)
        support.write_section("fanout-profile", profiled, args.output)
        print(profiled)


if __name__ == "__main__":
    main()
