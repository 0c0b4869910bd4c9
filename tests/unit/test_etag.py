"""If-None-Match matching per RFC 9110 section 13.1.2 (weak comparison)."""

from __future__ import annotations

import pytest

from chatrt.middleware.etag import if_none_match_hits, strong_etag

TAG = strong_etag(b'{"items":[]}')


def test_the_tag_is_strong_quoted_and_follows_the_body() -> None:
    assert TAG.startswith('"')
    assert TAG.endswith('"')
    assert not TAG.startswith("W/")
    assert strong_etag(b'{"items":[]}') == TAG
    assert strong_etag(b'{"items":[1]}') != TAG


@pytest.mark.parametrize(
    ("header", "hit"),
    [
        (TAG, True),
        ("*", True),
        (" * ", True),
        (f"W/{TAG}", True),
        (f'"other", {TAG}', True),
        (f'"a","b" ,  W/{TAG} , "c"', True),
        (f"{TAG},", True),
        ('"other"', False),
        ('"a", "b"', False),
        (TAG.strip('"'), False),  # unquoted: not an entity-tag
        (f'"x", garbage, {TAG}', False),  # malformed lists never match
        ("", False),
        ('"a,b", "c"', False),  # a comma inside a tag is part of the tag
    ],
)
def test_if_none_match(header: str, hit: bool) -> None:
    assert if_none_match_hits(header, TAG) is hit


def test_a_comma_inside_a_tag_does_not_split_it() -> None:
    assert if_none_match_hits('"x", "a,b"', '"a,b"')
