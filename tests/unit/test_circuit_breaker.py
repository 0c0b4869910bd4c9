"""The circuit breaker: open after repeated failures, one trial after the cooldown."""

from __future__ import annotations

import pytest

from chatrt.providers import chain
from chatrt.providers.chain import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(chain.time, "monotonic", fake)
    return fake


def test_opens_after_threshold_and_allows_one_trial_per_cooldown(clock: Clock) -> None:
    breaker = CircuitBreaker(threshold=3, cooldown_s=30)
    for _ in range(2):
        breaker.failed()
        assert breaker.allows()
    breaker.failed()
    assert not breaker.allows()
    clock.now += 29
    assert not breaker.allows()
    clock.now += 2
    assert breaker.allows(), "one trial after the cooldown"
    assert not breaker.allows(), "only one"
    breaker.failed()
    assert not breaker.allows()
    clock.now += 31
    assert breaker.allows()
    breaker.succeeded()
    assert breaker.allows()
    assert breaker.allows()
