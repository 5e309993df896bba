"""View counts: each viewer counts once per document per counting period, in batches.

A view is only noted in memory (the response never waits for it). Every
``flush_interval`` seconds the buffer is written in one transaction: the (document,
viewer, period) keys go into ``document_views`` with ``INSERT ... ON CONFLICT DO
NOTHING RETURNING``, and each document's ``view_count`` grows by the rows that were new.
The table, not the buffer, is what deduplicates, so several instances count a viewer
once; a burst of 1,000 views is a few statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from storage.database import Database
from storage.document_store import document_model
from storage.models import DocumentView

log = logging.getLogger(__name__)

ROWS_PER_INSERT = 500  # parameter sets per execute (2,000 bound parameters per multi-row INSERT)
MAX_PENDING = 100_000  # beyond this, views are dropped (and logged) rather than grow memory

ViewKey = tuple[str, uuid.UUID, str, int]


def viewer_key(*, user_id: uuid.UUID | None, ip: str | None) -> str:
    """Who is viewing: the account when signed in, else a hash of the client's address.

    Nothing the client chooses freely (its User-Agent, a cookie) is part of an anonymous key:
    rotating it would count the same viewer again. Viewers behind one address count once.
    """
    if user_id is not None:
        return f"u:{user_id.hex}"
    digest = hashlib.sha256((ip or "").encode()).hexdigest()
    return f"a:{digest[:40]}"


class ViewCounter:
    """Buffers views and writes them periodically. ``async with`` it (or start/stop)."""

    def __init__(
        self,
        db: Database,
        *,
        period_seconds: float,
        flush_interval: float,
        on_counted: Callable[[str, uuid.UUID], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.period_seconds = period_seconds
        self.flush_interval = flush_interval
        self._on_counted = on_counted
        self._clock = clock
        self._pending: set[ViewKey] = set()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self.statements = 0  # write statements issued (what the batching saves)
        self.dropped = 0

    def _period(self) -> int:
        return int(self._clock() // self.period_seconds)

    def record(self, resource_type: str, resource_id: uuid.UUID, viewer: str) -> None:
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            if self.dropped % 10_000 == 1:
                log.warning("view buffer full: %d views dropped so far", self.dropped)
            return
        self._pending.add((resource_type, resource_id, viewer, self._period()))

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write the buffer; returns how many views were new (counted)."""
        async with self._flush_lock:
            batch, self._pending = self._pending, set()
            if not batch:
                return 0
            try:
                counted = await self._write(batch)
            except Exception:
                # Keep the views for the next attempt (the keys make a retry harmless).
                self._pending |= set(list(batch)[: max(0, MAX_PENDING - len(self._pending))])
                raise
        if self._on_counted is not None:
            for resource_type, resource_id in counted:
                self._on_counted(resource_type, resource_id)
        return sum(counted.values())

    async def _write(self, batch: Iterable[ViewKey]) -> Counter[tuple[str, uuid.UUID]]:
        insert: Any = postgres_insert if self.db.dialect == "postgresql" else sqlite_insert
        rows = [{"resource_type": t, "resource_id": r, "viewer": v, "period": p} for t, r, v, p in batch]
        counted: Counter[tuple[str, uuid.UUID]] = Counter()
        # One cached statement executed with many parameter sets: SQLAlchemy's
        # "insertmanyvalues" batches it into multi-row INSERTs and still returns the rows
        # that went in (the conflicting ones return nothing).
        statement = (
            insert(DocumentView)
            .on_conflict_do_nothing()
            .returning(DocumentView.resource_type, DocumentView.resource_id)
        )
        async with self.db.write_connection() as conn:
            for start in range(0, len(rows), ROWS_PER_INSERT):
                result = await conn.execute(statement, rows[start : start + ROWS_PER_INSERT])
                counted.update((t, r) for t, r in result.all())
                self.statements += 1
            for (resource_type, resource_id), views in counted.items():
                model = document_model(resource_type)
                await conn.execute(
                    update(model).where(model.id == resource_id).values(view_count=model.view_count + views)
                )
                self.statements += 1
            # Keys of finished periods can never conflict again.
            await conn.execute(delete(DocumentView).where(DocumentView.period < self._period() - 1))
            self.statements += 1
        return counted

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception:
                log.exception("writing %d views failed; will retry", self.pending)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="view-counter")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception("final flush of %d views failed; they are lost", self.pending)

    async def __aenter__(self) -> ViewCounter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
