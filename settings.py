"""Configuration, read once from the environment and passed down as a value.

Nothing here opens a connection or touches the disk except :func:`load_or_create_secret`,
which the composition root calls explicitly.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

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


# Longest lifetime of a presigned URL that S3's SigV4 allows (7 days).
MAX_PRESIGN_SECONDS = 7 * 24 * 3600


def _object_storage(env: Mapping[str, str]) -> dict[str, Any]:
    """S3_* settings, or the seed's Cloudflare R2 names (R2_*), mapped onto them."""
    s3 = {name: env.get(name, "").strip() for name in env if name.startswith("S3_")}
    r2 = {name: env.get(name, "").strip() for name in env if name.startswith("R2_")}
    s3, r2 = {k: v for k, v in s3.items() if v}, {k: v for k, v in r2.items() if v}
    presign = _int(env, "S3_PRESIGN_SECONDS", 3600, minimum=60)
    if presign > MAX_PRESIGN_SECONDS:
        raise ConfigError(f"S3_PRESIGN_SECONDS must be <= {MAX_PRESIGN_SECONDS} (7 days), got {presign}")
    public: str | None = (s3.get("S3_PUBLIC_BASE_URL") or "").rstrip("/") or None
    if public and not public.startswith(("http://", "https://")):
        raise ConfigError("S3_PUBLIC_BASE_URL must be an http(s):// URL")
    if "R2_BUCKET_NAME" in r2:
        if "S3_BUCKET" in s3:
            raise ConfigError("set either S3_BUCKET or R2_BUCKET_NAME, not both")
        if "R2_ACCOUNT_ID" not in r2 and "S3_ENDPOINT_URL" not in s3:
            raise ConfigError("R2_BUCKET_NAME needs R2_ACCOUNT_ID (or S3_ENDPOINT_URL)")
        r2_endpoint = s3.get("S3_ENDPOINT_URL") or f"https://{r2['R2_ACCOUNT_ID']}.r2.cloudflarestorage.com"
        return {
            "s3_bucket": r2["R2_BUCKET_NAME"],
            "s3_endpoint_url": r2_endpoint,
            "s3_region": s3.get("S3_REGION", "auto"),
            "s3_access_key_id": r2.get("R2_ACCESS_KEY_ID") or s3.get("S3_ACCESS_KEY_ID"),
            "s3_secret_access_key": r2.get("R2_SECRET_ACCESS_KEY") or s3.get("S3_SECRET_ACCESS_KEY"),
            "s3_public_base_url": public,
            "s3_presign_seconds": presign,
        }
    leftovers = (set(s3) - {"S3_PRESIGN_SECONDS"}) | set(r2)
    if "S3_BUCKET" not in s3:
        if leftovers:
            raise ConfigError(f"{', '.join(sorted(leftovers))} set but no S3_BUCKET (or R2_BUCKET_NAME)")
        return {"s3_presign_seconds": presign}
    endpoint = s3.get("S3_ENDPOINT_URL")
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ConfigError("S3_ENDPOINT_URL must be an http(s):// URL")
    return {
        "s3_bucket": s3["S3_BUCKET"],
        "s3_endpoint_url": endpoint,
        "s3_region": s3.get("S3_REGION", "us-east-1"),
        "s3_access_key_id": s3.get("S3_ACCESS_KEY_ID"),
        "s3_secret_access_key": s3.get("S3_SECRET_ACCESS_KEY"),
        "s3_public_base_url": public,
        "s3_presign_seconds": presign,
    }


def _clamd_url(env: Mapping[str, str]) -> str | None:
    url = env.get("CLAMD_URL", "").strip()
    if not url:
        return None
    if not (url.startswith("tcp://") or url.startswith("unix://")):
        raise ConfigError(f"CLAMD_URL must be tcp://host:port or unix:///path, got {url!r}")
    return url


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
    # Audio samples (sizes in bytes; 5 MB = 5 x 1024 x 1024). With no bucket, files are
    # kept under DATA_DIR/samples and served by the app.
    sample_max_bytes: int = 5 * 1024 * 1024
    sample_quota_bytes: int = 100 * 1024 * 1024
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = field(default=None, repr=False)
    s3_public_base_url: str | None = None
    s3_presign_seconds: int = 3600
    clamd_url: str | None = None

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
            sample_max_bytes=_int(env, "SAMPLE_MAX_BYTES", 5 * 1024 * 1024, minimum=1024),
            sample_quota_bytes=_int(env, "SAMPLE_QUOTA_BYTES", 100 * 1024 * 1024, minimum=1024),
            clamd_url=_clamd_url(env),
            **_object_storage(env),
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
