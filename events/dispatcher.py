"""The dispatcher: claims due outbox events and fans each out once, in one transaction, into
notifications and webhook deliveries; then pushes the notifications live and wakes the
webhook sender. Every instance runs one; on Postgres they share the work (``FOR UPDATE SKIP
LOCKED``), on SQLite there is one instance. A commit that wrote an event wakes it at once;
otherwise it looks every ``EVENTS_POLL_SECONDS`` (for events written by other instances, and
content events whose debounce window ended)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, timedelta

from sqlalchemy import bindparam, delete, exists, func, select, update

from events import notifications, webhooks
from events.notifications import Delivered
from events.outbox import Claimed, on_commit_of_events
from events.webhooks import WebhookSender
from storage.database import Database
from storage.models import OutboxEvent, utcnow

log = logging.getLogger(__name__)
# Events fanned out per transaction: every document's content event comes due at once at the
# end of a window, and a smaller batch holds the event loop for less time in one go.
BATCH = 64
PRUNE_EVERY_SECONDS = 3600.0
# The polls' reads, built once (Database.read keeps each one's compiled form; every value
# is a named parameter).
_DUE = OutboxEvent.dispatched_at.is_(None), OutboxEvent.available_at <= bindparam("now")
_ANY_DUE = select(exists().where(*_DUE))
_DUE_BACKLOG = select(func.count(), func.min(OutboxEvent.available_at)).where(*_DUE)


class Dispatcher:
    """``async with``; ``counters`` for the metrics."""

    def __init__(
        self,
        db: Database,
        sender: WebhookSender,
        *,
        admin_ids: Collection[uuid.UUID],
        poll_interval: float,
        retention_days: int,
        push: Callable[[list[Delivered]], None] | None = None,
    ) -> None:
        self.db = db
        self.sender = sender
        self.admin_ids = admin_ids
        self.poll_interval = poll_interval
        self.retention = timedelta(days=retention_days)
        self.push = push
        self.dispatched = 0
        self.notified = 0
        self.pending = 0
        self.oldest_pending_seconds = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_prune = 0.0

    async def __aenter__(self) -> Dispatcher:
        self._loop = asyncio.get_running_loop()
        self._unlisten = on_commit_of_events(self.db.engine, self.wake)
        self._task = asyncio.create_task(self._run(), name="events: dispatcher")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._unlisten is not None:
            self._unlisten()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def wake(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while True:
            try:
                done = await self.dispatch_due()
                await self._measure()
                await self._prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("events: a dispatch round failed; retrying")
                done = 0
            if done:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass
            self._wake.clear()

    async def dispatch_due(self) -> int:
        """Fan out one batch of due events; how many."""
        now = utcnow()
        # A plain read first (no session, no write lock): what an idle instance does every poll.
        [(any_due,)] = await self.db.read(_ANY_DUE, {"now": now})
        if not any_due:
            return 0
        due = OutboxEvent.dispatched_at.is_(None), OutboxEvent.available_at <= now
        async with self.db.write_session() as session:
            # Claimed as plain rows; only the events someone is told of are loaded as objects
            # (most are content events, told to nobody: a window's end brings one per document).
            query = (
                select(OutboxEvent.seq, OutboxEvent.kind).where(*due).order_by(OutboxEvent.seq).limit(BATCH)
            )
            if self.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            events = [Claimed(seq, kind) for seq, kind in await session.execute(query)]
            if not events:
                return 0
            told = [e.seq for e in events if notifications.tells_someone(e.kind)]
            delivered: list[Delivered] = []
            if told:
                loaded = select(OutboxEvent).where(OutboxEvent.seq.in_(told)).order_by(OutboxEvent.seq)
                for event in await session.scalars(loaded):
                    delivered += await notifications.fan_out(session, event, admin_ids=self.admin_ids)
            queued = await webhooks.enqueue(session, events)
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.seq.in_([e.seq for e in events]))
                .values(dispatched_at=utcnow())
            )
        self.dispatched += len(events)
        self.notified += len(delivered)
        if delivered and self.push is not None:
            self.push(delivered)
        if queued:
            self.sender.wake()
        return len(events)

    async def _measure(self) -> None:
        [(count, oldest)] = await self.db.read(_DUE_BACKLOG, {"now": utcnow()})
        self.pending = int(count)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        self.oldest_pending_seconds = max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0
        await self.sender.measure_backlog()

    async def _prune(self) -> None:
        if time.monotonic() - self._last_prune < PRUNE_EVERY_SECONDS:
            return
        self._last_prune = time.monotonic()
        async with self.db.write_session() as session:
            await session.execute(
                delete(OutboxEvent).where(
                    OutboxEvent.dispatched_at.is_not(None),
                    OutboxEvent.occurred_at < utcnow() - self.retention,
                )
            )
