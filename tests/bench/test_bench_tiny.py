"""Each benchmark command runs at ``--tiny`` size and writes its result rows.

No timing is asserted (the machine is shared); only that the command completes, that the
Markdown section it writes has a row per measured system with a figure in it, and that no
answer was lost on the way.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Each tiny run starts its own PostgreSQL, Redis and chatrt processes on a busy machine.
pytestmark = [pytest.mark.bench, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def run_bench(name: str, output: Path, *extra: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--tiny", "--output", str(output), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return output.read_text()


def row(text: str, label: str) -> list[str]:
    for line in text.splitlines():
        if line.startswith(f"| {label}"):
            return [cell.strip() for cell in line.strip("|").split("|")]
    raise AssertionError(f"no row starting with {label!r} in:\n{text}")


def test_streaming_writes_rows_for_baseline_and_both_backends(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\nkept text\n")
    text = run_bench("streaming", output)
    assert "kept text" in text
    assert text.count("<!-- bench:streaming -->") == 1
    for label in ("baseline", "chatrt, PostgreSQL + Redis", "chatrt, embedded default"):
        cells = row(text, label)
        assert float(cells[1].replace(",", "")) > 0, cells
        assert cells[-1] == "0", f"lost answers: {cells}"
    # The paced part: one row per instance, nothing lost.
    for instance in ("1", "2"):
        cells = row(text, instance)
        assert cells[1] == "2", cells
        assert cells[2] == "0", f"lost answers: {cells}"
    # A second run replaces the section instead of appending another one.
    text = run_bench("streaming", output, "--backends", "embedded")
    assert text.count("<!-- bench:streaming -->") == 1
    assert "PostgreSQL + Redis" not in text


def test_history_writes_a_row_per_url(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    text = run_bench("history", output)
    assert "<!-- bench:history -->" in text
    for label in ("conversation list", "history of the long conversation", "history at depth"):
        cells = row(text, label)
        assert float(cells[1].replace(",", "")) > 0, cells  # baseline req/s
        assert float(cells[2].replace(",", "")) > 0, cells  # chatrt req/s
        assert cells[-1] == "0", f"non-200 answers: {cells}"


def test_fanout_writes_a_row_per_step_and_loses_nothing(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    text = run_bench("fanout", output)
    assert text.count("<!-- bench:fanout -->") == 1
    cells = row(text, "160 token deliveries/s")  # the tiny step: 2 answers x 20/s x 4
    assert float(cells[1].replace(",", "").split()[0]) > 0, cells  # baseline delivered
    assert float(cells[2].replace(",", "").split()[0]) > 0, cells  # chatrt delivered
    assert cells[-2] == "0 / 0 / 0", f"chatrt lost deltas: {cells}"
    assert "0 tokens missing, 0 answers not intact" in text


def test_capacity_writes_its_rows(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    text = run_bench("capacity", output)
    assert text.count("<!-- bench:capacity -->") == 1
    cells = row(text, "chatrt, 40 idle WebSockets")
    assert float(cells[3].split()[0]) > 0, cells  # KiB per connection
    assert cells[-1] == "40 of 40", f"connections dropped: {cells}"
    cells = row(text, "chatrt, 4 answers streaming")
    assert cells[-1] == "0 / 0", f"answers lost: {cells}"
    assert int(cells[-2]) > 0, f"no answer seen generating: {cells}"
