"""Settings are validated at start: every problem reported, one line each; secrets never shown."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from musicplayground import backends
from musicplayground.app import realtime_limits
from realtime.service import RealtimeLimits
from settings import (
    FIELDS,
    README_TABLE_END,
    README_TABLE_START,
    SECTIONS,
    SETTING_FIELDS,
    ConfigError,
    Field,
    Settings,
    load_or_create_secret,
    markdown_table,
    mask_url,
)
from storage.database import POSTGRES_POOL_SIZE

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
    text = repr(shown) + repr(settings)
    for secret in (GOOD_SECRET, "scrape-token", "pg-password", "redis-password"):
        assert secret not in text
    assert shown["SECRET_KEY"] == "*** (set)" and shown["METRICS_TOKEN"] == "*** (set)"
    assert shown["DATABASE_URL"] == "postgresql+asyncpg://app:***@db.internal/mp"
    assert shown["REDIS_URL"] == "redis://:***@cache:6379/0"
    assert shown["ACCESS_TOKEN_TTL"] == "3600"  # numbers are not secrets, even with "token" in the name
    assert mask_url("redis://cache:6379") == "redis://cache:6379"


def test_describe_names_every_variable_and_where_a_generated_secret_lives(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"DATA_DIR": str(tmp_path), "RATE_LIMITS": "off", "TRUSTED_PROXIES": "10.1.2.3/8"}
    )
    shown = dict(settings.describe())
    assert list(shown) == [row.env for row in SETTING_FIELDS]  # environment names, in table order
    assert shown["SECRET_KEY"] == f"(not set: a generated key is kept in {tmp_path / 'secret_key'})"
    assert load_or_create_secret(settings) == (tmp_path / "secret_key").read_text()
    assert shown["RATE_LIMITS"] == "off" and shown["ACCESS_LOG"] == "on"  # as they are written
    assert shown["TRUSTED_PROXIES"] == "10.0.0.0/8" and shown["ADMIN_USER_IDS"] == "(none)"
    assert shown["SNAPSHOT_INTERVAL_SECONDS"] == "10" and shown["FIREBASE_PROJECT_ID"] == "(not set)"


def test_serve_port_is_also_the_public_port() -> None:
    settings = Settings.from_env({})
    moved = settings.listening_on(host=None, port=4100, env={})
    assert moved.port == 4100 and moved.public_base_url == "http://localhost:4100"
    explicit = Settings.from_env({"PUBLIC_BASE_URL": "https://music.example"})
    kept = explicit.listening_on(
        host="127.0.0.1", port=4100, env={"PUBLIC_BASE_URL": "https://music.example"}
    )
    assert kept.public_base_url == "https://music.example" and kept.host == "127.0.0.1"


# The table: every setting declared once, everything else derived from it.

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("settings", "musicplayground", "rest", "realtime", "presence", "storage", "identity", "bus")
# Product files that touch the environment besides the settings table, and why.
READS_THE_ENVIRONMENT = {
    "identity/firebase.py": "refuses FIREBASE_AUTH_EMULATOR_HOST (firebase-admin's own variable; "
    "named in the FIREBASE_PROJECT_ID row)",
    "musicplayground/cli.py": "hands os.environ to Settings.from_env and Settings.listening_on",
}


def test_the_defaults_are_the_table() -> None:
    assert Settings.from_env({}) == Settings()
    assert len({row.env for row in FIELDS}) == len(FIELDS)  # one row per variable
    assert {row.section for row in FIELDS} == set(SECTIONS)


@pytest.mark.parametrize(
    "row", [r for r in SETTING_FIELDS if r.default not in (None, "")], ids=lambda r: r.env
)
def test_each_default_as_written_reads_back_as_itself(row: Field) -> None:
    """The default, written as the README and `musicplayground config` show it, passes its own
    validator and reads back unchanged."""
    written = "" if row.default in ((), frozenset()) else dict(Settings().describe())[row.env]
    env = {row.env: written}
    if row.env.startswith("S3_"):
        env.setdefault("S3_BUCKET", "samples")  # the other S3_* settings need a bucket
    assert row.attr is not None
    assert getattr(Settings.from_env(env), row.attr) == row.default


def test_the_readme_table_is_the_field_table() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.count(README_TABLE_START) == 1 and readme.count(README_TABLE_END) == 1
    table = readme.split(README_TABLE_START)[1].split(README_TABLE_END)[0].strip()
    assert table == markdown_table(), "regenerate it: uv run python -m settings --markdown"
    for row in FIELDS:
        assert f"| `{row.env}` |" in table


def test_python_m_settings_prints_the_table() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "settings", "--markdown"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert printed.stdout.strip() == markdown_table()


def _environment_reads(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv", "environb")
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            return True
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in ("environ", "getenv") for alias in node.names)
        ):
            return True
    return False


def test_only_settings_reads_the_environment() -> None:
    """Every variable the server reads is a row of the table (and so of the README)."""
    files = [path for name in PRODUCT for path in sorted((ROOT / name).rglob("*.py"))]
    readers = {str(p.relative_to(ROOT)) for p in files if _environment_reads(p)}
    assert readers == {"settings/table.py", *READS_THE_ENVIRONMENT}
    assert "FIREBASE_AUTH_EMULATOR_HOST" in (ROOT / "identity" / "firebase.py").read_text()
    assert "FIREBASE_AUTH_EMULATOR_HOST" in markdown_table()


def test_realtime_limits_come_from_the_settings() -> None:
    limits = realtime_limits(Settings(max_update_bytes=2048, presence_timeout=7.0))
    assert (limits.max_update_bytes, limits.presence_timeout) == (2048, 7.0)
    settable = {f.name for f in dataclasses.fields(RealtimeLimits) if f.default is dataclasses.MISSING}
    assert settable and settable <= {row.attr for row in SETTING_FIELDS}
    assert all(
        getattr(limits, name) == getattr(Settings(), name)
        for name in settable - {"max_update_bytes", "presence_timeout"}
    )


def test_the_postgres_pool_size_is_a_setting() -> None:
    # Database() without settings (tests, benchmarks) opens storage's default: the same number.
    assert Settings().postgres_pool_size == POSTGRES_POOL_SIZE
    tuned = Settings.from_env({"POSTGRES_POOL_SIZE": "2"})
    assert backends.database(tuned).postgres_pool_size == 2
    assert problems({"POSTGRES_POOL_SIZE": "0"}) == ["POSTGRES_POOL_SIZE must be >= 1, got 0"]


def test_the_socket_connect_timeout_reaches_the_realtime_limits() -> None:
    assert realtime_limits(Settings()).socket_connect_timeout == 10.0
    tuned = Settings.from_env({"RT_CONNECT_TIMEOUT_SECONDS": "2.5"})
    assert realtime_limits(tuned).socket_connect_timeout == 2.5
    assert problems({"RT_CONNECT_TIMEOUT_SECONDS": "0"}) == [
        "RT_CONNECT_TIMEOUT_SECONDS must be > 0, got 0.0"
    ]
