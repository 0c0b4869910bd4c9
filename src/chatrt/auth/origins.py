"""Which origins may act on a user's behalf (CORS, unsafe requests, the WebSocket)."""

from __future__ import annotations

from collections.abc import Collection


def origin_allowed(
    origin: str | None, host: str | None, scheme: str, allowed: Collection[str]
) -> bool:
    """True for no Origin (not a browser), the server's own origin, or a configured one."""
    if origin is None:
        return True
    if origin in allowed:
        return True
    return host is not None and origin == f"{scheme}://{host}"
