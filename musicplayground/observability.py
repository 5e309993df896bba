"""Metrics, request ids and logs: what an operator watches.

Every app gets its own ``CollectorRegistry`` (no process-global one, so tests can build
several apps). Components stay free of prometheus-client: they keep plain counters, which
:class:`ComponentCollector` reads at scrape time, and call plain callbacks for events that
feed histograms (an update-log commit, a snapshot). Parts built elsewhere (the bus, rate
limits, caches) plug in with ``Metrics.watch_*`` and a function returning their counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from settings import Settings

PREFIX = "musicplayground"
REQUEST_ID_HEADER = "X-Request-Id"
# The request (or socket handshake) a log line belongs to; "-" outside any request.
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# A caller's own id is kept if it looks like one (a load balancer's, a client's retry).
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")  # fullmatch: the whole header
access_log = logging.getLogger("musicplayground.access")

# --- logs -------------------------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extra fields."""

    # Attributes every LogRecord has; anything else was passed with ``extra=`` and is kept.
    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
        "message",
        "asctime",
        "request_id",
    }

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


JsonFormatter.converter = time.gmtime  # type: ignore[assignment]
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure_logging(settings: Settings) -> None:
    """Root logging for the server process: plain text (default) or JSON lines on stderr."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter() if settings.log_format == "json" else logging.Formatter(PLAIN_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)


# --- metrics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BusCounters:
    """What the cross-instance bus reports: messages published and received, and the summed
    delay between publishing and receiving (its lag), over ``received`` messages."""

    published: int
    received: int
    lag_seconds_sum: float


@dataclass(frozen=True)
class CacheCounters:
    hits: int
    misses: int


class ComponentCollector(Collector):
    """Reads the plain counters the components keep, at scrape time."""

    def __init__(self) -> None:
        self.documents: Any = None  # realtime.service.DocumentService
        self.sockets: Any = None  # realtime.ysocketio.server.CollabSocketServer
        self.ywebsockets: Any = None  # realtime.ywebsocket.server.YWebSocketServer
        self.update_log: Any = None  # storage.update_log.UpdateLog
        self.events: Any = None  # events.service.EventsOut
        self.database: Any = None  # storage.database.Database
        self.bus: Callable[[], BusCounters] | None = None
        self.rate_limits: Callable[[], Mapping[str, int]] | None = None
        self.caches: dict[str, Callable[[], CacheCounters]] = {}

    def describe(self) -> list[Metric]:
        return []  # the metrics are created per scrape; nothing to check up front

    def collect(self) -> Iterator[Metric]:
        yield from self._realtime()
        yield from self._event_loop()
        yield from self._update_log()
        yield from self._events()
        yield from self._bus()
        if self.database is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_database_pool_connections",
                "Database connections the ORM engine's pool holds open (bounded by its size)",
                self.database.pooled_connections(),
            )
        refused = CounterMetricFamily(
            f"{PREFIX}_rate_limit_refusals", "Requests refused by a rate limit", labels=["limit"]
        )
        for limit, count in (self.rate_limits() if self.rate_limits else {}).items():
            refused.add_metric([limit], count)
        yield refused
        hits = CounterMetricFamily(f"{PREFIX}_cache_hits", "Cache lookups answered", labels=["cache"])
        misses = CounterMetricFamily(f"{PREFIX}_cache_misses", "Cache lookups missed", labels=["cache"])
        for name, read in self.caches.items():
            counters = read()
            hits.add_metric([name], counters.hits)
            misses.add_metric([name], counters.misses)
        yield hits
        yield misses

    def _realtime(self) -> Iterator[Metric]:
        if self.sockets is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_sockets_connected", "Collaboration sockets connected", len(self.sockets.sessions)
            )
            refused = CounterMetricFamily(
                f"{PREFIX}_updates_refused", "Client messages refused, by reason", labels=["reason"]
            )
            for reason, count in sorted(self.sockets.refused.items()):
                refused.add_metric([reason], count)
            yield refused
        if self.ywebsockets is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_ywebsocket_connections",
                "y-websocket connections in a room",
                len(self.ywebsockets.connections),
            )
            closed = CounterMetricFamily(
                f"{PREFIX}_ywebsocket_refusals",
                "y-websocket connections closed for a refusal",
                labels=["reason"],
            )
            for reason, count in sorted(self.ywebsockets.refused.items()):
                closed.add_metric([reason], count)
            yield closed
        if self.documents is not None:
            docs = self.documents
            yield GaugeMetricFamily(f"{PREFIX}_rooms_loaded", "Documents loaded in memory", len(docs.rooms))
            yield CounterMetricFamily(
                f"{PREFIX}_documents_loaded", "Documents loaded from storage", docs.loads
            )
            yield CounterMetricFamily(
                f"{PREFIX}_updates_applied", "Client updates applied to a document", docs.updates_applied
            )
            yield CounterMetricFamily(
                f"{PREFIX}_updates_relayed", "Updates relayed to a room once durable", docs.updates_relayed
            )

    @staticmethod
    def _event_loop() -> Iterator[Metric]:
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # scraped outside the server's event loop (a test's registry)
            return
        # With process_open_fds, what a soak watches: both come back to their baseline once
        # every socket has left and every room has unloaded.
        yield GaugeMetricFamily(f"{PREFIX}_asyncio_tasks", "Tasks alive on the server's event loop", tasks)

    def _events(self) -> Iterator[Metric]:
        events = self.events
        if events is None:
            return
        dispatcher, sent = events.dispatcher, events.sender.counters
        yield GaugeMetricFamily(
            f"{PREFIX}_events_queued", "Events written and due, not yet fanned out", dispatcher.pending
        )
        yield CounterMetricFamily(
            f"{PREFIX}_events_dispatched", "Events fanned out by this instance", dispatcher.dispatched
        )
        yield CounterMetricFamily(
            f"{PREFIX}_content_events_recovered",
            "Content events written from the update log because the live path had not (a crash)",
            events.recovery.recovered,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_notifications_written",
            "In-app notifications written or counted up",
            dispatcher.notified,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_events_oldest_pending_seconds",
            "Age of the oldest event or webhook delivery not yet done",
            max(dispatcher.oldest_pending_seconds, sent.oldest_pending_seconds),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_webhook_deliveries_queued", "Webhook deliveries pending", sent.pending
        )
        yield CounterMetricFamily(
            f"{PREFIX}_webhook_deliveries_delivered",
            "Webhook deliveries acknowledged with 2xx",
            sent.delivered,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_webhook_attempts_failed",
            "Webhook attempts that failed (retried)",
            sent.failed_attempts,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_webhook_deliveries_failed",
            "Webhook deliveries given up after the last retry",
            sent.gave_up,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_webhook_endpoints_disabled",
            "Webhook endpoints disabled for failing",
            sent.disabled_endpoints,
        )

    def _update_log(self) -> Iterator[Metric]:
        log = self.update_log
        if log is None:
            return
        yield GaugeMetricFamily(f"{PREFIX}_update_log_pending", "Updates waiting for a commit", log.pending)
        yield CounterMetricFamily(
            f"{PREFIX}_update_log_failed_batches", "Update-log transactions that failed", log.failed_batches
        )

    def _bus(self) -> Iterator[Metric]:
        counters = self.bus() if self.bus is not None else BusCounters(0, 0, 0.0)
        messages = CounterMetricFamily(
            f"{PREFIX}_bus_messages", "Cross-instance bus messages", labels=["direction"]
        )
        messages.add_metric(["out"], counters.published)
        messages.add_metric(["in"], counters.received)
        yield messages
        yield SummaryMetricFamily(
            f"{PREFIX}_bus_lag_seconds",
            "Delay from publishing a bus message to receiving it",
            count_value=counters.received,
            sum_value=counters.lag_seconds_sum,
        )


class Metrics:
    """One app's metrics: HTTP, event histograms, and the component collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.http_requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests answered",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route", "method"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_update_log_batch_size",
            "Updates per update-log transaction (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.commit_latency = Histogram(
            f"{PREFIX}_update_log_commit_seconds",
            "Time to write and commit one update-log batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.snapshot_duration = Histogram(
            f"{PREFIX}_snapshot_duration_seconds",
            "Time to fold a document's log into its row",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.snapshot_size = Histogram(
            f"{PREFIX}_snapshot_bytes",
            "Size of a stored document state",
            buckets=tuple(2**n for n in range(8, 24, 2)),
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            f"{PREFIX}_event_loop_lag_seconds",
            "How late the event loop ran a timer (sampled every 0.1 s): what a message arriving then waited",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.components = ComponentCollector()
        self.registry.register(self.components)
        # process_open_fds, process_resident_memory_bytes, process_cpu_seconds_total (Linux)
        ProcessCollector(registry=self.registry)

    # Callbacks the components are given (plain functions: no prometheus in storage/realtime).
    def observe_commit(self, entries: int, seconds: float) -> None:
        self.batch_size.observe(entries)
        self.commit_latency.observe(seconds)

    def observe_snapshot(self, seconds: float, size: int) -> None:
        self.snapshot_duration.observe(seconds)
        self.snapshot_size.observe(size)

    # Parts built elsewhere report their plain counters through these.
    def watch_bus(self, read: Callable[[], BusCounters]) -> None:
        self.components.bus = read

    def watch_rate_limits(self, read: Callable[[], Mapping[str, int]]) -> None:
        """``read()`` maps a limit's name (``get``, ``mutations``, …) to its refusals so far."""
        self.components.rate_limits = read

    def watch_cache(self, name: str, read: Callable[[], CacheCounters]) -> None:
        self.components.caches[name] = read

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


METRICS = web.AppKey("metrics", Metrics)


@contextlib.asynccontextmanager
async def sampling_loop_lag(histogram: Histogram, *, interval: float = 0.1) -> AsyncIterator[None]:
    """While open, samples how late the event loop runs a timer, every ``interval`` seconds,
    into ``histogram``: everything the loop serves (socket messages, requests) waits as long
    when it is busy or stalled, so this is the server's own share of their latency. The
    sampler is a timer among the others, so its figures are what a message arriving at a
    moment chosen without regard to the load would wait."""

    async def sample() -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            histogram.observe(max(0.0, loop.time() - due))

    sampler = asyncio.get_running_loop().create_task(sample(), name="event-loop-lag")
    try:
        yield
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler


def _route_label(request: web.Request) -> str:
    """The route template (``/api/loops/{id}``), never the raw path: bounded cardinality."""
    resource = request.match_info.route.resource
    return "unmatched" if resource is None else resource.canonical


# Query parameters whose values never reach a log line (the y-websocket wire takes credentials
# in its URL: the stock client has no other way).
SECRET_QUERY_PARAMS: Final = frozenset({"token", "shareToken"})


def _logged_target(request: web.BaseRequest) -> str:
    """The request target as logged: secret query values replaced."""
    if SECRET_QUERY_PARAMS.isdisjoint(request.query):
        return request.path_qs[:2048]
    query = urlencode([(k, "REDACTED" if k in SECRET_QUERY_PARAMS else v) for k, v in request.query.items()])
    return f"{request.path}?{query}"[:2048]


def observe_requests(metrics: Metrics, *, log_access: bool) -> Any:
    """The outermost middleware: request id, access log line, HTTP metrics."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        rid = incoming if _CLIENT_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            if not response.prepared:
                response.headers[REQUEST_ID_HEADER] = rid
            return response
        except web.HTTPException as exc:  # redirects and the like, raised past the error middleware
            status = exc.status
            exc.headers[REQUEST_ID_HEADER] = rid
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = _route_label(request)
            metrics.http_requests.labels(route, request.method, str(status)).inc()
            if status != 101:  # a websocket's duration is its whole session, not a latency
                metrics.http_latency.labels(route, request.method).observe(elapsed)
            if log_access:
                access_log.info(
                    '%s "%s %s" %d %.1fms "%s"',
                    request.remote,
                    request.method,
                    _logged_target(request),
                    status,
                    elapsed * 1000,
                    request.headers.get("User-Agent", "-")[:200],
                    extra={"status": status, "duration_ms": round(elapsed * 1000, 2), "route": route},
                )
            request_id.reset(token)

    return middleware
