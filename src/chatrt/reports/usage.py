"""Token usage and cost by model and user over a period (``chatrt usage-report``).

Counts every assistant message that reached a model (``ai_model`` set), whatever its status
and whether or not its conversation was soft-deleted since: the tokens were spent either way.
Prices come from ``CHATRT_PROVIDERS``, matched by provider name; the demo model is free, and
a provider no longer configured has no known price (its cost is ``None``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from chatrt.db.tables import Message
from chatrt.providers.pricing import cost_of
from chatrt.settings import ProviderSettings

# One aggregate query; the join reaches the owner's email without a query per row.
_QUERY = """
SELECT m.ai_model AS model, m.provider AS provider, u.email AS email,
       COUNT(*) AS answers,
       COALESCE(SUM(m.prompt_tokens), 0) AS prompt_tokens,
       COALESCE(SUM(m.completion_tokens), 0) AS completion_tokens
FROM messages m
JOIN conversations c ON c.id = m.conversation_id
JOIN users u ON u.id = c.user_id
WHERE m.role = 'assistant' AND m.ai_model IS NOT NULL AND m.created_at >= {}
GROUP BY m.ai_model, m.provider, u.email
ORDER BY m.ai_model, m.provider, u.email
"""


class UsageRow(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    provider: str | None
    email: str
    answers: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None


class UsageReport(msgspec.Struct, frozen=True, kw_only=True):
    since: datetime
    until: datetime
    rows: list[UsageRow]
    answers: int
    prompt_tokens: int
    completion_tokens: int
    # Sum of the known costs; ``unpriced`` names the providers left out of it.
    cost: float
    unpriced: list[str]


async def usage_report(
    since: datetime, until: datetime, prices: Sequence[ProviderSettings]
) -> UsageReport:
    raw: list[dict[str, Any]] = await Message.raw(_QUERY, since)
    rows = [
        UsageRow(
            model=r["model"],
            provider=r["provider"],
            email=r["email"],
            answers=int(r["answers"]),
            prompt_tokens=int(r["prompt_tokens"]),
            completion_tokens=int(r["completion_tokens"]),
            cost=cost_of(
                r["provider"], int(r["prompt_tokens"]), int(r["completion_tokens"]), prices
            ),
        )
        for r in raw
    ]
    return UsageReport(
        since=since,
        until=until,
        rows=rows,
        answers=sum(r.answers for r in rows),
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
        cost=float(sum(r.cost for r in rows if r.cost is not None)),
        unpriced=sorted({r.provider or "-" for r in rows if r.cost is None}),
    )


def as_text(report: UsageReport) -> str:
    """An aligned plain-text table with a total line."""
    header = ("model", "provider", "user", "answers", "prompt", "completion", "cost")
    body = [
        (
            r.model,
            r.provider or "-",
            r.email,
            str(r.answers),
            str(r.prompt_tokens),
            str(r.completion_tokens),
            "?" if r.cost is None else f"{r.cost:.6f}",
        )
        for r in report.rows
    ]
    total = (
        "total",
        "",
        "",
        str(report.answers),
        str(report.prompt_tokens),
        str(report.completion_tokens),
        f"{report.cost:.6f}",
    )
    table = [header, *body, total]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    numeric = range(3, len(header))

    def line(row: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(cells).rstrip()

    since = report.since.strftime("%Y-%m-%d %H:%M")
    until = report.until.strftime("%Y-%m-%d %H:%M")
    lines = [f"token usage {since} to {until} UTC", line(header)]
    lines += [line(row) for row in body]
    lines.append(line(total))
    if report.unpriced:
        names = ", ".join(report.unpriced)
        lines.append(f"? no price configured for: {names} (left out of the total cost)")
    return "\n".join(lines)


def as_json(report: UsageReport) -> bytes:
    return msgspec.json.encode(report)
