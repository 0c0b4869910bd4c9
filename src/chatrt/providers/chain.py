"""Providers in fallback order, with a circuit breaker per provider.

A provider that fails before its first token (connect error, timeout, 429, 5xx) hands over to
the next one. After the first token there is no switching: the error ends the answer. A
provider that failed ``threshold`` times in a row is skipped for ``cooldown_s``, then gets
one trial request (half-open).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence

from chatrt.observability import metrics
from chatrt.providers.base import (
    PromptMessage,
    Provider,
    ProviderError,
    Started,
    StreamEvent,
)


class CircuitBreaker:
    def __init__(self, threshold: int, cooldown_s: float) -> None:
        self._threshold = threshold
        self._cooldown = cooldown_s
        self._failures = 0
        self._open_until = 0.0

    def allows(self) -> bool:
        """Closed: yes. Open: no. After the cooldown: one trial, then open again until it ends."""
        if self._failures < self._threshold:
            return True
        now = time.monotonic()
        if now < self._open_until:
            return False
        # Half-open: let this one request through and hold the rest back for another cooldown.
        self._open_until = now + self._cooldown
        return True

    def succeeded(self) -> None:
        self._failures = 0
        self._open_until = 0.0

    def failed(self) -> None:
        self._failures += 1
        if self._failures == self._threshold:
            self._open_until = time.monotonic() + self._cooldown


class ProviderChain:
    def __init__(
        self, providers: Sequence[Provider], threshold: int = 3, cooldown_s: float = 30.0
    ) -> None:
        if not providers:
            raise ValueError("at least one provider is required")
        self.providers = list(providers)
        self._breakers = {p.name: CircuitBreaker(threshold, cooldown_s) for p in providers}

    def ordered(self, preferred_model: str | None) -> list[Provider]:
        """Providers serving ``preferred_model`` first, then the rest in configured order."""
        if preferred_model is None:
            return list(self.providers)
        first = [p for p in self.providers if p.model == preferred_model]
        return first + [p for p in self.providers if p.model != preferred_model]

    async def stream(
        self, messages: list[PromptMessage], preferred_model: str | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        """:class:`Started`, then the chosen provider's events; ProviderError if all fail."""
        candidates = self.ordered(preferred_model)
        open_circuits = [p for p in candidates if not self._breakers[p.name].allows()]
        # With every circuit open, still try them all rather than fail without asking.
        tried = [p for p in candidates if p not in open_circuits] or candidates
        last_error: ProviderError | None = None
        for provider in tried:
            breaker = self._breakers[provider.name]
            started = False
            try:
                async for event in provider.stream(messages):
                    if not started:
                        started = True
                        breaker.succeeded()
                        yield Started(provider.name, provider.model)
                    yield event
                return
            except ProviderError as exc:
                if started or not exc.retryable:
                    if not started:
                        breaker.failed()
                    raise
                breaker.failed()
                metrics.FALLBACKS.labels(provider.name).inc()
                last_error = exc
        raise ProviderError(
            "all_providers_failed" if last_error else "no_provider", retryable=False
        )
