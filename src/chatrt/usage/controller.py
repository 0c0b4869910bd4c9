"""``GET /api/usage``: the signed-in user's token usage and cost, and today's budget."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from chatrt.auth.guards import SESSION_REQUIRED
from chatrt.auth.schemas import UserOut
from chatrt.errors import error_responses
from chatrt.settings import Settings
from chatrt.usage import report
from chatrt.usage.budget import TokenBudget
from chatrt.usage.schemas import UsageOut

# Strings, parsed by the handler: a framework validation error would name the Python
# parameter ``from_`` instead of the query's ``from``.
From = Annotated[
    str | None,
    QueryParameter(
        name="from",
        format="date",
        description="First UTC day (YYYY-MM-DD); default: 29 days before `to`.",
    ),
]
To = Annotated[
    str | None,
    QueryParameter(
        format="date", description="Last UTC day, included (YYYY-MM-DD); default: today (UTC)."
    ),
]


@get(
    "/api/usage",
    tags=["usage"],
    security=SESSION_REQUIRED,
    summary="My token usage and cost by day and model, and what remains of today's budget",
    description=f"At most {report.MAX_DAYS} days per request. Days are UTC days.",
    responses=error_responses(400, 401, 422),
)
async def get_usage(
    request: Request[UserOut, Any, Any],
    settings: NamedDependency[Settings],
    from_: From = None,
    to: To = None,
) -> UsageOut:
    first, last = report.parse_day("from", from_), report.parse_day("to", to)
    return await report.usage(
        request.user.id, first, last, TokenBudget.from_settings(settings), settings.providers
    )
