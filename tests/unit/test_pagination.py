"""Unit tests for ``chatrt.pagination``: opaque keyset cursors."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import msgspec
import pytest

from chatrt.errors import AppError
from chatrt.pagination import decode_cursor, encode_cursor

URL_SAFE = re.compile(r"[A-Za-z0-9_-]*")


class TimeKey(msgspec.Struct, frozen=True, array_like=True):
    created_at: datetime
    id: int


class NameKey(msgspec.Struct, frozen=True, array_like=True):
    title: str
    id: str


@pytest.mark.parametrize("value", [0, 1, 42, 2**53, -7, 10**18])
def test_int_round_trip(value: int) -> None:
    cursor = encode_cursor(value)

    assert decode_cursor(cursor, int) == value
    assert URL_SAFE.fullmatch(cursor)


@pytest.mark.parametrize(
    "key",
    [
        TimeKey(datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC), 17),
        TimeKey(datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), 2**40),
    ],
)
def test_time_struct_round_trip(key: TimeKey) -> None:
    cursor = encode_cursor(key)

    assert decode_cursor(cursor, TimeKey) == key
    assert URL_SAFE.fullmatch(cursor)


@pytest.mark.parametrize(
    "key",
    [
        NameKey("hello", "abc"),
        NameKey("สวัสดี ครับ", "c0ffee"),
        NameKey("?&=/+ a\"b'c", "x-y_z"),
        NameKey("", ""),
        NameKey("~" * 200, "\u00ff\u00fe>>>???"),
    ],
)
def test_string_struct_round_trip(key: NameKey) -> None:
    cursor = encode_cursor(key)

    assert decode_cursor(cursor, NameKey) == key
    assert URL_SAFE.fullmatch(cursor)


def test_struct_is_encoded_as_a_json_array() -> None:
    key = NameKey("t", "i")
    cursor = encode_cursor(key)
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))

    assert raw == b'["t","i"]'


def test_encoded_cursors_have_no_padding_or_unsafe_characters() -> None:
    # Lengths 1..12 cover every padding remainder; '?'/'>' bytes hit base64's '/' and '+'.
    for n in range(1, 13):
        for text in ("?" * n, ">" * n, "\u00ff" * n):
            cursor = encode_cursor(NameKey(text, text))
            assert "+" not in cursor
            assert "/" not in cursor
            assert "=" not in cursor
            assert decode_cursor(cursor, NameKey) == NameKey(text, text)


def test_padded_cursor_is_still_accepted() -> None:
    cursor = encode_cursor(12)
    padded = cursor + "=" * (-len(cursor) % 4)

    assert decode_cursor(padded, int) == 12


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize(
    ("cursor", "key_type"),
    [
        ("", int),
        ("", TimeKey),
        ("a", int),
        ("%%%%", int),
        ("not base64!", int),
        ("é", int),
        ("\x00", int),
        (_b64(b"not json"), int),
        (_b64(b"{"), int),
        (_b64(b"\xff\xfe"), int),
        (_b64(b'"seven"'), int),
        (_b64(b"1.5"), int),
        (_b64(b"null"), int),
        (_b64(b"[1, 2]"), int),
        (_b64(b"7"), TimeKey),
        (_b64(b'["2024-05-01T00:00:00Z"]'), TimeKey),
        (_b64(b'["yesterday", 1]'), TimeKey),
        (_b64(b'{"created_at": "2024-05-01T00:00:00Z", "id": 1}'), TimeKey),
        (_b64(b'[1, "x"]'), NameKey),
        (encode_cursor(NameKey("a", "b")), TimeKey),
        (encode_cursor("text"), int),
    ],
)
def test_bad_cursor_is_a_422_invalid_cursor(cursor: str, key_type: type[object]) -> None:
    with pytest.raises(AppError) as info:
        decode_cursor(cursor, key_type)

    assert info.value.status_code == 422
    assert info.value.code == "invalid_cursor"
    assert info.value.details == [{"field": "cursor"}]
    assert info.value.__cause__ is None
