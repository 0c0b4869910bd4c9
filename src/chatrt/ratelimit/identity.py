"""Who a request counts as: its client address (after trusted proxies), or an email."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any, cast

from litestar.types import ASGIApp, Scope
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware


def trusting_proxies(app: ASGIApp, trusted: tuple[str, ...]) -> ASGIApp:
    """Take the client address and scheme from ``X-Forwarded-For`` / ``-Proto``, but only
    when the peer is one of ``trusted`` (IPs or networks).

    This is uvicorn's own middleware, applied in the app so that the rule is the same under
    ``chatrt serve`` (which turns uvicorn's copy off) and any other ASGI server or test
    transport. The client is the right-most address in the header that is not a trusted
    proxy; a client's forged entries sit to the left of it and are never reached.
    """
    if not trusted:
        return app
    return cast(ASGIApp, ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=list(trusted)))


def client_ip(scope: Scope) -> str:
    """The client's address as a rate-limit key; IPv6 clients count per /64 network.

    One IPv6 subscriber usually holds a whole /64, so counting single addresses would give
    it billions of fresh identities.
    """
    client = scope.get("client")
    host = client[0] if client else None
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]  # a unix socket or similar: one identity
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def email_identity(email: str) -> str:
    """A login target as stored (trimmed, lower-case), hashed so no email sits in Redis keys."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
