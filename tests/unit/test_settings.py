"""Settings are validated at start: every problem reported, one line each; secrets never shown."""

from __future__ import annotations

import pytest

from settings import ConfigError, Settings, mask_url

GOOD_SECRET = "s" * 40


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        Settings.from_env(env)
    return str(excinfo.value).splitlines()


def test_defaults_are_valid() -> None:
    settings = Settings.from_env({})
    assert settings.log_level == "INFO" and settings.log_format == "plain"
    assert settings.access_log is True and settings.metrics_token is None
    assert settings.anonymous_retention_days == 90
    assert settings.public_base_url == "http://localhost:3001"


def test_every_bad_setting_is_one_line() -> None:
    lines = problems(
        {
            "LOG_LEVEL": "LOUD",
            "LOG_FORMAT": "xml",
            "PORT": "eighty",
            "REDIS_URL": "localhost:6379",
            "PUBLIC_BASE_URL": "example.com",
            "DATABASE_URL": "mysql://x",
            "ACCESS_LOG": "maybe",
            "ANONYMOUS_RETENTION_DAYS": "0",
            "CORS_ORIGIN": "http://ok.test,ftp://bad.test",
        }
    )
    assert len(lines) == 9, lines
    joined = "\n".join(lines)
    for expected in (
        "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
        "LOG_FORMAT must be one of plain, json",
        "PORT must be an integer",
        "REDIS_URL must be a redis:// or rediss:// or unix:// URL",
        "PUBLIC_BASE_URL must be a http:// or https:// URL",
        "DATABASE_URL must be a postgresql:// or sqlite:// URL",
        "ACCESS_LOG must be on or off",
        "ANONYMOUS_RETENTION_DAYS must be >= 1",
        "CORS_ORIGIN must be a http:// or https:// URL, got 'ftp://bad.test'",
    ):
        assert expected in joined


def test_secret_key_rules() -> None:
    assert problems({"DATABASE_URL": "postgresql://u@h/db"}) == [
        "SECRET_KEY is required with a Postgres DATABASE_URL: every instance must sign "
        "and verify tokens with the same key"
    ]
    assert problems({"SECRET_KEY": "short"}) == ["SECRET_KEY must be at least 32 characters"]
    assert Settings.from_env({"DATABASE_URL": "postgres://u@h/db", "SECRET_KEY": GOOD_SECRET}).is_postgres


def test_values_are_normalized() -> None:
    settings = Settings.from_env({"LOG_LEVEL": "debug", "LOG_FORMAT": "JSON", "ACCESS_LOG": "off"})
    assert (settings.log_level, settings.log_format, settings.access_log) == ("DEBUG", "json", False)


def test_a_bad_url_never_echoes_its_password() -> None:
    (line,) = problems({"REDIS_URL": "http://user:hunter2@redis.internal:6379"})
    assert "hunter2" not in line and "***" in line


def test_describe_masks_secrets_and_passwords() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://app:pg-password@db.internal/mp",
            "SECRET_KEY": GOOD_SECRET,
            "METRICS_TOKEN": "scrape-token",
            "REDIS_URL": "redis://:redis-password@cache:6379/0",
        }
    )
    shown = dict(settings.describe())
    text = repr(shown)
    for secret in (GOOD_SECRET, "scrape-token", "pg-password", "redis-password"):
        assert secret not in text
    assert shown["secret_key"] == "*** (set)" and shown["metrics_token"] == "*** (set)"
    assert shown["database_url"] == "postgresql+asyncpg://app:***@db.internal/mp"
    assert shown["access_token_ttl"] == "3600"  # numbers are not secrets, even with "token" in the name
    assert mask_url("redis://cache:6379") == "redis://cache:6379"


def test_serve_port_is_also_the_public_port() -> None:
    settings = Settings.from_env({})
    moved = settings.listening_on(host=None, port=4100, env={})
    assert moved.port == 4100 and moved.public_base_url == "http://localhost:4100"
    explicit = Settings.from_env({"PUBLIC_BASE_URL": "https://music.example"})
    kept = explicit.listening_on(
        host="127.0.0.1", port=4100, env={"PUBLIC_BASE_URL": "https://music.example"}
    )
    assert kept.public_base_url == "https://music.example" and kept.host == "127.0.0.1"
