"""The current user's usage over a range of UTC days, priced, with today's budget."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, timedelta
from uuid import UUID

from chatrt.clock import utcnow
from chatrt.errors import AppError
from chatrt.providers.pricing import cost_of
from chatrt.settings import ProviderSettings
from chatrt.usage import days
from chatrt.usage.budget import TokenBudget
from chatrt.usage.queries import usage_by_day
from chatrt.usage.schemas import UsageItem, UsageOut, UsageTotals

DEFAULT_DAYS = 30
MAX_DAYS = 366
# Far enough from date.min/max that the bounds of the range (and the clock-skew margin of
# the query) stay representable.
EARLIEST, LATEST = date(1970, 1, 1), date(9999, 12, 30)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def parse_day(name: str, raw: str | None) -> date | None:
    """``YYYY-MM-DD`` exactly (no other ISO 8601 forms); a 422 naming ``name`` otherwise."""
    if raw is None:
        return None
    if _DAY.fullmatch(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    raise _invalid(name, "expected a date as YYYY-MM-DD")


def resolve_range(first: date | None, last: date | None, today: date) -> tuple[date, date]:
    """Fill in the defaults (the last 30 days up to today); 422 on a range we will not serve."""
    last = last or today
    first = first or last - timedelta(days=DEFAULT_DAYS - 1)
    for name, value in (("from", first), ("to", last)):
        if not EARLIEST <= value <= LATEST:
            raise _invalid(name, f"must be between {EARLIEST} and {LATEST}")
    if first > last:
        raise _invalid("from", "must not be after to")
    if (last - first).days + 1 > MAX_DAYS:
        raise _invalid("to", f"the range may span at most {MAX_DAYS} days")
    return first, last


async def usage(
    user_id: UUID,
    first: date | None,
    last: date | None,
    budget: TokenBudget,
    prices: Sequence[ProviderSettings],
) -> UsageOut:
    now = utcnow()
    first, last = resolve_range(first, last, days.today(now))
    rows = await usage_by_day(user_id, days.start_of(first), days.start_of(last) + days.DAY)
    items = [
        UsageItem(
            day=date.fromisoformat(row.day),
            model=row.model,
            provider=row.provider,
            answers=row.answers,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            total_tokens=row.prompt_tokens + row.completion_tokens,
            cost=cost_of(row.provider, row.prompt_tokens, row.completion_tokens, prices),
        )
        for row in rows
    ]
    totals = UsageTotals(
        answers=sum(i.answers for i in items),
        prompt_tokens=sum(i.prompt_tokens for i in items),
        completion_tokens=sum(i.completion_tokens for i in items),
        total_tokens=sum(i.total_tokens for i in items),
        cost=float(sum(i.cost for i in items if i.cost is not None)),
        unpriced_providers=sorted({i.provider or "-" for i in items if i.cost is None}),
    )
    return UsageOut(
        from_=first,
        to=last,
        items=items,
        totals=totals,
        budget=await budget.status(user_id, now),
    )


def _invalid(field: str, message: str) -> AppError:
    return AppError(
        422, "validation_error", details=[{"field": field, "source": "query", "message": message}]
    )
