"""Operators' webhooks: endpoints, one delivery row per event and endpoint, and the sender
that claims due deliveries, POSTs them signed, and retries on the schedule.

A delivery is claimed by moving its ``next_attempt_at`` a lease ahead in a committed
transaction (rows locked with ``SKIP LOCKED`` on Postgres), so instances never send the
same one at once, and one claimed by an instance that died is sent again when the lease
runs out. Redirects are not followed (a 3xx is a failure). An endpoint failing for
``WEBHOOK_DISABLE_AFTER_SECONDS`` without a success is disabled, with a warning.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy import bindparam, delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from events import signing
from events.catalogue import BY_NAME
from events.outbox import Claimed
from events.webhook_urls import PublicOnlyResolver, UnsafeUrl, UrlRules
from storage.database import Database
from storage.errors import DomainError, NotFound
from storage.models import OutboxEvent, WebhookDelivery, WebhookEndpoint, utcnow

log = logging.getLogger(__name__)
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
CLAIM_BATCH = 128
# The polls' reads, built once (Database.read keeps each one's compiled form; every value
# is a named parameter).
_PENDING = WebhookDelivery.status == bindparam("pending")
_ANY_DUE = select(exists().where(_PENDING, WebhookDelivery.next_attempt_at <= bindparam("now")))
_PENDING_BACKLOG = select(func.count(), func.min(WebhookDelivery.created_at)).where(_PENDING)
ROUNDS_IN_FLIGHT = 4
CONCURRENCY = 64  # connections per instance
LEASE_MARGIN = timedelta(seconds=30)  # beyond the request timeout: a claim's lease
MAX_ERROR = 500


class UnknownEventKinds(DomainError):
    status = 400
    code = "unknown_event_kind"


def event_body(event: OutboxEvent) -> bytes:
    """The JSON body of a delivery: the event as the catalogue documents it."""
    return json.dumps(
        {
            "id": str(event.id),
            "type": event.kind,
            "timestamp": event.occurred_at.isoformat(),
            "data": event.data,
        },
        separators=(",", ":"),
    ).encode()


def message_id(event: OutboxEvent) -> str:
    """``webhook-id``: the event's id, the same on every attempt (receivers deduplicate on it)."""
    return f"evt_{event.id.hex}"


# --- endpoints (the CLI) ------------------------------------------------------------------


async def add_endpoint(
    session: AsyncSession, *, url: str, kinds: list[str], rules: UrlRules, description: str | None = None
) -> WebhookEndpoint:
    rules.check(url)
    unknown = sorted(set(kinds) - set(BY_NAME))
    if unknown:
        raise UnknownEventKinds(f"unknown event kinds: {', '.join(unknown)}")
    endpoint = WebhookEndpoint(
        url=url,
        secret=signing.new_secret(),
        event_kinds=sorted(set(kinds)),
        description=description,
        created_at=utcnow(),
    )
    session.add(endpoint)
    await session.flush()
    return endpoint


async def list_endpoints(session: AsyncSession) -> list[WebhookEndpoint]:
    return list(await session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at)))


async def remove_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> None:
    result = await session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound("no webhook endpoint has this id")


async def replay(session: AsyncSession, endpoint_id: uuid.UUID, since: datetime, until: datetime) -> int:
    """Queue again every event of the endpoint's kinds that occurred in [since, until); the
    endpoint is enabled again. How many deliveries were queued."""
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound("no webhook endpoint has this id")
    endpoint.disabled_at = endpoint.disabled_reason = endpoint.failing_since = None
    query = select(OutboxEvent.seq).where(
        OutboxEvent.occurred_at >= since,
        OutboxEvent.occurred_at < until,
        OutboxEvent.dispatched_at.is_not(None),
    )
    if endpoint.event_kinds:
        query = query.where(OutboxEvent.kind.in_(endpoint.event_kinds))
    seqs = list(await session.scalars(query.order_by(OutboxEvent.seq)))
    now = utcnow()
    if seqs:
        await session.execute(
            insert(WebhookDelivery),
            [
                {
                    "endpoint_id": endpoint_id,
                    "event_seq": s,
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for s in seqs
            ],
        )
    return len(seqs)


async def deliveries(
    session: AsyncSession, endpoint_id: uuid.UUID, *, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """The endpoint's delivery log, newest first."""
    if await session.get(WebhookEndpoint, endpoint_id) is None:
        raise NotFound("no webhook endpoint has this id")
    query = (
        select(WebhookDelivery, OutboxEvent.id, OutboxEvent.kind)
        .join(OutboxEvent, OutboxEvent.seq == WebhookDelivery.event_seq)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
    )
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    rows = await session.execute(query.order_by(WebhookDelivery.id.desc()).limit(limit))
    return [
        {
            "id": d.id,
            "eventId": str(event_id),
            "eventType": kind,
            "status": d.status,
            "attempts": d.attempts,
            "nextAttemptAt": d.next_attempt_at.isoformat() if d.status == PENDING else None,
            "lastAttemptAt": d.last_attempt_at.isoformat() if d.last_attempt_at else None,
            "lastStatusCode": d.last_status_code,
            "lastError": d.last_error,
            "deliveredAt": d.delivered_at.isoformat() if d.delivered_at else None,
            "createdAt": d.created_at.isoformat(),
        }
        for d, event_id, kind in rows
    ]


# --- fan-out (in the dispatcher's transaction) ---------------------------------------------


async def enqueue(session: AsyncSession, events: list[Claimed]) -> int:
    """One pending delivery per event and enabled endpoint that wants its kind."""
    endpoints = list(
        await session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.disabled_at.is_(None)))
    )
    now = utcnow()
    rows = [
        {
            "endpoint_id": e.id,
            "event_seq": ev.seq,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for ev in events
        for e in endpoints
        if not e.event_kinds or ev.kind in e.event_kinds
    ]
    if rows:
        await session.execute(insert(WebhookDelivery), rows)
    return len(rows)


# --- sending -----------------------------------------------------------------------------------


@dataclass
class WebhookCounters:
    delivered: int = 0
    failed_attempts: int = 0
    gave_up: int = 0
    disabled_endpoints: int = 0
    oldest_pending_seconds: float = 0.0
    pending: int = 0


@dataclass(frozen=True)
class _Claimed:
    delivery_id: int
    attempts: int
    endpoint_id: uuid.UUID
    url: str
    secret: str
    body: bytes
    message_id: str


@dataclass
class _Outcome:
    claimed: _Claimed
    status_code: int | None
    error: str | None = None
    ok: bool = field(init=False)

    def __post_init__(self) -> None:
        self.ok = self.error is None and self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender:
    """Sends due deliveries; ``wake()`` after new ones are queued. ``async with``."""

    def __init__(
        self,
        db: Database,
        *,
        rules: UrlRules,
        schedule: tuple[float, ...],
        timeout: float,
        disable_after: float,
        poll_interval: float,
    ) -> None:
        self.db = db
        self.rules = rules
        self.schedule = schedule
        self.timeout = timeout
        self.disable_after = timedelta(seconds=disable_after)
        self.poll_interval = poll_interval
        self.counters = WebhookCounters()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> WebhookSender:
        connector = aiohttp.TCPConnector(resolver=PublicOnlyResolver(self.rules), limit=CONCURRENCY)
        self._http = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout), auto_decompress=False
        )
        self._task = asyncio.create_task(self._loop(), name="events: webhook sender")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        # Up to ROUNDS_IN_FLIGHT claimed batches are sent at once, so one slow receiver
        # does not hold back the next batch.
        rounds: set[asyncio.Task[None]] = set()
        try:
            while True:
                while len(rounds) < ROUNDS_IN_FLIGHT:
                    claimed = await self._claim_safely()
                    if not claimed:
                        break
                    task = asyncio.create_task(self._deliver(claimed), name="events: webhook round")
                    rounds.add(task)
                    task.add_done_callback(rounds.discard)
                if len(rounds) >= ROUNDS_IN_FLIGHT:
                    await asyncio.wait(rounds, return_when=asyncio.FIRST_COMPLETED)
                    continue
                waking = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    [waking, *rounds], timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
                waking.cancel()
                self._wake.clear()
        finally:
            for task in rounds:
                task.cancel()
            await asyncio.gather(*rounds, return_exceptions=True)

    async def _claim_safely(self) -> list[_Claimed]:
        try:
            return await self._claim()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook deliveries: claiming failed; retrying")
            return []

    async def _deliver(self, claimed: list[_Claimed]) -> None:
        outcomes = await asyncio.gather(*(self._send(c) for c in claimed))
        for attempt in range(3):  # the outcome of a sent request is worth a retry
            try:
                await self._record(outcomes)
                return
            except Exception:
                log.exception("webhook deliveries: recording outcomes failed (attempt %d)", attempt + 1)
                await asyncio.sleep(0.5)

    async def _claim(self) -> list[_Claimed]:
        now = utcnow()
        # A plain read first (no session, no write lock): what an idle instance does every poll.
        [(any_due,)] = await self.db.read(_ANY_DUE, {"pending": PENDING, "now": now})
        if not any_due:
            return []
        async with self.db.write_session() as session:
            query = (
                select(WebhookDelivery, WebhookEndpoint.url, WebhookEndpoint.secret, OutboxEvent)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .join(OutboxEvent, OutboxEvent.seq == WebhookDelivery.event_seq)
                .where(
                    WebhookDelivery.status == PENDING,
                    WebhookDelivery.next_attempt_at <= now,
                    WebhookEndpoint.disabled_at.is_(None),
                )
                .order_by(WebhookDelivery.id)
                .limit(CLAIM_BATCH)
            )
            if self.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True, of=WebhookDelivery)
            rows = (await session.execute(query)).all()
            if not rows:
                return []
            lease_until = now + timedelta(seconds=self.timeout) + LEASE_MARGIN
            await session.execute(
                update(WebhookDelivery),
                [{"id": d.id, "next_attempt_at": lease_until, "attempts": d.attempts + 1} for d, *_ in rows],
            )
            return [
                _Claimed(d.id, d.attempts + 1, d.endpoint_id, url, secret, event_body(ev), message_id(ev))
                for d, url, secret, ev in rows
            ]

    async def _send(self, claimed: _Claimed) -> _Outcome:
        assert self._http is not None
        headers = signing.headers(claimed.secret, claimed.message_id, int(time.time()), claimed.body)
        try:
            self.rules.check(claimed.url)  # a literal address is never resolved: checked here
            async with self._http.post(
                claimed.url, data=claimed.body, headers=headers, allow_redirects=False
            ) as reply:
                await reply.read()
                error = None if 200 <= reply.status < 300 else f"HTTP {reply.status}"
                return _Outcome(claimed, reply.status, error)
        except UnsafeUrl as exc:
            return _Outcome(claimed, None, str(exc))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return _Outcome(
                claimed, None, f"{exc.__class__.__name__}: {exc}"[:MAX_ERROR] or "connection failed"
            )

    async def _record(self, outcomes: list[_Outcome]) -> None:
        now = utcnow()
        rows: list[dict[str, Any]] = []
        succeeded: set[uuid.UUID] = set()
        failing: set[uuid.UUID] = set()
        for o in outcomes:
            row: dict[str, Any] = {
                "id": o.claimed.delivery_id,
                "last_attempt_at": now,
                "last_status_code": o.status_code,
                "last_error": o.error,
            }
            if o.ok:
                row.update(status=DELIVERED, delivered_at=now)
                succeeded.add(o.claimed.endpoint_id)
                self.counters.delivered += 1
            else:
                self.counters.failed_attempts += 1
                failing.add(o.claimed.endpoint_id)
                if o.claimed.attempts > len(self.schedule):
                    row.update(status=FAILED)
                    self.counters.gave_up += 1
                else:
                    row.update(next_attempt_at=now + timedelta(seconds=self.schedule[o.claimed.attempts - 1]))
            rows.append(row)
        async with self.db.write_session() as session:
            await session.execute(update(WebhookDelivery), rows)
            if succeeded:
                await session.execute(
                    update(WebhookEndpoint)
                    .where(WebhookEndpoint.id.in_(succeeded))
                    .values(failing_since=None)
                )
            if failing - succeeded:
                await self._note_failing(session, failing - succeeded, now)

    async def _note_failing(self, session: AsyncSession, endpoint_ids: set[uuid.UUID], now: datetime) -> None:
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id.in_(endpoint_ids), WebhookEndpoint.failing_since.is_(None))
            .values(failing_since=now)
        )
        stale = list(
            await session.scalars(
                select(WebhookEndpoint).where(
                    WebhookEndpoint.id.in_(endpoint_ids),
                    WebhookEndpoint.disabled_at.is_(None),
                    WebhookEndpoint.failing_since <= now - self.disable_after,
                )
            )
        )
        for endpoint in stale:
            endpoint.disabled_at = now
            endpoint.disabled_reason = f"failing since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC"
            self.counters.disabled_endpoints += 1
            log.warning(
                "webhook endpoint %s (%s) disabled: failing since %s; `musicplayground webhooks replay` "
                "re-enables it",
                endpoint.id,
                endpoint.url,
                endpoint.failing_since,
            )

    async def measure_backlog(self) -> None:
        """Pending deliveries and the age of the oldest (the metrics read these)."""
        [(count, oldest)] = await self.db.read(_PENDING_BACKLOG, {"pending": PENDING})
        self.counters.pending = int(count)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        self.counters.oldest_pending_seconds = (utcnow() - oldest).total_seconds() if oldest else 0.0
