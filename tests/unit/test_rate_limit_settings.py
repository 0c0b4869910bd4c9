"""Rate-limit settings and client identities."""

from __future__ import annotations

import pytest

from chatrt.ratelimit.identity import client_ip, email_identity
from chatrt.settings import Settings, SettingsError


def test_defaults_trust_loopback_only_and_limit_everything() -> None:
    settings = Settings.from_env({})
    assert settings.server.trusted_proxies == ("127.0.0.1", "::1")
    limits = settings.rate_limit
    assert limits.window_s == 60
    assert limits.auth_window_s == 900
    assert limits.login_per_email == 10
    assert min(limits.ip_per_window, limits.user_per_window, limits.ws_sends_per_window) > 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("none", ()),
        ("NONE", ()),
        ("10.0.0.1", ("10.0.0.1",)),
        ("10.0.0.1/32, 172.16.0.0/12,fd00::/8", ("10.0.0.1", "172.16.0.0/12", "fd00::/8")),
        ("10.1.2.3/8", ("10.0.0.0/8",)),
    ],
)
def test_trusted_proxies_are_addresses_or_networks(raw: str, expected: tuple[str, ...]) -> None:
    settings = Settings.from_env({"CHATRT_TRUSTED_PROXIES": raw})
    assert settings.server.trusted_proxies == expected


@pytest.mark.parametrize("raw", ["*", "10.0.0.1,*", "proxy.internal", "10.0.0.300"])
def test_trusted_proxies_refuse_wildcards_and_names(raw: str) -> None:
    with pytest.raises(SettingsError, match="CHATRT_TRUSTED_PROXIES"):
        Settings.from_env({"CHATRT_TRUSTED_PROXIES": raw})


@pytest.mark.parametrize(
    "name",
    ["CHATRT_RATE_LIMIT_IP_PER_WINDOW", "CHATRT_LOGIN_PER_EMAIL", "CHATRT_WS_SENDS_PER_WINDOW"],
)
def test_a_limit_of_zero_is_off_and_a_negative_one_is_refused(name: str) -> None:
    assert Settings.from_env({name: "0"})
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: "-1"})


@pytest.mark.parametrize(
    ("client", "identity"),
    [
        (("203.0.113.7", 5000), "203.0.113.7"),
        (("2001:db8:1:2:aaaa::1", 5000), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 5000), "2001:db8:1:2::/64"),
        (("::ffff:203.0.113.7", 5000), "203.0.113.7"),
        (None, "unknown"),
    ],
)
def test_client_identity_groups_an_ipv6_subscriber(
    client: tuple[str, int] | None, identity: str
) -> None:
    assert client_ip({"client": client}) == identity  # type: ignore[typeddict-item]


def test_email_identity_is_normalized_and_not_the_email() -> None:
    assert email_identity(" Alice@Example.COM ") == email_identity("alice@example.com")
    assert "alice" not in email_identity("alice@example.com")
