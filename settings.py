"""Configuration, read once from the environment and passed down as a value.

Nothing here opens a connection or touches the disk except :func:`load_or_create_secret`,
which the composition root calls explicitly.
"""

from __future__ import annotations

import os
import secrets
import uuid
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


def _uuids(env: Mapping[str, str], name: str) -> frozenset[uuid.UUID]:
    ids = set()
    for raw in env.get(name, "").split(","):
        if raw.strip():
            try:
                ids.add(uuid.UUID(raw.strip()))
            except ValueError:
                raise ConfigError(f"{name} must be comma-separated user ids (UUIDs), got {raw!r}") from None
    return frozenset(ids)


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
    # Community: accounts that are admins besides those with users.is_admin set.
    admin_user_ids: frozenset[uuid.UUID] = frozenset()

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
            admin_user_ids=_uuids(env, "ADMIN_USER_IDS"),
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
