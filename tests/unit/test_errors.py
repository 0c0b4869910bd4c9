"""Unit tests for ``chatrt.errors``: locale negotiation, message tables and the error envelope."""

from __future__ import annotations

import re

import msgspec
import pytest

from chatrt.errors import (
    MESSAGES,
    STATUS_CODES,
    AppError,
    ErrorBody,
    ErrorResponse,
    error_body,
    localize,
    preferred_locale,
)
from chatrt.settings import Locale

THAI = re.compile("[\u0e00-\u0e7f]")


@pytest.mark.parametrize(
    ("header", "default", "expected"),
    [
        (None, "th", "th"),
        (None, "en", "en"),
        ("", "th", "th"),
        ("", "en", "en"),
        ("en", "th", "en"),
        ("th", "en", "th"),
        ("en-US,en;q=0.9", "th", "en"),
        ("th-TH", "en", "th"),
        ("th-TH,th;q=0.9,en;q=0.8", "en", "th"),
        ("fr, en;q=0.5", "th", "en"),
        ("fr, th;q=0.5", "en", "th"),
        ("en;q=0.2, th;q=0.8", "en", "th"),
        ("th;q=0.2, en;q=0.8", "th", "en"),
        ("en;q=0", "th", "th"),
        ("en;q=0.0", "th", "th"),
        ("th;q=0", "en", "en"),
        ("en;q=0, th;q=0.1", "en", "th"),
        ("en;q=abc", "th", "th"),
        ("en;q=", "th", "th"),
        ("en;q=abc, th;q=0.3", "en", "th"),
        ("en;q=nan", "th", "th"),
        ("en;q=-1", "th", "th"),
        ("*", "th", "th"),
        ("*", "en", "en"),
        ("fr", "th", "th"),
        ("fr-FR, de;q=0.9", "en", "en"),
        ("EN", "th", "en"),
        ("EN-gb", "th", "en"),
        ("TH", "en", "th"),
        (" en ; q=0.7 ", "th", "en"),
        ("en, th", "th", "en"),
        ("th, en", "en", "th"),
        (",,;", "en", "en"),
        ("english", "th", "th"),
    ],
)
def test_preferred_locale(header: str | None, default: Locale, expected: Locale) -> None:
    assert preferred_locale(header, default) == expected


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_every_message_has_thai_and_english(code: str) -> None:
    thai, english = MESSAGES[code]

    assert thai.strip()
    assert THAI.search(thai), f"{code}: Thai text has no Thai characters"
    assert english.strip()
    assert not THAI.search(english), f"{code}: English text contains Thai characters"
    assert thai != english


def test_message_codes_are_snake_case() -> None:
    for code in MESSAGES:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", code), code


@pytest.mark.parametrize(("status", "code"), sorted(STATUS_CODES.items()))
def test_every_status_code_has_a_message(status: int, code: str) -> None:
    assert 400 <= status <= 599
    assert code in MESSAGES


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_localize_known_code(code: str) -> None:
    thai, english = MESSAGES[code]

    assert localize(code, "th") == thai
    assert localize(code, "en") == english


@pytest.mark.parametrize("locale", ["th", "en"])
def test_localize_unknown_code_falls_back_to_internal_error(locale: Locale) -> None:
    expected = localize("internal_error", locale)

    assert localize("no_such_code", locale) == expected
    assert expected == MESSAGES["internal_error"][0 if locale == "th" else 1]


def test_error_body_encodes_to_the_contract_shape_in_english() -> None:
    body = error_body("not_found", "en")

    assert msgspec.json.encode(body) == (
        b'{"error":{"code":"not_found","message":"Not found.","details":null}}'
    )


def test_error_body_encodes_to_the_contract_shape_in_thai() -> None:
    body = error_body("conversation_not_found", "th", details={"id": 7})

    expected = (
        '{"error":{"code":"conversation_not_found","message":"ไม่พบบทสนทนา","details":{"id":7}}}'
    ).encode()
    assert msgspec.json.encode(body) == expected


def test_error_body_with_list_details() -> None:
    body = error_body("invalid_cursor", "en", details=[{"field": "cursor"}])

    assert msgspec.json.encode(body) == (
        b'{"error":{"code":"invalid_cursor","message":"The page cursor is invalid.",'
        b'"details":[{"field":"cursor"}]}}'
    )
    assert isinstance(body, ErrorResponse)
    assert body.error == ErrorBody(
        code="invalid_cursor", message="The page cursor is invalid.", details=[{"field": "cursor"}]
    )


def test_error_body_unknown_code_keeps_code_with_fallback_message() -> None:
    decoded = msgspec.json.decode(msgspec.json.encode(error_body("weird", "en")))

    assert decoded == {
        "error": {"code": "weird", "message": MESSAGES["internal_error"][1], "details": None}
    }


def test_app_error_carries_code_status_and_details() -> None:
    exc = AppError(409, "email_taken", details={"field": "email"}, headers={"X-A": "1"})

    assert exc.status_code == 409
    assert exc.code == "email_taken"
    assert exc.details == {"field": "email"}
    assert exc.headers == {"X-A": "1"}
