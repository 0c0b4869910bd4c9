"""Wire schemas of ``GET /api/usage``."""

from __future__ import annotations

from datetime import date

import msgspec

from chatrt.usage.budget import BudgetStatus


class UsageItem(msgspec.Struct, frozen=True, kw_only=True):
    """One model's answers (through one provider) on one UTC day."""

    day: date
    model: str
    provider: str | None
    answers: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    # In the unit of the configured prices; null when the provider has no configured price.
    cost: float | None


class UsageTotals(msgspec.Struct, frozen=True, kw_only=True):
    answers: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    # The sum of the known costs; ``unpriced_providers`` names what it leaves out.
    cost: float
    unpriced_providers: list[str]


class UsageOut(msgspec.Struct, frozen=True, kw_only=True):
    from_: date = msgspec.field(name="from")
    to: date
    items: list[UsageItem]
    totals: UsageTotals
    budget: BudgetStatus
