"""Daily token budgets: refuse a send (429 ``quota_exceeded``) once today's tokens are spent.

The check reads the messages table (see :mod:`chatrt.usage.queries`), so every instance
sees the same numbers, nothing is lost when Redis restarts, and the embedded default needs
no second implementation. A send is refused when the tokens already recorded today reach
the budget; answers still streaming are not counted yet, so the answer that crosses the
line (and any started in parallel in other conversations) may overshoot it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import msgspec

from chatrt.clock import utcnow
from chatrt.errors import AppError
from chatrt.providers.demo import DEMO_MODEL
from chatrt.settings import Settings
from chatrt.usage import days
from chatrt.usage.queries import conversation_model, tokens_by_model


class ModelUse(msgspec.Struct, frozen=True, kw_only=True):
    """One model's budget and what was used of it today."""

    model: str
    daily_tokens: int
    used_today: int
    remaining_today: int


class BudgetStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What remains of a user's budget today; ``None`` limits mean no limit."""

    daily_tokens: int | None
    used_today: int
    remaining_today: int | None
    resets_at: datetime
    models: list[ModelUse]


@dataclass(frozen=True)
class TokenBudget:
    daily_tokens: int | None = None
    per_model: Mapping[str, int] = field(default_factory=dict)
    # The models the providers serve, in fallback order (the demo model when none is set).
    models: tuple[str, ...] = (DEMO_MODEL,)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenBudget:
        return cls(
            daily_tokens=settings.budget.daily_tokens,
            per_model=dict(settings.budget.daily_tokens_per_model),
            models=tuple(p.model for p in settings.providers) or (DEMO_MODEL,),
        )

    @property
    def limited(self) -> bool:
        return self.daily_tokens is not None or bool(self.per_model)

    def model_for(self, preferred: str | None) -> str:
        """The model a send asks first: the conversation's when served, else the first one.

        The same choice as :meth:`ProviderChain.ordered`; a fallback may still answer with
        another model, and its tokens count against that model.
        """
        return preferred if preferred in self.models else self.models[0]

    async def status(self, user_id: UUID, now: datetime | None = None) -> BudgetStatus:
        now = now or utcnow()
        used = await _used_today(user_id, now)
        total = sum(used.values())
        return BudgetStatus(
            daily_tokens=self.daily_tokens,
            used_today=total,
            remaining_today=None
            if self.daily_tokens is None
            else max(0, self.daily_tokens - total),
            resets_at=days.next_midnight(now),
            models=[
                ModelUse(
                    model=model,
                    daily_tokens=limit,
                    used_today=used.get(model, 0),
                    remaining_today=max(0, limit - used.get(model, 0)),
                )
                for model, limit in sorted(self.per_model.items())
            ],
        )

    async def admit(self, user_id: UUID, conversation_id: UUID) -> None:
        """Return if a send may start an answer now; else raise 429 ``quota_exceeded``.

        Call it after the idempotency check: a repeat of an accepted send is never refused.
        """
        if not self.limited:
            return
        now = utcnow()
        used = await _used_today(user_id, now)
        total = sum(used.values())
        if self.daily_tokens is not None and total >= self.daily_tokens:
            raise _exceeded(now, None, self.daily_tokens, total)
        if self.per_model:
            model = self.model_for(await conversation_model(conversation_id))
            limit = self.per_model.get(model)
            if limit is not None and used.get(model, 0) >= limit:
                raise _exceeded(now, model, limit, used.get(model, 0))


async def _used_today(user_id: UUID, now: datetime) -> dict[str | None, int]:
    start = days.start_of(days.today(now))
    return await tokens_by_model(user_id, start, start + days.DAY)


def _exceeded(now: datetime, model: str | None, limit: int, used: int) -> AppError:
    resets_at = days.next_midnight(now)
    return AppError(
        429,
        "quota_exceeded",
        details={
            "model": model,
            "daily_tokens": limit,
            "used_today": used,
            "resets_at": resets_at,
        },
        headers={"Retry-After": str(days.seconds_until(resets_at, now))},
    )
