"""Benchmark 1 (and 5): streaming tokens/s and added time to first token, against a baseline.

One chatrt instance streams answers from a fake upstream (``bench.upstream``, 500-token
answers flat out) to WebSocket clients (``bench.load.ws_stream``): upstream -> coalescing ->
bus -> socket. The baseline (``bench.baselines.openai_stream``) reads the same upstream with
the ``openai`` client and msgspec, no server in between. Each run measures the baseline and
every backend back to back, so the ratio compares figures taken under the same machine load.

    python -m bench.streaming              # defaults as in docs/benchmarks.md
    python -m bench.streaming --tiny       # seconds; what the test suite runs
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from bench import support

BACKENDS = ("production", "embedded")
LABELS = {
    "production": "chatrt, PostgreSQL + Redis",
    "embedded": "chatrt, embedded default (SQLite + memory)",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=500, help="tokens per answer")
    parser.add_argument("--answers", type=int, default=40, help="answers per throughput run")
    parser.add_argument("--concurrency", type=int, default=10, help="concurrent streams")
    parser.add_argument("--ttft-samples", type=int, default=10, help="sequential TTFT samples")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--paced-streams",
        type=int,
        default=1000,
        help="concurrent paced streams over --paced-instances (PostgreSQL + Redis); 0 skips",
    )
    parser.add_argument("--paced-instances", type=int, default=2)
    parser.add_argument("--rate", type=float, default=20.0, help="paced tokens/s per stream")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help=f"comma-separated subset of {BACKENDS}"
    )
    support.add_run_flags(
        parser,
        "sample each chatrt process with py-spy and write only its top frames, to their "
        "own section (the figures of a profiled run carry the sampling overhead)",
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.tokens, args.answers, args.concurrency = 20, 2, 2
        args.ttft_samples, args.runs = 2, 1
        args.paced_streams, args.rate = 4, 200.0
    args.backends = [b for b in args.backends.split(",") if b]
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends: {sorted(unknown)}")
    return args


def chatrt_env(backend_env: dict[str, str], base_url: str) -> dict[str, str]:
    provider = {"name": "bench", "base_url": base_url, "api_key": "bench", "model": "bench"}
    return (
        backend_env
        | support.UNLIMITED
        | {
            "CHATRT_PROVIDERS": json.dumps([provider]),
            "CHATRT_ALLOWED_ORIGINS": support.ORIGIN,
            "CHATRT_LOG_LEVEL": "warning",
            "CHATRT_CONTEXT_BUDGET_CHARS": "2000",
        }
    )


def load_args(args: argparse.Namespace) -> list[str]:
    return [
        "--answers", str(args.answers),
        "--concurrency", str(args.concurrency),
        "--ttft-samples", str(args.ttft_samples),
    ]  # fmt: skip


def measure(
    args: argparse.Namespace, profiles: dict[str, list[str]]
) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {"baseline": []} | {b: [] for b in args.backends}
    results["paced"] = []
    with support.workdir() as work:
        with contextlib.ExitStack() as stack:
            _measure(args, work, stack, results)
        for backend in args.backends if args.profile else ():
            # Summarised now: the work directory goes away on exit.
            raw = work / f"profile-{backend}.txt"
            profiles[backend] = support.profile_tables(LABELS[backend], raw)
    return results


def _measure(
    args: argparse.Namespace,
    work: Path,
    stack: contextlib.ExitStack,
    results: dict[str, list[dict[str, Any]]],
) -> None:
    base_url = stack.enter_context(support.upstream(work, args.tokens))
    urls: dict[str, str] = {}
    production: dict[str, str] | None = None
    for backend in args.backends:
        if backend == "production":
            env = production = stack.enter_context(support.production_backend(work))
        else:
            env = support.embedded_backend(work)
        profile = work / f"profile-{backend}.txt" if args.profile else None
        urls[backend] = stack.enter_context(
            support.chatrt(chatrt_env(env, base_url), work, f"chatrt-{backend}", profile)
        )
    for _ in range(args.runs):
        results["baseline"].append(
            support.run_json(
                ["bench.baselines.openai_stream", "--base-url", base_url, *load_args(args)]
            )
        )
        for backend, url in urls.items():
            results[backend].append(
                support.run_json(
                    [
                        "bench.load.ws_stream",
                        "--url",
                        url,
                        "--origin",
                        support.ORIGIN,
                        *load_args(args),
                    ]
                )
            )
    if production is not None and args.paced_streams:
        results["paced"] = paced(args, work, stack, production)


def paced(
    args: argparse.Namespace,
    work: Path,
    stack: contextlib.ExitStack,
    production: dict[str, str],
) -> list[dict[str, Any]]:
    """Paced streams spread over several instances, one load generator per instance."""
    paced_url = stack.enter_context(support.upstream(work, args.tokens, args.rate))
    env = chatrt_env(production, paced_url)
    urls = [
        stack.enter_context(support.chatrt(env, work, f"chatrt-paced-{n}"))
        for n in range(args.paced_instances)
    ]
    share, extra = divmod(args.paced_streams, len(urls))
    # Twice the answer's paced length, plus set-up time: what is not done by then is lost.
    deadline = 2 * args.tokens / args.rate + 30
    commands = [
        ["bench.load.ws_stream", "--url", url, "--origin", support.ORIGIN,
         "--paced", str(share + (n < extra)), "--deadline", str(deadline)]
        for n, url in enumerate(urls)
        if share + (n < extra)
    ]  # fmt: skip
    return support.run_json_parallel(commands)


def profile_report(args: argparse.Namespace, profiles: dict[str, list[str]]) -> str:
    lines = [
        "### Where chatrt's streaming time goes (py-spy)",
        "",
        f"`python -m bench.streaming --profile` ({support.now()}, {args.tokens}-token answers, "
        f"{args.concurrency} concurrent streams). {support.PROFILE_NOTE}",
    ]
    for tables in profiles.values():
        lines += tables
    return "\n".join(lines)


def report(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]], machine: str) -> str:
    base_runs = results["baseline"]
    base_tps = support.median([r["tokens_per_s"] for r in base_runs])
    base_ttft = support.median([t for r in base_runs for t in r["ttft_ms"]])
    lines = [
        "## Streaming (benchmarks 1 and 5)",
        "",
        f"Measured {support.now()} on {machine}.",
        "The machine is shared and was busy with other work, so figures are noisy; each row is",
        "the median of the runs, and each ratio compares figures taken back to back in the same",
        "run.",
        "",
        f"Parameters: {args.tokens}-token answers from `bench.upstream` flat out, {args.answers} "
        f"answers per run at {args.concurrency} concurrent streams, {args.ttft_samples} sequential "
        f"time-to-first-token samples at one stream, {args.runs} runs.",
        "",
        "| Measured | tokens/s (median) | per run | ratio to baseline | target | TTFT p50 | "
        "added TTFT (target <= 5 ms) | 202 answer p50 | lost answers |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| baseline: `openai` + msgspec, no server | {base_tps:,.0f} | "
        + ", ".join(f"{r['tokens_per_s']:,.0f}" for r in base_runs)
        + f" | 1.00 | - | {base_ttft:.1f} ms | - | - | 0 |",
    ]
    for backend in args.backends:
        runs = results[backend]
        tps = support.median([r["tokens_per_s"] for r in runs])
        ratios = [
            r["tokens_per_s"] / b["tokens_per_s"] for r, b in zip(runs, base_runs, strict=True)
        ]
        ratio = support.median(ratios)
        ttft = support.median([t for r in runs for t in r["ttft_ms"]])
        lost = sum(r["lost"] for r in runs)
        met = "met" if ratio >= 0.6 else "missed"
        added = ttft - base_ttft
        accept = support.median([t for r in runs for t in r["accept_ms"]])
        lines.append(
            f"| {LABELS[backend]} | {tps:,.0f} | "
            + ", ".join(f"{r['tokens_per_s']:,.0f}" for r in runs)
            + f" | {ratio:.2f} | >= 0.6 ({met}) | {ttft:.1f} ms | {added:+.1f} ms "
            f"({'met' if added <= 5 else 'missed'}) | {accept:.1f} ms | {lost} |"
        )
    if results["paced"]:
        runs = results["paced"]
        lost = sum(r["lost"] for r in runs)
        p99 = max(r["gap_p99_ms"] for r in runs)
        lines += [
            "",
            f"Paced: {args.paced_streams:,} concurrent streams of {args.tokens} tokens at "
            f"{args.rate:g} tokens/s each, over {args.paced_instances} chatrt instances "
            "(PostgreSQL + Redis), one load generator process per instance, one answer per "
            "stream, 10 streams per signed-in user.",
            "",
            "| instance | streams | lost (target 0) | of which never finished | gap between "
            "deltas p50 | p99 (target < 150 ms) | max |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {n + 1} | {r['streams']} | {r['lost']} | {r['timed_out']} | "
                f"{r['gap_p50_ms']:.1f} ms | "
                f"{r['gap_p99_ms']:.1f} ms | {r['gap_max_ms']:.1f} ms |"
                for n, r in enumerate(runs)
            ),
            "",
            f"Paced targets: {lost} answers lost ({'met' if lost == 0 else 'missed'}); worst p99 "
            f"gap {p99:.1f} ms ({'met' if p99 < 150 else 'missed'}).",
        ]
    lines += [
        "",
        "Tokens/s counts the completion tokens of answers whose deltas, joined in seq order, equal",
        "the final content (`message.done`); a mismatch counts as a lost answer. Time to first",
        "token runs from sending the request (REST `POST .../messages` for chatrt) to the first",
        "`message.delta` frame (the first content chunk for the baseline); the 202 answer column",
        "is when that `POST` returned, for the same samples.",
        "",
        "Reproduce: `python -m bench.streaming "
        f"--tokens {args.tokens} --answers {args.answers} --concurrency {args.concurrency} "
        f"--ttft-samples {args.ttft_samples} --runs {args.runs} "
        f"--paced-streams {args.paced_streams} --paced-instances {args.paced_instances} "
        f"--rate {args.rate:g} "
        f"--backends {','.join(args.backends)}` from the repository root, in the dev venv, "
        "with PostgreSQL and Redis binaries installed as for the test suite.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    machine = support.machine()
    profiles: dict[str, list[str]] = {}
    results = measure(args, profiles)
    text = report(args, results, machine)
    if not args.profile:  # a profiled run's figures carry the sampling overhead
        support.write_section("streaming", text, args.output)
    print(text)
    if profiles:
        profiled = profile_report(args, profiles)
        support.write_section("streaming-profile", profiled, args.output)
        print(profiled)


if __name__ == "__main__":
    main()
