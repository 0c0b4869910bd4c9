"""The id of the request being served, for every log line written while serving it.

A context variable, so tasks started by a request (a generation, a socket's loops) keep
its id without passing it around; outside any request it is ``None``.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("chatrt_request_id", default=None)

# Short and plain, so a client cannot forge log structure or bloat every line.
_SANE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def accept_or_new(raw: bytes | None) -> str:
    """The client's ``X-Request-ID`` when it is a sane token, else a fresh random id."""
    if raw is not None:
        try:
            candidate = raw.decode("ascii")
        except UnicodeDecodeError:
            candidate = ""
        if _SANE.fullmatch(candidate):
            return candidate
    return uuid.uuid4().hex
