"""The app's limits: the rules read from settings, and the limiter that counts them."""

from __future__ import annotations

from dataclasses import dataclass

from chatrt.errors import AppError
from chatrt.observability import metrics
from chatrt.ratelimit.base import Decision, RateLimiter, Rule
from chatrt.settings import RateLimitSettings


class RateLimited(AppError):
    """429 ``rate_limited`` with ``Retry-After`` and the ``RateLimit-*`` headers."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(
            429,
            "rate_limited",
            details={"retry_after": decision.reset_s, "scope": decision.rule.scope},
            headers=decision.headers(),
        )
        self.decision = decision


@dataclass(frozen=True)
class Rules:
    ip: Rule
    user: Rule
    ws_send: Rule
    login_email: Rule
    login_ip: Rule
    register_ip: Rule

    @classmethod
    def from_settings(cls, settings: RateLimitSettings) -> Rules:
        window, auth = settings.window_s, settings.auth_window_s
        return cls(
            ip=Rule("ip", settings.ip_per_window, window),
            user=Rule("user", settings.user_per_window, window),
            ws_send=Rule("ws_send", settings.ws_sends_per_window, window),
            login_email=Rule("login_email", settings.login_per_email, auth),
            login_ip=Rule("login_ip", settings.login_per_ip, auth),
            register_ip=Rule("register_ip", settings.register_per_ip, auth),
        )


@dataclass(frozen=True)
class Limits:
    """Lives in ``app.state.limits`` (built in the lifespan); reached as dependency ``limits``."""

    limiter: RateLimiter
    rules: Rules

    async def hit(self, rule: Rule, identity: str) -> Decision | None:
        """Count one hit; None when the rule is off or the store is down (let it through)."""
        if not rule.enabled:
            return None
        decision = await self.limiter.hit(rule, identity)
        if decision is not None and not decision.allowed:
            metrics.RATE_LIMITED.labels(rule.scope).inc()
        return decision

    async def enforce(self, rule: Rule, identity: str) -> Decision | None:
        """:meth:`hit`, raising :class:`RateLimited` when the hit is refused."""
        decision = await self.hit(rule, identity)
        if decision is not None and not decision.allowed:
            raise RateLimited(decision)
        return decision
