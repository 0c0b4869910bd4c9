"""Imported at start by a Python whose ``PYTHONPATH`` names this folder (``bench.capacity
--trace-memory`` runs ``chatrt serve`` so): with ``BENCH_TRACEMALLOC=<prefix>`` set, it
traces allocations, and each SIGUSR1 writes the live memory by source file to
``<prefix>.<n>`` (one ``size count file`` line each), so two snapshots give what a number
of connections added, file by file. Not part of chatrt; never imported by it."""

from __future__ import annotations

import os
import signal
import tracemalloc
from types import FrameType

_PREFIX = os.environ.get("BENCH_TRACEMALLOC")
_taken = 0


def _dump(_signum: int, _frame: FrameType | None) -> None:
    global _taken
    stats = tracemalloc.take_snapshot().statistics("filename")
    path = f"{_PREFIX}.{_taken}.tmp"
    with open(path, "w") as out:
        for stat in stats:
            out.write(f"{stat.size} {stat.count} {stat.traceback[0].filename}\n")
    os.replace(path, f"{_PREFIX}.{_taken}")  # whole files only: the reader polls for it
    _taken += 1


if _PREFIX:
    tracemalloc.start(1)
    signal.signal(signal.SIGUSR1, _dump)
