"""The app factory: builds every component from settings and wires them.

Components are constructed here (nothing connects yet) and started in one cleanup context,
in dependency order: database, update log, bus, document service. aiohttp runs ``on_shutdown``
(close sockets, telling clients to reconnect) before the cleanup context unwinds, so dirty
documents are flushed while the database is still open.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import fields
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit

import aiohttp_cors
from aiohttp import web

from bus import Bus, BusState
from events.service import EventsConfig, EventsOut
from identity.authenticator import Authenticator
from identity.firebase import FirebaseVerifier
from identity.tokens import TokenIssuer
from music.kinds import DocKind
from musicplayground import backends
from musicplayground.observability import (
    METRICS,
    BusCounters,
    CacheCounters,
    Metrics,
    observe_requests,
    sampling_loop_lag,
)
from realtime.service import DocumentService, RealtimeLimits
from realtime.share_expiry import ShareExpiryWatcher
from realtime.ysocketio.server import CollabSocketServer
from realtime.ywebsocket.server import YWebSocketServer
from rest.composer_import import MIGRATION_LOCKS, AccountLocks
from rest.context import REST_CONTEXT, RestContext
from rest.cpu_worker import CPU_WORKER, CpuWorker
from rest.errors import OneLineServerLog, error_middleware
from rest.http_cache import http_cache_middleware
from rest.page_cache import PAGE_CACHE, PageCache
from rest.rate_limits import RATE_LIMITER, RateLimiter, rate_limit_middleware
from rest.routes import add_routes
from rest.samples import SAMPLES, SampleContext
from rest.system import METRICS_EXPOSITION, READINESS_CHECKS, Degraded, ReadinessCheck
from rest.url_text import url_text_middleware
from settings import Settings, load_or_create_secret
from storage.blobs import BlobStore
from storage.counters import Counters
from storage.database import Database
from storage.document_store import room_open_reads
from storage.purge import DailyPurge, PurgedAccount, PurgeHook
from storage.samples import delete_sample_objects
from storage.scan import ClamdScanner
from storage.schema import (
    SchemaState,
    check_up_to_date,
    current_revision,
    head_revision,
    schema_state,
    upgrade,
)
from storage.update_log import UpdateLog
from storage.users import SHOWN_NAME_WARM_READ
from storage.views import ViewCounter

log = logging.getLogger(__name__)
# What the in-server purge calls per deleted account (tests call it after their own purge).
PURGE_HOOK = web.AppKey[PurgeHook]("purge_hook")


def realtime_limits(settings: Settings) -> RealtimeLimits:
    """The live documents' bounds: every ``RealtimeLimits`` field that is a setting of the same
    name comes from ``settings`` (the others keep their defaults)."""
    names = {f.name for f in fields(RealtimeLimits)} & {f.name for f in fields(Settings)}
    return RealtimeLimits(**{name: getattr(settings, name) for name in names})


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of aiohttp's HTTP server (``web.run_app`` / ``TestServer``).

    aiohttp has no separate header-read timeout: its keep-alive timer also runs from the
    moment a connection opens until a complete request has arrived, so it bounds how long a
    half-open or trickling connection is held.
    """
    return {"keepalive_timeout": settings.http_idle_timeout, "logger": OneLineServerLog()}


async def _hide_server_version(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "musicplayground"


def create_app(settings: Settings) -> web.Application:
    """The whole product as one aiohttp application. Raises ``ConfigError`` for bad settings."""
    secret = load_or_create_secret(settings)
    db = backends.database(settings)
    verifier = (
        FirebaseVerifier(settings.firebase_project_id, settings.firebase_cert_url)
        if settings.firebase_project_id
        else None
    )
    auth = Authenticator(TokenIssuer(secret, access_ttl=settings.access_token_ttl), verifier, db)
    metrics = Metrics()
    # Group commit: gather what arrives within 2 ms into one transaction (the issue asks
    # for "a few ms"); without it the writer commits back to back and burns a core.
    update_log = UpdateLog(
        db, max_delay=0.002, max_pending=settings.update_log_max_pending, on_commit=metrics.observe_commit
    )
    bus = backends.bus(settings)
    documents = DocumentService(
        db, update_log, realtime_limits(settings), bus=bus, channel_prefix=settings.redis_prefix
    )
    documents.on_snapshot = metrics.observe_snapshot
    counters = backends.counters(settings)
    limiter = RateLimiter(counters, settings) if settings.rate_limits_enabled else None
    sockets = CollabSocketServer(
        documents,
        auth,
        # The public pages (served here, at PUBLIC_BASE_URL) follow documents live too.
        cors_origins=[*settings.cors_origins, _origin(settings.public_base_url)],
        connect_refusal=limiter.socket_connect_refusal if limiter else None,
    )
    ywebsockets = YWebSocketServer(
        documents,
        auth,
        cors_origins=list(settings.cors_origins),
        connect_refusal=limiter.socket_connect_refusal if limiter else None,
    )
    _watch(metrics, documents, sockets, update_log, limiter)
    metrics.components.ywebsockets = ywebsockets
    events_out = EventsOut(
        db, bus, sockets.sio, auth, events_config(settings), channel_prefix=settings.redis_prefix
    )
    documents.on_edit = events_out.content.edited
    metrics.components.events = events_out
    metrics.components.database = db
    views = ViewCounter(
        db,
        period_seconds=settings.view_count_window,
        flush_interval=settings.view_count_flush_interval,
        on_counted=documents.read_cache.invalidate,
    )
    share_expiry = ShareExpiryWatcher(db, documents)
    blobs = backends.sample_blobs(settings)
    scanner = ClamdScanner(settings.clamd_url) if settings.clamd_url else None
    forget = _forget_purged(documents, purge_files_hook(blobs))
    cpu_worker = CpuWorker(preload=["rest.composer_import_work", "pages.preview"])

    async def resources(app: web.Application) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if verifier is not None:
                stack.callback(verifier.close)
            await stack.enter_async_context(counters)
            await stack.enter_async_context(db)
            await prepare_schema(db)
            await db.keep_warm([*room_open_reads(db.dialect), SHOWN_NAME_WARM_READ])  # what a join reads
            await stack.enter_async_context(update_log)
            await stack.enter_async_context(bus)
            await stack.enter_async_context(documents)
            await stack.enter_async_context(events_out)
            if settings.anonymous_purge:
                await stack.enter_async_context(
                    DailyPurge(db, inactive_days=settings.anonymous_retention_days, on_purged=forget)
                )
            await stack.enter_async_context(blobs)
            await stack.enter_async_context(views)
            await stack.enter_async_context(share_expiry)
            await stack.enter_async_context(sampling_loop_lag(metrics.loop_lag))
            await stack.enter_async_context(cpu_worker)
            log.info(
                "database: %s; bus: %s (instance %s); firebase: %s; samples: %s; malware scan: %s",
                db.dialect,
                type(bus).__name__,
                bus.instance_id[:8],
                settings.firebase_project_id or "off",
                blobs.name,
                "clamd" if scanner else "off",
            )
            yield

    async def close_sockets(app: web.Application) -> None:
        await sockets.shutdown()
        await ywebsockets.shutdown()

    # The rate limiter sits outside the error middleware so that error responses are
    # counted and carry the RateLimit headers; HTTP caching sees the final response.
    middlewares = [
        observe_requests(metrics, log_access=settings.access_log),
        url_text_middleware,  # NUL in a path or query never reaches a handler or a database
        http_cache_middleware,
        *([rate_limit_middleware] if limiter else []),
        error_middleware,
    ]
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_json_body_bytes)
    app[REST_CONTEXT] = RestContext(settings=settings, db=db, auth=auth, documents=documents, views=views)
    if limiter is not None:
        app[RATE_LIMITER] = limiter
    app[METRICS] = metrics
    app[METRICS_EXPOSITION] = metrics.render
    app[READINESS_CHECKS] = readiness_checks(db, update_log, bus, counters if limiter else None, blobs)
    app[PURGE_HOOK] = forget
    app[CPU_WORKER] = cpu_worker
    app[MIGRATION_LOCKS] = AccountLocks()
    pages = app[PAGE_CACHE] = PageCache(settings.page_cache_bytes)
    metrics.watch_cache("public_pages", lambda: CacheCounters(hits=pages.hits, misses=pages.misses))
    app[SAMPLES] = SampleContext(
        blobs=blobs, scanner=scanner, max_bytes=settings.sample_max_bytes, quota=settings.sample_quota_bytes
    )
    app.cleanup_ctx.append(resources)
    app.on_shutdown.append(close_sockets)
    app.on_response_prepare.append(_hide_server_version)
    sockets.attach(app)
    ywebsockets.attach(app)
    add_routes(app, public_base_url=settings.public_base_url, version=version("musicplayground-server"))
    _allow_cors(app, settings.cors_origins)
    return app


def events_config(settings: Settings) -> EventsConfig:
    return EventsConfig(
        poll_interval=settings.events_poll_interval,
        content_debounce=settings.content_event_debounce,
        content_lookback=min(settings.content_event_lookback, settings.events_retention_days * 86400.0),
        retention_days=settings.events_retention_days,
        retry_schedule=settings.webhook_retry_schedule,
        webhook_timeout=settings.webhook_timeout,
        disable_after=settings.webhook_disable_after,
        rules=backends.webhook_url_rules(settings),
        admin_ids=settings.admin_user_ids,
    )


def purge_files_hook(blobs: BlobStore) -> PurgeHook:
    """Deletes a purged account's sample files (``account.sample_storage_keys``); called once
    per deleted account, after its rows are gone, by the daily purge and by
    `musicplayground purge-anonymous`."""

    async def delete_files(account: PurgedAccount) -> None:
        await delete_sample_objects(blobs, account.sample_storage_keys)

    return delete_files


def _forget_purged(documents: DocumentService, files: PurgeHook | None) -> PurgeHook:
    """After an account is purged: drop its documents from memory and the read cache (a
    public loop must not be served from the cache once gone), then its files."""

    async def forget(account: PurgedAccount) -> None:
        for kind, ids in ((DocKind.LOOP, account.loop_ids), (DocKind.SONG, account.song_ids)):
            for doc_id in ids:
                await documents.document_deleted(kind, doc_id)
        if files is not None:
            await files(account)

    return forget


async def prepare_schema(db: Database) -> None:
    """The embedded default (SQLite, one instance) migrates itself; Postgres is migrated once
    per release (`musicplayground db upgrade`), so a database behind the code is refused and
    one ahead of it (a rolling release) is used with a warning."""
    if db.dialect == "sqlite":
        state, current = await schema_state(db)
        if state is SchemaState.BEHIND:
            log.info("migrating the SQLite database from revision %s", current or "none")
            await upgrade(db)
    state = await check_up_to_date(db)
    if state is SchemaState.AHEAD:
        log.warning(
            "database schema is at revision %s, newer than this code's %s (a rolling release?); "
            "starting anyway",
            await current_revision(db),
            head_revision(),
        )


def readiness_checks(
    db: Database, update_log: UpdateLog, bus: Bus, counters: Counters | None, blobs: BlobStore
) -> list[ReadinessCheck]:
    """What /readyz checks, in order. Other parts (blob storage, Redis) append their own."""

    async def database() -> str:
        await db.ping()
        return db.dialect

    async def bus_state() -> str:
        summary = f"{type(bus).__name__}, {bus.outages} outages"
        if bus.state is not BusState.UP:
            raise Degraded(
                f"bus {bus.state.value} ({summary}): serving local clients, rooms catch up when it is back"
            )
        return summary

    async def log_writer() -> str:
        if not update_log.running:
            raise RuntimeError("update-log writer is not running")
        if update_log.failing_since is not None:
            raise RuntimeError("the database refuses update-log writes (retrying until durable)")
        if update_log.last_batch_failed:
            raise RuntimeError("the last update-log commit failed")
        return f"{update_log.pending} pending"

    async def rate_limits() -> str:
        if counters is None:
            return "off"
        if not counters.available:  # limits fail open rather than refuse everyone
            raise Degraded(f"failing open: {counters.backend} unavailable ({counters.last_error})")
        return f"ok ({counters.backend})"

    async def sample_storage() -> str:
        await blobs.check()
        return blobs.name

    return [
        ReadinessCheck("database", database),
        ReadinessCheck("bus", bus_state),
        ReadinessCheck("update_log", log_writer),
        ReadinessCheck("rate_limits", rate_limits),
        ReadinessCheck("sample_storage", sample_storage),
    ]


def _watch(
    metrics: Metrics,
    documents: DocumentService,
    sockets: CollabSocketServer,
    update_log: UpdateLog,
    limiter: RateLimiter | None,
) -> None:
    bus = documents.bus
    metrics.watch_bus(
        lambda: BusCounters(
            published=bus.published, received=bus.delivered, lag_seconds_sum=bus.lag_seconds_sum
        )
    )
    if limiter is not None:
        metrics.watch_rate_limits(lambda: dict(limiter.refusals))
    metrics.components.documents = documents
    metrics.components.sockets = sockets
    metrics.components.update_log = update_log
    cache = documents.read_cache
    metrics.watch_cache("document_reads", lambda: CacheCounters(hits=cache.hits, misses=cache.misses))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _allow_cors(app: web.Application, origins: tuple[str, ...]) -> None:
    cors = aiohttp_cors.setup(
        app,
        defaults={
            origin: aiohttp_cors.ResourceOptions(
                allow_credentials=True,
                allow_headers=("Authorization", "Content-Type"),
                expose_headers=(
                    "Retry-After",
                    "ETag",
                    "RateLimit-Limit",
                    "RateLimit-Remaining",
                    "RateLimit-Reset",
                ),
                allow_methods=("GET", "POST", "PATCH", "PUT", "DELETE"),
                max_age=3600,
            )
            for origin in origins
        },
    )
    for route in list(app.router.routes()):
        if not route.resource or not route.resource.canonical.startswith("/socket.io"):
            cors.add(route)
