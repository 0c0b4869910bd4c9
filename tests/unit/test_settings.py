"""Unit tests for ``chatrt.settings``: parsing ``CHATRT_*`` variables into frozen settings."""

from __future__ import annotations

import pytest

from chatrt.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_ORIGINS,
    ProviderSettings,
    Settings,
    SettingsError,
)

SECRET = "0123456789abcdef-secret"
PG_URL = "postgresql://chat:pw@db.example:5432/chatrt"


def test_empty_env_is_the_embedded_default() -> None:
    settings = Settings.from_env({})

    assert settings.db.url == DEFAULT_DATABASE_URL
    assert settings.db.url.startswith("sqlite:///")
    assert settings.db.is_sqlite
    assert settings.db.sqlite_path == "chatrt.sqlite3"
    assert settings.db.pool_min == 2
    assert settings.db.pool_max == 20
    assert settings.redis.url is None
    assert settings.providers == ()
    assert settings.is_embedded
    assert settings.limits.max_content_chars == 32_000
    assert settings.limits.max_body_bytes == 1_048_576
    assert settings.limits.retention_days == 30
    assert settings.demo.chunk_delay_ms == 30
    assert settings.server.default_locale == "th"
    assert settings.server.allowed_origins == DEFAULT_ORIGINS
    assert settings.server.allowed_hosts == ("*",)
    assert settings.server.cookie_secure is False
    assert settings.server.shutdown_grace_s == 10.0


def test_embedded_default_generates_a_secret_per_call() -> None:
    first = Settings.from_env({})
    second = Settings.from_env({})

    key = first.require_secret_key()
    assert isinstance(key, str)
    assert len(key) >= 32
    assert key == first.server.secret_key
    assert second.require_secret_key() != key


def test_blank_values_fall_back_to_defaults() -> None:
    settings = Settings.from_env(
        {
            "CHATRT_DATABASE_URL": "",
            "CHATRT_REDIS_URL": "   ",
            "CHATRT_MAX_CONTENT_CHARS": " ",
            "CHATRT_DEFAULT_LOCALE": "",
        }
    )

    assert settings.db.url == DEFAULT_DATABASE_URL
    assert settings.redis.url is None
    assert settings.limits.max_content_chars == 32_000
    assert settings.server.default_locale == "th"
    assert settings.is_embedded


def test_unrelated_variables_are_ignored() -> None:
    settings = Settings.from_env({"PATH": "/usr/bin", "CHATRT_UNKNOWN": "x"})

    assert settings.db.url == DEFAULT_DATABASE_URL
    assert settings.is_embedded


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://chat:pw@db.example:5432/chatrt",
        "postgres://chat@localhost/chatrt",
    ],
)
def test_postgres_database_url(url: str) -> None:
    settings = Settings.from_env({"CHATRT_DATABASE_URL": url, "CHATRT_SECRET_KEY": SECRET})

    assert settings.db.url == url
    assert not settings.db.is_sqlite
    assert not settings.is_embedded


def test_sqlite_database_url() -> None:
    settings = Settings.from_env({"CHATRT_DATABASE_URL": "sqlite:////var/lib/chatrt/db.sqlite3"})

    assert settings.db.url == "sqlite:////var/lib/chatrt/db.sqlite3"
    assert settings.db.is_sqlite
    assert settings.db.sqlite_path == "/var/lib/chatrt/db.sqlite3"
    assert settings.is_embedded


def test_values_are_stripped() -> None:
    settings = Settings.from_env(
        {"CHATRT_DATABASE_URL": "  sqlite:///x.db \n", "CHATRT_MAX_CONTENT_CHARS": " 77 "}
    )

    assert settings.db.url == "sqlite:///x.db"
    assert settings.limits.max_content_chars == 77


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://cache.example:6380/1", "unix:///tmp/r.sock"]
)
def test_redis_url(url: str) -> None:
    settings = Settings.from_env({"CHATRT_REDIS_URL": url, "CHATRT_SECRET_KEY": SECRET})

    assert settings.redis.url == url
    assert settings.db.is_sqlite
    assert not settings.is_embedded


def test_pool_sizes() -> None:
    settings = Settings.from_env({"CHATRT_DB_POOL_MIN": "1", "CHATRT_DB_POOL_MAX": "7"})

    assert settings.db.pool_min == 1
    assert settings.db.pool_max == 7


def test_providers_json_list_with_prices() -> None:
    raw = (
        '[{"name": "main", "base_url": "https://api.example/v1", "model": "gpt-x",'
        ' "api_key": "sk-1", "input_price_per_mtok": 2.5, "output_price_per_mtok": 10},'
        ' {"name": "backup", "base_url": "http://localhost:11434/v1", "model": "llama"}]'
    )
    settings = Settings.from_env({"CHATRT_PROVIDERS": raw})

    assert settings.providers == (
        ProviderSettings(
            name="main",
            base_url="https://api.example/v1",
            model="gpt-x",
            api_key="sk-1",
            input_price_per_mtok=2.5,
            output_price_per_mtok=10.0,
        ),
        ProviderSettings(name="backup", base_url="http://localhost:11434/v1", model="llama"),
    )
    backup = settings.providers[1]
    assert backup.api_key == ""
    assert backup.input_price_per_mtok == 0.0
    assert backup.output_price_per_mtok == 0.0
    assert isinstance(settings.providers, tuple)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://chat.example", ("https://chat.example",)),
        (
            "https://a.example, https://b.example ,,https://c.example",
            ("https://a.example", "https://b.example", "https://c.example"),
        ),
    ],
)
def test_allowed_origins_csv(raw: str, expected: tuple[str, ...]) -> None:
    settings = Settings.from_env({"CHATRT_ALLOWED_ORIGINS": raw})

    assert settings.server.allowed_origins == expected


def test_allowed_hosts_csv() -> None:
    settings = Settings.from_env({"CHATRT_ALLOWED_HOSTS": "chat.example, *.chat.example"})

    assert settings.server.allowed_hosts == ("chat.example", "*.chat.example")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
        ("off", False),
    ],
)
def test_cookie_secure_bool(raw: str, expected: bool) -> None:
    settings = Settings.from_env({"CHATRT_COOKIE_SECURE": raw})

    assert settings.server.cookie_secure is expected


@pytest.mark.parametrize("locale", ["th", "en"])
def test_default_locale(locale: str) -> None:
    settings = Settings.from_env({"CHATRT_DEFAULT_LOCALE": locale})

    assert settings.server.default_locale == locale


def test_limits_demo_and_grace() -> None:
    settings = Settings.from_env(
        {
            "CHATRT_MAX_CONTENT_CHARS": "2000",
            "CHATRT_MAX_BODY_BYTES": "65536",
            "CHATRT_RETENTION_DAYS": "7",
            "CHATRT_DEMO_CHUNK_DELAY_MS": "0",
            "CHATRT_SHUTDOWN_GRACE_S": "2.5",
        }
    )

    assert settings.limits.max_content_chars == 2000
    assert settings.limits.max_body_bytes == 65536
    assert settings.limits.retention_days == 7
    assert settings.demo.chunk_delay_ms == 0
    assert settings.server.shutdown_grace_s == 2.5


def test_explicit_secret_key_is_used() -> None:
    settings = Settings.from_env({"CHATRT_SECRET_KEY": SECRET})

    assert settings.server.secret_key == SECRET
    assert settings.require_secret_key() == SECRET


_PROVIDER = '{"name": "a", "base_url": "http://x/v1", "model": "m"}'


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHATRT_DATABASE_URL", "mysql://user@host/db"),
        ("CHATRT_DATABASE_URL", "sqlite:///"),
        ("CHATRT_DATABASE_URL", "sqlite://relative.db"),
        ("CHATRT_DATABASE_URL", "chatrt.sqlite3"),
        ("CHATRT_DATABASE_URL", "http://db.example/chatrt"),
        ("CHATRT_REDIS_URL", "http://localhost:6379"),
        ("CHATRT_REDIS_URL", "localhost:6379"),
        ("CHATRT_DB_POOL_MIN", "two"),
        ("CHATRT_DB_POOL_MIN", "0"),
        ("CHATRT_DB_POOL_MAX", "-1"),
        ("CHATRT_DB_POOL_MAX", "2.5"),
        ("CHATRT_MAX_CONTENT_CHARS", "abc"),
        ("CHATRT_MAX_CONTENT_CHARS", "0"),
        ("CHATRT_MAX_CONTENT_CHARS", "-5"),
        ("CHATRT_MAX_BODY_BYTES", "1MB"),
        ("CHATRT_MAX_BODY_BYTES", "0"),
        ("CHATRT_RETENTION_DAYS", "0"),
        ("CHATRT_RETENTION_DAYS", "thirty"),
        ("CHATRT_DEMO_CHUNK_DELAY_MS", "-1"),
        ("CHATRT_DEMO_CHUNK_DELAY_MS", "fast"),
        ("CHATRT_SHUTDOWN_GRACE_S", "0"),
        ("CHATRT_SHUTDOWN_GRACE_S", "-3"),
        ("CHATRT_SHUTDOWN_GRACE_S", "soon"),
        ("CHATRT_COOKIE_SECURE", "maybe"),
        ("CHATRT_COOKIE_SECURE", "2"),
        ("CHATRT_COOKIE_SECURE", "y"),
        ("CHATRT_DEFAULT_LOCALE", "fr"),
        ("CHATRT_DEFAULT_LOCALE", "th-TH"),
        ("CHATRT_DEFAULT_LOCALE", "english"),
        ("CHATRT_PROVIDERS", "not json"),
        ("CHATRT_PROVIDERS", "[]"),
        ("CHATRT_PROVIDERS", _PROVIDER),
        ("CHATRT_PROVIDERS", f"[{_PROVIDER}, {_PROVIDER}]"),
        ("CHATRT_PROVIDERS", '[{"name": "a", "base_url": "http://x/v1", "model": "m", "k": 1}]'),
        ("CHATRT_PROVIDERS", '[{"name": "a", "base_url": "http://x/v1"}]'),
        ("CHATRT_PROVIDERS", '[{"name": "a", "model": "m"}]'),
        ("CHATRT_PROVIDERS", '[{"name": 1, "base_url": "http://x/v1", "model": "m"}]'),
        ("CHATRT_PROVIDERS", '[{"name": "a", "base_url": "u", "model": "m", "api_key": 5}]'),
        (
            "CHATRT_PROVIDERS",
            '[{"name": "a", "base_url": "u", "model": "m", "input_price_per_mtok": "cheap"}]',
        ),
        ("CHATRT_SECRET_KEY", "short"),
        ("CHATRT_SECRET_KEY", "x" * 15),
    ],
)
def test_malformed_value_raises_settings_error_naming_it(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value})

    message = str(info.value)
    assert message.startswith(f"{name}: ")
    assert len(message) > len(f"{name}: ")


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_secret_key_of_exactly_16_characters_is_accepted() -> None:
    settings = Settings.from_env({"CHATRT_SECRET_KEY": "x" * 16})

    assert settings.require_secret_key() == "x" * 16


def test_providers_duplicate_names_message() -> None:
    with pytest.raises(SettingsError, match="unique"):
        Settings.from_env({"CHATRT_PROVIDERS": f"[{_PROVIDER}, {_PROVIDER}]"})


def test_providers_unknown_field_message() -> None:
    raw = '[{"name": "a", "base_url": "http://x/v1", "model": "m", "temperature": 1}]'
    with pytest.raises(SettingsError, match="temperature"):
        Settings.from_env({"CHATRT_PROVIDERS": raw})


def test_providers_missing_model_message() -> None:
    with pytest.raises(SettingsError, match="model"):
        Settings.from_env({"CHATRT_PROVIDERS": '[{"name": "a", "base_url": "http://x/v1"}]'})


def test_settings_error_has_no_chained_cause() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"CHATRT_MAX_CONTENT_CHARS": "abc"})

    assert info.value.__suppress_context__ is True
    assert info.value.__cause__ is None


@pytest.mark.parametrize(
    "env",
    [
        {"CHATRT_DATABASE_URL": PG_URL},
        {"CHATRT_REDIS_URL": "redis://localhost:6379/0"},
        {"CHATRT_DATABASE_URL": PG_URL, "CHATRT_REDIS_URL": "redis://localhost:6379/0"},
    ],
)
def test_non_embedded_without_secret_fails_only_when_required(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)

    assert not settings.is_embedded
    assert settings.server.secret_key is None
    with pytest.raises(SettingsError) as info:
        settings.require_secret_key()
    assert str(info.value).startswith("CHATRT_SECRET_KEY")


@pytest.mark.parametrize(
    "env",
    [
        {"CHATRT_DATABASE_URL": PG_URL},
        {"CHATRT_REDIS_URL": "redis://localhost:6379/0"},
    ],
)
def test_non_embedded_with_secret_returns_it(env: dict[str, str]) -> None:
    settings = Settings.from_env(env | {"CHATRT_SECRET_KEY": SECRET})

    assert not settings.is_embedded
    assert settings.require_secret_key() == SECRET


def test_settings_is_frozen() -> None:
    settings = Settings.from_env({})

    with pytest.raises(AttributeError):
        settings.providers = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        settings.server.cookie_secure = True  # type: ignore[misc]
    with pytest.raises(AttributeError):
        settings.db.url = "sqlite:///other.db"  # type: ignore[misc]
    assert settings.server.cookie_secure is False
    assert settings.db.url == DEFAULT_DATABASE_URL


def test_from_env_does_not_mutate_the_mapping() -> None:
    env = {"CHATRT_DEFAULT_LOCALE": " en "}
    Settings.from_env(env)

    assert env == {"CHATRT_DEFAULT_LOCALE": " en "}


def test_a_wildcard_origin_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"^CHATRT_ALLOWED_ORIGINS: "):
        Settings.from_env({"CHATRT_ALLOWED_ORIGINS": "https://a.example,*"})
