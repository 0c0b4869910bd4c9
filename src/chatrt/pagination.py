"""Opaque keyset cursors and the shared ``limit`` parameter."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec
from litestar.params import Parameter

from chatrt.errors import AppError

T = TypeVar("T")

Limit = Annotated[int, Parameter(ge=1, le=100, description="Page size, 1 to 100 (default 25).")]
# Cursor keys are range-checked like any input: a forged cursor must not reach the database.
MessageIndex = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]

Cursor = Annotated[
    str | None,
    Parameter(max_length=512, description="Opaque cursor from the previous page's next_cursor."),
]


def encode_cursor(key: Any) -> str:
    """Encode a keyset position; clients must treat the result as opaque."""
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


def decode_cursor(cursor: str, key_type: type[T]) -> T:
    """Decode a cursor made by :func:`encode_cursor`; a 422 ``invalid_cursor`` if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=key_type)
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise AppError(422, "invalid_cursor", details=[{"field": "cursor"}]) from None
