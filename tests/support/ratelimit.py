"""Helpers for the rate-limit tests."""

from __future__ import annotations

import httpx


def from_ip(address: str) -> dict[str, str]:
    """Headers of a request relayed by a proxy on loopback (trusted by default)."""
    return {"x-forwarded-for": address}


def assert_rate_limited(response: httpx.Response, scope: str, limit: int) -> None:
    """The contract's error shape, with Retry-After and the RateLimit-* headers."""
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["message"]
    assert error["details"]["scope"] == scope
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    assert error["details"]["retry_after"] == retry_after
    assert response.headers["ratelimit-limit"] == str(limit)
    assert response.headers["ratelimit-remaining"] == "0"
    assert int(response.headers["ratelimit-reset"]) == retry_after
    assert f"{limit};w=" in response.headers["ratelimit-policy"]
