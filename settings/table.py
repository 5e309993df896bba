"""The settings table: every setting declared once, as one row.

Each :class:`Settings` attribute is made with :func:`setting`: its environment variable,
default, parser, section and one line of documentation. ``Settings()`` holds the defaults,
:meth:`Settings.from_env` reads the environment (one :class:`ConfigError` listing every bad
value), :meth:`Settings.describe` is `musicplayground config`, and
:func:`settings.markdown.markdown_table` is the README's configuration table.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from settings.values import (
    ConfigError,
    Parser,
    choice,
    clamd_url,
    database_url,
    integer,
    key_prefix,
    mask_url,
    networks,
    origins,
    path,
    plain,
    seconds,
    seconds_list,
    stripped,
    switch,
    text,
    url,
    uuids,
)

DEFAULT_PORT = 3001
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("plain", "json")
# Longest lifetime of a presigned URL that S3's SigV4 allows (7 days).
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

# Sections of the table, in the README's order.
CORE = "Core"
CLUSTER = "Several instances (Redis)"
LIVE = "Live collaboration"
RATE_LIMITS = "Rate limits"
SAMPLES = "Samples"
COMMUNITY = "Sharing and community"
EVENTS = "Notifications and webhooks"
OPERATIONS = "Operations"
SECTIONS = (CORE, CLUSTER, LIVE, RATE_LIMITS, SAMPLES, COMMUNITY, EVENTS, OPERATIONS)
# Standard Webhooks' (Svix's) schedule: a failing delivery is retried for about 27 hours.
WEBHOOK_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


@dataclass(frozen=True)
class Field:
    """One row of the settings table."""

    env: str
    default: Any
    parse: Parser
    section: str
    doc: str
    # How the table shows the default when it is not the value itself ("SQLite in DATA_DIR").
    shown_default: str | None = None
    secret: bool = False  # never printed
    blank: bool = False  # an empty value is parsed (CORS_ORIGIN= means none), not the default
    attr: str | None = None  # the Settings attribute; None for names mapped onto others (R2_*)


def setting(
    env: str,
    default: Any,
    parse: Parser,
    section: str,
    doc: str,
    *,
    shown: str | None = None,
    secret: bool = False,
    blank: bool = False,
) -> Any:
    """A :class:`Settings` attribute declared by its row of the table."""
    row = Field(env, default, parse, section, doc, shown, secret, blank)
    return dataclasses.field(default=default, metadata={"setting": row})


def _default_public_url(port: int) -> str:
    return f"http://localhost:{port}"


_HTTP = ("http", "https")


@dataclass(frozen=True)
class Settings:
    """Every knob of the server, one row each (see the module docstring)."""

    data_dir: Path = setting(
        "DATA_DIR",
        Path("data"),
        path,
        CORE,
        "where the embedded default keeps its SQLite file, generated secret key and sample files",
    )
    database_url: str = setting(
        "DATABASE_URL",
        "",
        database_url,
        CORE,
        "`postgresql://user:pass@host/db` (asyncpg) or `sqlite:///path`",
        shown="SQLite in `DATA_DIR`",
    )
    postgres_pool_size: int = setting(
        "POSTGRES_POOL_SIZE",
        4,
        integer(1),
        CORE,
        "connections of the Postgres driver pool (hot reads, the update log's writer), all opened at "
        "start (connections per instance: [operations](docs/operations.md#start-up))",
    )
    secret_key: str | None = setting(
        "SECRET_KEY",
        None,
        text,
        CORE,
        "signs our access tokens; ≥ 32 chars; **required with Postgres** (all instances share it)",
        shown="generated into `DATA_DIR/secret_key`",
        secret=True,
    )
    host: str = setting("HOST", "0.0.0.0", stripped, CORE, "interface to listen on (`serve --host`)")
    port: int = setting("PORT", DEFAULT_PORT, integer(), CORE, "port to listen on (`serve --port`)")
    public_base_url: str = setting(
        "PUBLIC_BASE_URL",
        _default_public_url(DEFAULT_PORT),
        url(*_HTTP, base=True),
        CORE,
        "base of share URLs and of the OpenAPI `servers` entry",
        shown="`http://localhost:$PORT`",
    )
    cors_origins: tuple[str, ...] = setting(
        "CORS_ORIGIN",
        ("http://localhost:5173",),
        origins,
        CORE,
        "comma-separated origins allowed to call the API with credentials (empty: none)",
        blank=True,
    )
    firebase_project_id: str | None = setting(
        "FIREBASE_PROJECT_ID",
        None,
        stripped,
        CORE,
        "accept Firebase ID tokens of this project (sign-in, account linking); the server refuses to "
        "start with firebase-admin's `FIREBASE_AUTH_EMULATOR_HOST` set (unsigned tokens)",
        shown="off",
    )
    firebase_cert_url: str | None = setting(
        "FIREBASE_CERT_URL",
        None,
        url(*_HTTP),
        CORE,
        "where Firebase signing certificates are fetched (tests point it at a local server)",
        shown="Google's",
    )
    access_token_ttl: int = setting(
        "ACCESS_TOKEN_TTL", 3600, integer(60), CORE, "access token lifetime, seconds"
    )
    refresh_token_ttl: int = setting(
        "REFRESH_TOKEN_TTL", 90 * 24 * 3600, integer(3600), CORE, "refresh token lifetime, seconds (90 days)"
    )
    max_json_body_bytes: int = setting(
        "MAX_JSON_BODY_BYTES", 1024 * 1024, integer(1024), CORE, "largest JSON request body (413 above)"
    )
    max_loops_per_user: int = setting(
        "MAX_LOOPS_PER_USER", 1000, integer(1), CORE, "loops one user may own (quota)"
    )
    max_songs_per_user: int = setting(
        "MAX_SONGS_PER_USER", 100, integer(1), CORE, "songs one user may own (quota)"
    )
    composer_url: str = setting(
        "COMPOSER_URL",
        "http://localhost:5173",
        url(*_HTTP, base=True),
        CORE,
        "the composer app; public pages link to `COMPOSER_URL/?share=<token>`",
    )
    http_idle_timeout: float = setting(
        "HTTP_IDLE_TIMEOUT_SECONDS",
        15.0,
        seconds,
        CORE,
        "idle keep-alive connections are closed after this; also bounds how long a client may take "
        "to send its headers",
    )
    http_body_timeout: float = setting(
        "HTTP_BODY_TIMEOUT_SECONDS",
        30.0,
        seconds,
        CORE,
        "a request body read whole (JSON, the optional bodies of share and fork) must arrive within "
        "this (408 otherwise)",
    )
    update_log_max_pending: int = setting(
        "UPDATE_LOG_MAX_PENDING",
        10_000,
        integer(1),
        LIVE,
        "edits the update log may hold unstored while the database is slow or refuses writes; past it "
        "an edit is refused (`storage_backlog`, 503 over REST)",
    )
    # Several instances: the bus, rate-limit counters, cluster-wide presence, the REST read cache.
    redis_url: str | None = setting(
        "REDIS_URL",
        None,
        url("redis", "rediss", "unix"),
        CLUSTER,
        "`redis://host:6379/0`: the cross-instance bus (Redis pub/sub) and the rate-limit counters; "
        "required to run several instances",
        shown="in-process",
    )
    redis_prefix: str = setting(
        "REDIS_PREFIX",
        "mp:",
        key_prefix,
        CLUSTER,
        "prefix of every bus channel and Redis key (several deployments on one Redis)",
    )
    presence_timeout: float = setting(
        "PRESENCE_TIMEOUT_SECONDS",
        30.0,
        seconds,
        CLUSTER,
        "members and cursors of an instance not heard from for this long disappear from the others",
    )
    read_cache_ttl: float = setting(
        "READ_CACHE_TTL_SECONDS",
        30.0,
        seconds,
        CLUSTER,
        "upper bound on how long a REST read cache entry lives (the bus invalidates it earlier)",
    )
    trusted_proxies: tuple[str, ...] = setting(
        "TRUSTED_PROXIES",
        (),
        networks,
        CLUSTER,
        "comma-separated proxy addresses/CIDRs whose `X-Forwarded-For` is believed for the client IP",
    )
    # Live collaboration.
    snapshot_interval: float = setting(
        "SNAPSHOT_INTERVAL_SECONDS",
        10.0,
        seconds,
        LIVE,
        "how often a document being edited is folded from the update log into its row",
    )
    snapshot_quiet_interval: float = setting(
        "SNAPSHOT_QUIET_INTERVAL_SECONDS",
        60.0,
        seconds,
        LIVE,
        "how often instead when its edits since the last fold are small and left what listings show"
        " (name, tempo, colour, length) unchanged",
    )
    room_idle_seconds: float = setting(
        "ROOM_IDLE_SECONDS", 30.0, seconds, LIVE, "how long a document nobody is connected to stays in memory"
    )
    history_version_interval_seconds: float = setting(
        "HISTORY_VERSION_INTERVAL_SECONDS",
        300.0,
        seconds,
        LIVE,
        "version history: an automatic version once editing pauses this long (at most one per this)",
    )
    history_retention_days: int = setting(
        "HISTORY_RETENTION_DAYS",
        30,
        integer(1),
        LIVE,
        "version history: edits and automatic versions older than this are dropped (named versions stay)",
    )
    history_max_versions: int = setting(
        "HISTORY_MAX_VERSIONS", 200, integer(1), LIVE, "version history: automatic versions kept per document"
    )
    history_pack_after_seconds: float = setting(
        "HISTORY_PACK_AFTER_SECONDS",
        3600.0,
        seconds,
        LIVE,
        "version history: kept edits older than this are packed into compressed chunks of 500",
    )
    max_update_bytes: int = setting(
        "RT_MAX_UPDATE_BYTES", 256 * 1024, integer(1024), LIVE, "largest single Yjs update a client may send"
    )
    max_document_bytes: int = setting(
        "RT_MAX_DOCUMENT_BYTES",
        8 * 1024 * 1024,
        integer(4096),
        LIVE,
        "largest document (updates past it are refused)",
    )
    max_clients_per_room: int = setting(
        "RT_MAX_CLIENTS_PER_ROOM", 64, integer(1), LIVE, "connections per document"
    )
    max_messages_per_second: int = setting(
        "RT_MAX_MESSAGES_PER_SECOND",
        100,
        integer(1),
        LIVE,
        "messages per second per connection (burst: twice that)",
    )
    max_connections_per_user: int = setting(
        "RT_MAX_CONNECTIONS_PER_USER",
        8,
        integer(1),
        LIVE,
        "connections of one user (or share link) to one document; the last quarter of a room is kept "
        "for owners and editors",
    )
    socket_connect_timeout: float = setting(
        "RT_CONNECT_TIMEOUT_SECONDS",
        10.0,
        seconds,
        LIVE,
        "a Socket.IO connection (Engine.IO session) that has not connected a document namespace within "
        "this is closed (also after its last one left)",
    )
    # Rate limits (rest/rate_limits.py); the counters are in Redis when REDIS_URL is set.
    rate_limits_enabled: bool = setting(
        "RATE_LIMITS",
        True,
        switch,
        RATE_LIMITS,
        "`off` switches every rate limit off (load tests from one machine)",
    )
    rate_limit_get_per_hour: int = setting(
        "RATE_LIMIT_GET_PER_HOUR",
        1000,
        integer(1),
        RATE_LIMITS,
        "`GET` requests per user per hour (per client IP without a token)",
    )
    rate_limit_mutations_per_hour: int = setting(
        "RATE_LIMIT_MUTATIONS_PER_HOUR",
        100,
        integer(1),
        RATE_LIMITS,
        "`POST`/`PATCH`/`PUT`/`DELETE` per user per hour (per client IP without a token)",
    )
    rate_limit_uploads_per_hour: int = setting(
        "RATE_LIMIT_UPLOADS_PER_HOUR", 20, integer(1), RATE_LIMITS, "sample uploads per user per hour"
    )
    rate_limit_migrations_per_hour: int = setting(
        "RATE_LIMIT_MIGRATIONS_PER_HOUR",
        1,
        integer(1),
        RATE_LIMITS,
        "migrations of new work per user per hour (charged by `POST /api/migrate`)",
    )
    rate_limit_anonymous_accounts_per_ip_per_hour: int = setting(
        "RATE_LIMIT_ANONYMOUS_ACCOUNTS_PER_IP_PER_HOUR",
        30,
        integer(1),
        RATE_LIMITS,
        "anonymous accounts created per client IP per hour",
    )
    rate_limit_socket_connects_per_ip_per_minute: int = setting(
        "RATE_LIMIT_SOCKET_CONNECTS_PER_IP_PER_MINUTE",
        120,
        integer(1),
        RATE_LIMITS,
        "Socket.IO connection attempts per client IP per minute: each new Engine.IO session (its "
        "WebSocket handshake, refused with 429 past the limit) and each namespace connect after a "
        "session's first",
    )
    # Audio samples (bytes). With no bucket, files are kept in DATA_DIR/samples, served by the app.
    sample_max_bytes: int = setting(
        "SAMPLE_MAX_BYTES",
        5 * 1024 * 1024,
        integer(1024),
        SAMPLES,
        "largest sample upload, bytes (5 MB; 413 above)",
    )
    upload_timeout: float = setting(
        "UPLOAD_TIMEOUT_SECONDS", 300.0, seconds, SAMPLES, "a sample upload must arrive within this (408)"
    )
    upload_min_bytes_per_second: int = setting(
        "UPLOAD_MIN_BYTES_PER_SECOND",
        4096,
        integer(1),
        SAMPLES,
        "slowest average pace of an upload body, after `UPLOAD_RATE_WINDOW_SECONDS` of slack "
        "(408 `upload_too_slow`)",
    )
    upload_rate_window: float = setting(
        "UPLOAD_RATE_WINDOW_SECONDS",
        10.0,
        seconds,
        SAMPLES,
        "how long an upload may lag behind `UPLOAD_MIN_BYTES_PER_SECOND` before it is cut off",
    )
    sample_quota_bytes: int = setting(
        "SAMPLE_QUOTA_BYTES",
        100 * 1024 * 1024,
        integer(1024),
        SAMPLES,
        "total sample bytes per user (100 MB)",
    )
    s3_bucket: str | None = setting(
        "S3_BUCKET",
        None,
        stripped,
        SAMPLES,
        "store samples in this S3-compatible bucket (must exist)",
        shown="off: files in `DATA_DIR/samples`",
    )
    s3_endpoint_url: str | None = setting(
        "S3_ENDPOINT_URL",
        None,
        url(*_HTTP),
        SAMPLES,
        "endpoint of R2, MinIO… (`https://<account>.r2.cloudflarestorage.com`)",
        shown="AWS",
    )
    s3_region: str = setting(
        "S3_REGION", "us-east-1", stripped, SAMPLES, "bucket region", shown="`us-east-1` (`auto` for R2)"
    )
    s3_access_key_id: str | None = setting(
        "S3_ACCESS_KEY_ID", None, stripped, SAMPLES, "credentials", shown="AWS default chain", secret=True
    )
    s3_secret_access_key: str | None = setting(
        "S3_SECRET_ACCESS_KEY", None, stripped, SAMPLES, "credentials", shown="AWS default chain", secret=True
    )
    s3_public_base_url: str | None = setting(
        "S3_PUBLIC_BASE_URL",
        None,
        url(*_HTTP, base=True),
        SAMPLES,
        "public base (CDN) of the bucket; `fileUrl` = base + `/` + key",
        shown="off: presigned URLs",
    )
    s3_presign_seconds: int = setting(
        "S3_PRESIGN_SECONDS",
        3600,
        integer(60, maximum=MAX_PRESIGN_SECONDS, maximum_means="7 days"),
        SAMPLES,
        "lifetime of presigned sample URLs (≤ 7 days)",
    )
    clamd_url: str | None = setting(
        "CLAMD_URL",
        None,
        clamd_url,
        SAMPLES,
        "scan uploads with ClamAV: `tcp://host:3310` or `unix:///path/clamd.ctl` (503 if unreachable)",
        shown="off",
    )
    # Sharing, view counts and community.
    view_count_window: float = setting(
        "VIEW_COUNT_WINDOW_SECONDS",
        3600.0,
        seconds,
        COMMUNITY,
        "a viewer counts once per document per window of this length",
    )
    view_count_flush_interval: float = setting(
        "VIEW_COUNT_FLUSH_SECONDS",
        5.0,
        seconds,
        COMMUNITY,
        "how often buffered views are written (one transaction per flush)",
    )
    page_cache_bytes: int = setting(
        "PAGE_CACHE_BYTES",
        32 * 1024 * 1024,
        integer(0),
        COMMUNITY,
        "rendered public pages (`/loop/…`, `/song/…`, `/embed/…`) kept per instance, by ETag "
        "(32 MiB; `0` keeps none)",
    )
    list_content_budget_bytes: int = setting(
        "LIST_CONTENT_BUDGET_BYTES",
        1024 * 1024,
        integer(1024),
        COMMUNITY,
        "document content one list page carries with `?include=content` (explore, `GET /api/loops`, "
        "`GET /api/songs`); later items come marked `contentOmitted`",
    )
    admin_user_ids: frozenset[uuid.UUID] = setting(
        "ADMIN_USER_IDS",
        frozenset(),
        uuids,
        COMMUNITY,
        "comma-separated user ids that are moderators, besides those granted with "
        "`musicplayground admin grant`",
    )
    # Notifications and webhooks (events/, docs/events.md).
    events_poll_interval: float = setting(
        "EVENTS_POLL_SECONDS",
        1.0,
        seconds,
        EVENTS,
        "how often each instance looks for events and webhook deliveries written by others",
    )
    content_event_debounce: float = setting(
        "CONTENT_EVENT_DEBOUNCE_SECONDS",
        5.0,
        seconds,
        EVENTS,
        "at most one `loop.content_changed` / `song.content_changed` event per document per this window",
    )
    content_event_lookback: float = setting(
        "CONTENT_EVENT_LOOKBACK_SECONDS",
        24 * 3600.0,
        seconds,
        EVENTS,
        "at startup, content events lost in a crash are written again from the update log this far back",
        shown="`86400` (24 h)",
    )
    events_retention_days: int = setting(
        "EVENTS_RETENTION_DAYS",
        30,
        integer(1),
        EVENTS,
        "dispatched events and webhook delivery logs older than this are deleted (replay reaches this far)",
    )
    webhook_retry_schedule: tuple[float, ...] = setting(
        "WEBHOOK_RETRY_SCHEDULE",
        WEBHOOK_RETRY_SCHEDULE,
        seconds_list,
        EVENTS,
        "comma-separated seconds between a webhook's failed attempt and the next; after the last, it fails",
        shown="`5,300,1800,7200,18000,36000,36000` (~27 h)",
    )
    webhook_timeout: float = setting(
        "WEBHOOK_TIMEOUT_SECONDS", 10.0, seconds, EVENTS, "how long a webhook receiver may take to answer"
    )
    webhook_disable_after: float = setting(
        "WEBHOOK_DISABLE_AFTER_SECONDS",
        5 * 24 * 3600.0,
        seconds,
        EVENTS,
        "a webhook endpoint that has failed for this long, with no success, is disabled",
        shown="`432000` (5 days)",
    )
    webhook_allow_private_addresses: bool = setting(
        "WEBHOOK_ALLOW_PRIVATE_ADDRESSES",
        False,
        switch,
        EVENTS,
        "allow webhook URLs on loopback and private networks, and `http://` with Postgres (tests)",
    )
    # Operations: logs, metrics, retention of anonymous accounts.
    log_level: str = setting(
        "LOG_LEVEL",
        "INFO",
        choice(LOG_LEVELS),
        OPERATIONS,
        "one of " + ", ".join(f"`{x}`" for x in LOG_LEVELS),
    )
    log_format: str = setting(
        "LOG_FORMAT",
        "plain",
        choice(LOG_FORMATS),
        OPERATIONS,
        "`json`: one JSON object per log line, with the request id ([operations](docs/operations.md#logs))",
    )
    access_log: bool = setting(
        "ACCESS_LOG", True, switch, OPERATIONS, "one log line per HTTP request (`off` to silence)"
    )
    metrics_token: str | None = setting(
        "METRICS_TOKEN",
        None,
        text,
        OPERATIONS,
        "if set, `/metrics` requires `Authorization: Bearer <METRICS_TOKEN>`",
        shown="none",
        secret=True,
    )
    anonymous_retention_days: int = setting(
        "ANONYMOUS_RETENTION_DAYS",
        90,
        integer(1),
        OPERATIONS,
        "anonymous accounts inactive this long are purged with their data",
    )
    anonymous_purge: bool = setting(
        "ANONYMOUS_PURGE",
        True,
        switch,
        OPERATIONS,
        "the daily purge inside the server (`off`: run `musicplayground purge-anonymous` yourself)",
    )

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'musicplayground.sqlite3'}"

    @property
    def is_postgres(self) -> bool:
        return self.effective_database_url.startswith("postgresql")

    @property
    def generated_secret_path(self) -> Path:
        """Where the signing key is kept when ``SECRET_KEY`` is not set (the embedded default)."""
        return self.data_dir / "secret_key"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; one ``ConfigError`` lists every problem, a line each."""
        source = os.environ if env is None else env
        errors: list[str] = []
        values: dict[str, Any] = {}  # by environment name
        given: set[str] = set()  # the names set (not blank)
        for row in FIELDS:
            raw = source.get(row.env)
            if raw is None or (not raw.strip() and not row.blank):
                values[row.env] = row.default
                continue
            given.add(row.env)
            try:
                values[row.env] = row.parse(raw)
            except ConfigError as exc:
                errors.append(f"{row.env} {exc}")
                values[row.env] = row.default
        if "PUBLIC_BASE_URL" not in given:
            values["PUBLIC_BASE_URL"] = _default_public_url(values["PORT"])
        try:
            _object_storage(values, given)
        except ConfigError as exc:
            errors.append(str(exc))
        settings = cls(**{row.attr: values[row.env] for row in FIELDS if row.attr is not None})
        try:
            settings.check_secret_key()
        except ConfigError as exc:
            errors.append(str(exc))
        if errors:
            raise ConfigError("\n".join(errors))
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
                changes["public_base_url"] = _default_public_url(port)
        return self.replace(**changes)

    def describe(self) -> list[tuple[str, str]]:
        """Every effective setting as ``(ENVIRONMENT_NAME, value)``, secrets masked
        (`musicplayground config`)."""
        rows = []
        for row in SETTING_FIELDS:
            value = getattr(self, str(row.attr))
            if row.env == "DATABASE_URL":
                value = self.effective_database_url
            if row.env == "SECRET_KEY" and value is None:
                shown = f"(not set: a generated key is kept in {self.generated_secret_path})"
            elif row.secret and value:
                shown = "*** (set)"
            elif isinstance(value, str) and "://" in value:
                shown = mask_url(value)
            else:
                shown = "(not set)" if value is None else plain(value)
            rows.append((row.env, shown))
        return rows

    def __repr__(self) -> str:  # what describe() shows: no secret or URL password in a log line
        return f"Settings({', '.join(f'{env}={value}' for env, value in self.describe())})"

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _rows() -> Iterator[Field]:
    for f in dataclasses.fields(Settings):
        yield dataclasses.replace(f.metadata["setting"], attr=f.name)


def _r2(env: str, doc: str, *, secret: bool = False) -> Field:
    return Field(env, None, stripped, SAMPLES, doc, "off", secret)


# The seed's names for Cloudflare R2, mapped onto the S3_* settings by from_env.
R2_ALIASES = (
    _r2("R2_ACCOUNT_ID", "the bucket's account; `S3_ENDPOINT_URL` is derived from it"),
    _r2("R2_ACCESS_KEY_ID", "`S3_ACCESS_KEY_ID` under the seed's R2 name", secret=True),
    _r2("R2_SECRET_ACCESS_KEY", "`S3_SECRET_ACCESS_KEY` under the seed's R2 name", secret=True),
    _r2("R2_BUCKET_NAME", "`S3_BUCKET` under the seed's R2 name (region `auto`)"),
)
# Every Settings attribute, in declaration order.
SETTING_FIELDS: tuple[Field, ...] = tuple(_rows())
# The whole table: every environment variable the server reads.
FIELDS: tuple[Field, ...] = SETTING_FIELDS + R2_ALIASES


def _object_storage(values: dict[str, Any], given: set[str]) -> None:
    """Map the seed's R2_* names onto the S3_* settings, and refuse half a configuration."""
    if "R2_BUCKET_NAME" in given:
        if "S3_BUCKET" in given:
            raise ConfigError("set either S3_BUCKET or R2_BUCKET_NAME, not both")
        if "R2_ACCOUNT_ID" not in given and "S3_ENDPOINT_URL" not in given:
            raise ConfigError("R2_BUCKET_NAME needs R2_ACCOUNT_ID (or S3_ENDPOINT_URL)")
        values["S3_BUCKET"] = values["R2_BUCKET_NAME"]
        if "S3_ENDPOINT_URL" not in given:
            values["S3_ENDPOINT_URL"] = f"https://{values['R2_ACCOUNT_ID']}.r2.cloudflarestorage.com"
        if "S3_REGION" not in given:
            values["S3_REGION"] = "auto"
        for r2, s3 in (
            ("R2_ACCESS_KEY_ID", "S3_ACCESS_KEY_ID"),
            ("R2_SECRET_ACCESS_KEY", "S3_SECRET_ACCESS_KEY"),
        ):
            if r2 in given:
                values[s3] = values[r2]
        return
    if "S3_BUCKET" not in given:
        leftovers = sorted(n for n in given if n.startswith(("S3_", "R2_")) and n != "S3_PRESIGN_SECONDS")
        if leftovers:
            raise ConfigError(f"{', '.join(leftovers)} set but no S3_BUCKET (or R2_BUCKET_NAME)")
