"""UTC days: the unit of budgets and of usage items."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

DAY = timedelta(days=1)


def start_of(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def today(now: datetime) -> date:
    return now.astimezone(UTC).date()


def next_midnight(now: datetime) -> datetime:
    """When the day of ``now`` ends, and with it every daily budget."""
    return start_of(today(now)) + DAY


def seconds_until(moment: datetime, now: datetime) -> int:
    """Whole seconds from ``now`` to ``moment``, rounded up and at least 1 (a Retry-After)."""
    return max(1, math.ceil((moment - now).total_seconds()))
