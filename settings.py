"""Configuration, read once from the environment and passed down as a value.

Nothing here opens a connection or touches the disk except :func:`load_or_create_secret`,
which the composition root calls explicitly.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_PORT = 3001
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("plain", "json")
# Fields whose values `musicplayground config` never prints.
_SECRET_FIELD = re.compile(r"secret|password|token$|_key$|key_id$")


class ConfigError(ValueError):
    """A configuration value is missing or malformed (one line per problem)."""


class _Env(dict[str, str]):
    """The environment being read, plus the problems found so far: the readers below record
    an error here and return the default, so one start reports every bad setting at once."""

    def __init__(self, source: Mapping[str, str], errors: list[str] | None = None) -> None:
        super().__init__(source)
        self.errors: list[str] = [] if errors is None else errors


def _collecting(read: Any) -> Any:
    """Readers take ``(env, name, default, ...)``; on an ``_Env`` a bad value is recorded and
    the default returned, so every problem of a start is reported at once."""

    @functools.wraps(read)
    def wrapper(env: Mapping[str, str], name: str, default: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return read(env, name, default, *args, **kwargs)
        except ConfigError as exc:
            if not isinstance(env, _Env):
                raise
            env.errors.append(str(exc))
            return default

    return wrapper


def _normalize_database_url(url: str, errors: list[str] | None = None) -> str:
    try:
        return _database_url(url)
    except ConfigError as exc:
        if errors is None:
            raise
        errors.append(str(exc))
        return ""


def _database_url(url: str) -> str:
    """Accept the URLs hosting providers hand out and pick the async driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return url
    raise ConfigError(f"DATABASE_URL must be a postgresql:// or sqlite:// URL, got {url.split(':', 1)[0]}://")


@_collecting
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


@_collecting
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


@_collecting
def _redis_prefix(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, default)
    if not raw or len(raw) > 64 or any(c.isspace() for c in raw):
        raise ConfigError("REDIS_PREFIX must be 1-64 characters without spaces")
    return raw


@_collecting
def _url(env: Mapping[str, str], name: str, default: str | None, schemes: tuple[str, ...]) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        shown = mask_url(raw)
        raise ConfigError(f"{name} must be a {' or '.join(s + '://' for s in schemes)} URL, got {shown!r}")
    return raw


@_collecting
def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or default).strip()
    for choice in choices:
        if choice.lower() == raw.lower():
            return choice
    raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")


@_collecting
def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise ConfigError(f"{name} must be on or off, got {raw!r}")


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and `musicplayground config`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


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
    # Hardening against hostile clients (issue 6).
    max_connections_per_user: int = 8
    http_idle_timeout: float = 15.0  # also bounds how long a client may take to send headers
    http_body_timeout: float = 30.0
    # Several instances: the bus (REDIS_URL), cluster-wide presence, the REST read cache.
    redis_prefix: str = "mp:"
    presence_timeout: float = 30.0
    read_cache_ttl: float = 30.0
    # Operations: logs, metrics, retention of anonymous accounts.
    log_format: str = "plain"
    access_log: bool = True
    metrics_token: str | None = None
    anonymous_retention_days: int = 90
    anonymous_purge: bool = True  # the daily purge inside the server (off: run the command from cron)
    # Sharing and view counts.
    view_count_window: float = 3600.0
    view_count_flush_interval: float = 5.0
    composer_url: str = "http://localhost:5173"
    page_cache_bytes: int = 32 * 1024 * 1024  # rendered public pages kept per instance
    list_content_budget_bytes: int = 1024 * 1024  # document content per list page (include=content)
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
        """Read and validate every setting; one ``ConfigError`` lists every problem, a line each."""
        env = _Env(os.environ if env is None else env)
        database_url = env.get("DATABASE_URL", "").strip()
        port = _int(env, "PORT", DEFAULT_PORT, minimum=0)
        cors = tuple(
            o.strip() for o in env.get("CORS_ORIGIN", "http://localhost:5173").split(",") if o.strip()
        )
        for origin in cors:
            _url(_Env({"CORS_ORIGIN": origin}, env.errors), "CORS_ORIGIN", None, ("http", "https"))
        settings = cls(
            data_dir=Path(env.get("DATA_DIR", "data")),
            database_url=_normalize_database_url(database_url, env.errors) if database_url else "",
            redis_url=_url(env, "REDIS_URL", None, ("redis", "rediss", "unix")),
            host=env.get("HOST", "0.0.0.0"),
            port=port,
            public_base_url=str(
                _url(env, "PUBLIC_BASE_URL", f"http://localhost:{port}", ("http", "https"))
            ).rstrip("/"),
            cors_origins=cors,
            secret_key=env.get("SECRET_KEY") or None,
            firebase_project_id=env.get("FIREBASE_PROJECT_ID") or None,
            firebase_cert_url=_url(env, "FIREBASE_CERT_URL", None, ("http", "https")),
            access_token_ttl=_int(env, "ACCESS_TOKEN_TTL", 3600, minimum=60),
            refresh_token_ttl=_int(env, "REFRESH_TOKEN_TTL", 90 * 24 * 3600, minimum=3600),
            max_json_body_bytes=_int(env, "MAX_JSON_BODY_BYTES", 1024 * 1024, minimum=1024),
            max_loops_per_user=_int(env, "MAX_LOOPS_PER_USER", 1000, minimum=1),
            max_songs_per_user=_int(env, "MAX_SONGS_PER_USER", 100, minimum=1),
            log_level=_choice(env, "LOG_LEVEL", "INFO", LOG_LEVELS),
            snapshot_interval=_float(env, "SNAPSHOT_INTERVAL_SECONDS", 10.0),
            room_idle_seconds=_float(env, "ROOM_IDLE_SECONDS", 30.0),
            max_update_bytes=_int(env, "RT_MAX_UPDATE_BYTES", 256 * 1024, minimum=1024),
            max_document_bytes=_int(env, "RT_MAX_DOCUMENT_BYTES", 8 * 1024 * 1024, minimum=4096),
            max_clients_per_room=_int(env, "RT_MAX_CLIENTS_PER_ROOM", 64, minimum=1),
            max_messages_per_second=_int(env, "RT_MAX_MESSAGES_PER_SECOND", 100, minimum=1),
            max_connections_per_user=_int(env, "RT_MAX_CONNECTIONS_PER_USER", 8, minimum=1),
            http_idle_timeout=_float(env, "HTTP_IDLE_TIMEOUT_SECONDS", 15.0),
            http_body_timeout=_float(env, "HTTP_BODY_TIMEOUT_SECONDS", 30.0),
            redis_prefix=_redis_prefix(env, "REDIS_PREFIX", "mp:"),
            presence_timeout=_float(env, "PRESENCE_TIMEOUT_SECONDS", 30.0),
            read_cache_ttl=_float(env, "READ_CACHE_TTL_SECONDS", 30.0),
            # Operations.
            log_format=_choice(env, "LOG_FORMAT", "plain", LOG_FORMATS),
            access_log=_switch(env, "ACCESS_LOG", True),
            metrics_token=env.get("METRICS_TOKEN") or None,
            anonymous_retention_days=_int(env, "ANONYMOUS_RETENTION_DAYS", 90, minimum=1),
            anonymous_purge=_switch(env, "ANONYMOUS_PURGE", True),
            view_count_window=_float(env, "VIEW_COUNT_WINDOW_SECONDS", 3600.0),
            view_count_flush_interval=_float(env, "VIEW_COUNT_FLUSH_SECONDS", 5.0),
            composer_url=str(_url(env, "COMPOSER_URL", "http://localhost:5173", ("http", "https"))).rstrip(
                "/"
            ),
            page_cache_bytes=_int(env, "PAGE_CACHE_BYTES", 32 * 1024 * 1024, minimum=0),
            list_content_budget_bytes=_int(env, "LIST_CONTENT_BUDGET_BYTES", 1024 * 1024, minimum=1024),
            rate_limits_enabled=_switch(env, "RATE_LIMITS", True),
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
            sample_max_bytes=_int(env, "SAMPLE_MAX_BYTES", 5 * 1024 * 1024, minimum=1024),
            sample_quota_bytes=_int(env, "SAMPLE_QUOTA_BYTES", 100 * 1024 * 1024, minimum=1024),
            clamd_url=_clamd_url(env),
            **_object_storage(env),
            admin_user_ids=_uuids(env, "ADMIN_USER_IDS"),
        )
        try:
            settings.check_secret_key()
        except ConfigError as exc:
            env.errors.append(str(exc))
        if env.errors:
            raise ConfigError("\n".join(env.errors))
        return settings

    def check_secret_key(self) -> None:
        if self.secret_key is not None and len(self.secret_key) < 32:
            raise ConfigError("SECRET_KEY must be at least 32 characters")
        if self.secret_key is None and self.is_postgres:
            raise ConfigError(
                "SECRET_KEY is required with a Postgres DATABASE_URL: every instance must sign "
                "and verify tokens with the same key"
            )

    def listening_on(self, *, host: str | None, port: int | None, env: Mapping[str, str]) -> Settings:
        """These settings with ``serve --host/--port`` applied; the port is also the one in the
        default ``PUBLIC_BASE_URL`` (and so in the OpenAPI ``servers`` entry)."""
        changes: dict[str, object] = {}
        if host is not None:
            changes["host"] = host
        if port is not None:
            changes["port"] = port
            if not env.get("PUBLIC_BASE_URL"):
                changes["public_base_url"] = f"http://localhost:{port}"
        return self.replace(**changes)

    def describe(self) -> list[tuple[str, str]]:
        """Every effective setting as ``(name, value)``, secrets masked (`musicplayground config`)."""
        rows = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "database_url":
                value = self.effective_database_url
            if isinstance(value, str) and value and _SECRET_FIELD.search(f.name):
                shown = "*** (set)"
            elif isinstance(value, str) and "://" in value:
                shown = mask_url(value)
            elif isinstance(value, tuple | frozenset):
                shown = ",".join(sorted(str(v) for v in value)) or "(none)"
            else:
                shown = "(not set)" if value is None else str(value)
            rows.append((f.name, shown))
        return rows

    def replace(self, **changes: object) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)  # type: ignore[arg-type]


def load_or_create_secret(settings: Settings) -> str:
    """The signing key for our tokens.

    Production sets ``SECRET_KEY`` (all instances must share it). The embedded default
    keeps a generated key in the data directory so tokens survive restarts.
    """
    settings.check_secret_key()
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
