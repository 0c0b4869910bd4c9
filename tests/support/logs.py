"""What chatrt logs while a block of a test runs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def log_records(name: str, level: int = logging.INFO) -> Iterator[list[logging.LogRecord]]:
    """Every record the ``name`` logger emits at ``level`` or above, as it comes."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def close_codes(records: list[logging.LogRecord]) -> list[int]:
    """Per ``chatrt.ws`` record, the code its ``closing websocket`` line names (0 for a line
    that closes nothing, so an unexpected line still shows)."""
    return [getattr(r, "close_code", 0) for r in records]
