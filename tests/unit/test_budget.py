"""Budget settings, UTC day arithmetic and the range rules of ``GET /api/usage``."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from chatrt.errors import AppError
from chatrt.settings import Settings, SettingsError
from chatrt.usage import days
from chatrt.usage.budget import TokenBudget
from chatrt.usage.report import parse_day, resolve_range

PROVIDERS = json.dumps(
    [
        {"name": "a", "base_url": "http://a.example/v1", "model": "model-a"},
        {"name": "b", "base_url": "http://b.example/v1", "model": "model-b"},
    ]
)


def test_budgets_default_to_unlimited() -> None:
    budget = Settings.from_env({}).budget
    assert budget.daily_tokens is None
    assert budget.daily_tokens_per_model == ()
    assert not TokenBudget.from_settings(Settings.from_env({})).limited


@pytest.mark.parametrize(
    ("env", "daily", "per_model"),
    [
        ({"CHATRT_DAILY_TOKEN_BUDGET": "50000"}, 50_000, ()),
        ({"CHATRT_DAILY_TOKEN_BUDGET": "0"}, None, ()),
        (
            {"CHATRT_DAILY_TOKEN_BUDGET_PER_MODEL": '{"m": 10, "n": 0, "a": 5}'},
            None,
            (("a", 5), ("m", 10)),
        ),
        ({"CHATRT_DAILY_TOKEN_BUDGET_PER_MODEL": "{}"}, None, ()),
    ],
)
def test_budget_settings_are_parsed(
    env: dict[str, str], daily: int | None, per_model: tuple[tuple[str, int], ...]
) -> None:
    budget = Settings.from_env(env).budget
    assert (budget.daily_tokens, budget.daily_tokens_per_model) == (daily, per_model)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("CHATRT_DAILY_TOKEN_BUDGET", "-1"),
        ("CHATRT_DAILY_TOKEN_BUDGET", "lots"),
        ("CHATRT_DAILY_TOKEN_BUDGET_PER_MODEL", "[1]"),
        ("CHATRT_DAILY_TOKEN_BUDGET_PER_MODEL", '{"m": -5}'),
        ("CHATRT_DAILY_TOKEN_BUDGET_PER_MODEL", '{"m": 1.5}'),
        ("CHATRT_DAILY_TOKEN_BUDGET_PER_MODEL", '{"": 5}'),
        ("CHATRT_DAILY_TOKEN_BUDGET_PER_MODEL", "{"),
    ],
)
def test_bad_budget_settings_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: raw})


def test_the_model_checked_is_the_one_the_chain_asks_first() -> None:
    budget = TokenBudget.from_settings(Settings.from_env({"CHATRT_PROVIDERS": PROVIDERS}))
    assert budget.model_for(None) == "model-a"
    assert budget.model_for("model-b") == "model-b"
    assert budget.model_for("not-served") == "model-a"
    demo = TokenBudget.from_settings(Settings.from_env({}))
    assert demo.model_for("model-b") == "chatrt-demo"


@pytest.mark.parametrize(
    ("now", "midnight", "seconds"),
    [
        (
            datetime(2026, 3, 1, 23, 59, 59, 500_000, tzinfo=UTC),
            datetime(2026, 3, 2, tzinfo=UTC),
            1,
        ),
        (datetime(2026, 3, 1, 0, 0, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC), 86_400),
        (datetime(2024, 2, 28, 12, 0, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC), 43_200),
        (datetime(2026, 12, 31, 23, 0, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), 3_600),
    ],
)
def test_budgets_reset_at_the_next_utc_midnight(
    now: datetime, midnight: datetime, seconds: int
) -> None:
    assert days.next_midnight(now) == midnight
    assert days.seconds_until(midnight, now) == seconds


TODAY = date(2026, 6, 15)


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        (None, None, (date(2026, 5, 17), TODAY)),
        (date(2026, 6, 1), None, (date(2026, 6, 1), TODAY)),
        (None, date(2026, 1, 30), (date(2026, 1, 1), date(2026, 1, 30))),
        (TODAY, TODAY, (TODAY, TODAY)),
        (date(2025, 6, 15), date(2026, 6, 15), (date(2025, 6, 15), date(2026, 6, 15))),
    ],
)
def test_usage_ranges_default_to_the_last_30_days(
    first: date | None, last: date | None, expected: tuple[date, date]
) -> None:
    assert resolve_range(first, last, TODAY) == expected


@pytest.mark.parametrize(
    ("first", "last", "field"),
    [
        (date(2026, 6, 2), date(2026, 6, 1), "from"),
        (date(2025, 6, 14), date(2026, 6, 15), "to"),  # 367 days
        (date(1969, 12, 31), date(1970, 1, 1), "from"),
        (None, date(9999, 12, 31), "to"),
        (date(2026, 6, 16), None, "from"),  # after today
    ],
)
def test_bad_usage_ranges_are_422_naming_the_field(
    first: date | None, last: date | None, field: str
) -> None:
    with pytest.raises(AppError) as raised:
        resolve_range(first, last, TODAY)
    assert raised.value.status_code == 422
    assert [d["field"] for d in raised.value.details] == [field]


@pytest.mark.parametrize(
    "raw", ["2026-6-01", "20260601", "2026-W01-1", "2026-02-30", " 2026-06-01"]
)
def test_days_must_be_plain_iso_dates(raw: str) -> None:
    with pytest.raises(AppError):
        parse_day("from", raw)
    assert parse_day("from", "2026-06-01") == date(2026, 6, 1)
    assert parse_day("from", None) is None
