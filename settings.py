"""Configuration, read once from the environment and passed down as a value.

Nothing here opens a connection or touches the disk except :func:`load_or_create_secret`,
which the composition root calls explicitly.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

DEFAULT_PORT = 3001


class ConfigError(ValueError):
    """A configuration value is missing or malformed."""


def _normalize_database_url(url: str) -> str:
    """Accept the URLs hosting providers hand out and pick the async driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return url
    raise ConfigError(f"DATABASE_URL must be a postgresql:// or sqlite:// URL, got {url.split(':', 1)[0]}://")


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return value


def _on_off(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"on", "true", "1", "yes"}:
        return True
    if raw in {"off", "false", "0", "no"}:
        return False
    raise ConfigError(f"{name} must be on or off, got {raw!r}")


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or CIDR networks, normalized (``10.0.0.0/8``)."""
    networks = []
    for part in env.get(name, "").split(","):
        if part.strip():
            try:
                networks.append(str(ipaddress.ip_network(part.strip(), strict=False)))
            except ValueError:
                raise ConfigError(f"{name}: {part.strip()!r} is not an IP address or network") from None
    return tuple(networks)


@dataclass(frozen=True)
class Settings:
    """Every knob of the server. See the configuration table in README.md."""

    data_dir: Path = Path("data")
    database_url: str = ""
    redis_url: str | None = None
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    public_base_url: str = f"http://localhost:{DEFAULT_PORT}"
    cors_origins: tuple[str, ...] = ("http://localhost:5173",)
    secret_key: str | None = None
    firebase_project_id: str | None = None
    firebase_cert_url: str | None = None
    access_token_ttl: int = 3600
    refresh_token_ttl: int = 90 * 24 * 3600
    max_json_body_bytes: int = 1024 * 1024
    max_loops_per_user: int = 1000
    max_songs_per_user: int = 100
    log_level: str = "INFO"
    # Real-time collaboration.
    snapshot_interval: float = 10.0
    room_idle_seconds: float = 30.0
    max_update_bytes: int = 256 * 1024
    max_document_bytes: int = 8 * 1024 * 1024
    max_clients_per_room: int = 64
    max_messages_per_second: int = 100
    # Rate limits and HTTP caching (rest/rate_limits.py, rest/http_cache.py). Counters live
    # in Redis when REDIS_URL is set, so every instance enforces the same limits.
    rate_limits_enabled: bool = True
    rate_limit_get_per_hour: int = 1000
    rate_limit_mutations_per_hour: int = 100
    rate_limit_uploads_per_hour: int = 20
    rate_limit_migrations_per_hour: int = 1
    rate_limit_anonymous_accounts_per_ip_per_hour: int = 30
    rate_limit_socket_connects_per_ip_per_minute: int = 120
    trusted_proxies: tuple[str, ...] = ()
    redis_key_prefix: str = "mp"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'musicplayground.sqlite3'}"

    @property
    def is_postgres(self) -> bool:
        return self.effective_database_url.startswith("postgresql")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        database_url = env.get("DATABASE_URL", "").strip()
        port = _int(env, "PORT", DEFAULT_PORT, minimum=0)
        cors = tuple(
            o.strip() for o in env.get("CORS_ORIGIN", "http://localhost:5173").split(",") if o.strip()
        )
        return cls(
            data_dir=Path(env.get("DATA_DIR", "data")),
            database_url=_normalize_database_url(database_url) if database_url else "",
            redis_url=env.get("REDIS_URL") or None,
            host=env.get("HOST", "0.0.0.0"),
            port=port,
            public_base_url=env.get("PUBLIC_BASE_URL", f"http://localhost:{port}").rstrip("/"),
            cors_origins=cors,
            secret_key=env.get("SECRET_KEY") or None,
            firebase_project_id=env.get("FIREBASE_PROJECT_ID") or None,
            firebase_cert_url=env.get("FIREBASE_CERT_URL") or None,
            access_token_ttl=_int(env, "ACCESS_TOKEN_TTL", 3600, minimum=60),
            refresh_token_ttl=_int(env, "REFRESH_TOKEN_TTL", 90 * 24 * 3600, minimum=3600),
            max_json_body_bytes=_int(env, "MAX_JSON_BODY_BYTES", 1024 * 1024, minimum=1024),
            max_loops_per_user=_int(env, "MAX_LOOPS_PER_USER", 1000, minimum=1),
            max_songs_per_user=_int(env, "MAX_SONGS_PER_USER", 100, minimum=1),
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            snapshot_interval=_float(env, "SNAPSHOT_INTERVAL_SECONDS", 10.0),
            room_idle_seconds=_float(env, "ROOM_IDLE_SECONDS", 30.0),
            max_update_bytes=_int(env, "RT_MAX_UPDATE_BYTES", 256 * 1024, minimum=1024),
            max_document_bytes=_int(env, "RT_MAX_DOCUMENT_BYTES", 8 * 1024 * 1024, minimum=4096),
            max_clients_per_room=_int(env, "RT_MAX_CLIENTS_PER_ROOM", 64, minimum=1),
            max_messages_per_second=_int(env, "RT_MAX_MESSAGES_PER_SECOND", 100, minimum=1),
            rate_limits_enabled=_on_off(env, "RATE_LIMITS", True),
            rate_limit_get_per_hour=_int(env, "RATE_LIMIT_GET_PER_HOUR", 1000, minimum=1),
            rate_limit_mutations_per_hour=_int(env, "RATE_LIMIT_MUTATIONS_PER_HOUR", 100, minimum=1),
            rate_limit_uploads_per_hour=_int(env, "RATE_LIMIT_UPLOADS_PER_HOUR", 20, minimum=1),
            rate_limit_migrations_per_hour=_int(env, "RATE_LIMIT_MIGRATIONS_PER_HOUR", 1, minimum=1),
            rate_limit_anonymous_accounts_per_ip_per_hour=_int(
                env, "RATE_LIMIT_ANONYMOUS_ACCOUNTS_PER_IP_PER_HOUR", 30, minimum=1
            ),
            rate_limit_socket_connects_per_ip_per_minute=_int(
                env, "RATE_LIMIT_SOCKET_CONNECTS_PER_IP_PER_MINUTE", 120, minimum=1
            ),
            trusted_proxies=_networks(env, "TRUSTED_PROXIES"),
            redis_key_prefix=env.get("REDIS_KEY_PREFIX", "mp").strip() or "mp",
        )

    def replace(self, **changes: object) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)  # type: ignore[arg-type]


def load_or_create_secret(settings: Settings) -> str:
    """The signing key for our tokens.

    Production sets ``SECRET_KEY`` (all instances must share it). The embedded default
    keeps a generated key in the data directory so tokens survive restarts.
    """
    if settings.secret_key:
        if len(settings.secret_key) < 32:
            raise ConfigError("SECRET_KEY must be at least 32 characters")
        return settings.secret_key
    if settings.is_postgres:
        raise ConfigError(
            "SECRET_KEY is required with a Postgres DATABASE_URL: every instance must sign "
            "and verify tokens with the same key"
        )
    path = settings.data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
