"""Content edits become at most one ``<kind>.content_changed`` event per document per window
(``CONTENT_EVENT_DEBOUNCE_SECONDS``), naming everyone who edited in it.

An edit only adds its editor to an in-memory set for its document and window. When a window
ends, the events of every document edited in it are written together, in batches of
:data:`BATCH_SIZE` per transaction of their own (not the update log's group commit, so the
live edit path never waits for it): one row per document and window, however many edits and
editors it had. Windows are aligned on the clock and each row is keyed by document and window
(``coalesce_key``), so two instances editing one document fill one event (the second adds its
editors to the first's row). An event is due :func:`due_after` its window's end, after every
instance has written it. An event lost because the server died before its window ended is
written later from the update log (:mod:`events.content_recovery`), under the same key.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from events.outbox import named_ref
from music.kinds import DocKind
from storage.database import Database
from storage.kinds import document_model
from storage.models import OutboxEvent

log = logging.getLogger(__name__)
Key = tuple[DocKind, uuid.UUID, int]
# How many documents' events one transaction writes at most: small enough that a window's
# burst (every document edited in it) never holds the event loop for long.
BATCH_SIZE = 64
# How long after a window's end its events are written: edits stamped in its last instant
# have been seen by then.
WRITE_AFTER_SECONDS = 0.05
# The most a window's writes wait between two batches.
MAX_BATCH_PAUSE_SECONDS = 0.1


def due_after(window: float) -> float:
    """How long after its window's end an event is dispatched: time for every instance to
    write its editors of the window (a busy database may take a while), at most 2 s."""
    return min(2.0, window / 2)


class ContentChanges:
    """Hooked into the document service (``DocumentService.on_edit``); ``async with``."""

    def __init__(self, db: Database, *, window: float) -> None:
        self.db = db
        self.window = window
        # Each window's editors, and when its first edit was applied.
        self._pending: dict[Key, tuple[set[uuid.UUID | None], datetime]] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writing: asyncio.Future[None] | None = None  # the last write begun
        self.written = 0

    async def __aenter__(self) -> ContentChanges:
        self._task = asyncio.create_task(self._write_loop(), name="events: content changes")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            if self._writing is not None:  # a write under way finishes, it is not cut off
                await asyncio.gather(self._writing, return_exceptions=True)
            await self._flush(before=None)  # what was edited before the shutdown

    def _window_now(self) -> int:
        return math.floor(time.time() / self.window)

    def edited(self, kind: DocKind, doc_id: uuid.UUID, user_id: uuid.UUID | None) -> None:
        """An edit of ``doc_id`` by ``user_id`` (None: a share link) was applied."""
        key = (kind, doc_id, self._window_now())
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = ({user_id}, datetime.now(UTC))
            self._ready.set()
        else:
            pending[0].add(user_id)

    async def _write_loop(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            if not self._pending:
                continue
            oldest = min(window for _, _, window in self._pending)
            await asyncio.sleep(max(0.0, (oldest + 1) * self.window - time.time()) + WRITE_AFTER_SECONDS)
            # Shielded: stopping waits for a write under way instead of cancelling it inside
            # a statement, which on SQLite would leave the write lock with a dead connection.
            self._writing = asyncio.ensure_future(self._flush(before=self._window_now()))
            try:
                await asyncio.shield(self._writing)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("content events could not be written; retrying")
                await asyncio.sleep(1.0)
            if self._pending:
                self._ready.set()

    async def _flush(self, *, before: int | None) -> None:
        """Write the events of the windows before ``before`` (None: all of them)."""
        ended = [key for key in self._pending if before is None or key[2] < before]
        batches = range(0, len(ended), BATCH_SIZE)
        # Spread over half the time before they are due, not back to back: each batch holds
        # SQLite's write lock, which the edits' own commits wait for (none at shutdown).
        pause = (
            0.0
            if before is None
            else min(MAX_BATCH_PAUSE_SECONDS, due_after(self.window) / 2 / max(1, len(batches)))
        )
        for start in batches:
            if start and pause:
                await asyncio.sleep(pause)
            keys = ended[start : start + BATCH_SIZE]
            batch = {key: self._pending[key] for key in keys}
            for attempt in range(2):  # a concurrent insert by another instance: update it then
                try:
                    async with self.db.write_session() as session:
                        self.written += await write_content_events(session, batch, self.window)
                    break
                except IntegrityError:
                    if attempt:
                        raise
            for key in batch:
                del self._pending[key]


def coalesce_key(kind: DocKind, doc_id: uuid.UUID, window: int) -> str:
    """The outbox key of ``doc_id``'s content event for the ``window``-th window."""
    return f"{kind.value}.content_changed:{doc_id}:{window}"


async def write_content_events(
    session: AsyncSession,
    events: dict[Key, tuple[set[uuid.UUID | None], datetime]],
    window_seconds: float,
) -> int:
    """For each (document, window) key, add its editors to the document's event for that window
    (still undispatched), or write that event, occurred at the given time and due
    :func:`due_after` the window's end; how many rows were inserted. Raises IntegrityError when
    another transaction inserted one of them meanwhile (then call again: it updates)."""
    keys = {coalesce_key(*key): key for key in events}
    existing = {
        row.coalesce_key: row
        for row in await session.scalars(
            select(OutboxEvent).where(OutboxEvent.coalesce_key.in_(list(keys))).with_for_update()
        )
    }
    new: dict[str, Key] = {}
    for name, key in keys.items():
        row = existing.get(name)
        if row is None:
            new[name] = key
        elif row.dispatched_at is None:
            added = {str(e) for e in events[key][0] if e is not None}
            merged = sorted(set(row.data.get("editorIds", [])) | added)
            if merged != row.data.get("editorIds"):
                row.data = {**row.data, "editorIds": merged}
    names: dict[tuple[DocKind, uuid.UUID], str] = {}  # the documents not deleted meanwhile
    for kind in {kind for kind, _, _ in new.values()}:
        model = document_model(kind.value)
        ids = [doc_id for k, doc_id, _ in new.values() if k is kind]
        for doc_id, doc_name in await session.execute(select(model.id, model.name).where(model.id.in_(ids))):
            names[(kind, doc_id)] = doc_name
    grace = due_after(window_seconds)
    rows = []
    for name, key in new.items():
        kind, doc_id, window = key
        if (kind, doc_id) not in names:
            continue  # deleted meanwhile
        editors, occurred_at = events[key]
        named = sorted(str(e) for e in editors if e is not None)
        ref = named_ref(kind.value, doc_id, names[(kind, doc_id)])
        rows.append(
            {
                "id": uuid.uuid4(),
                "kind": f"{kind.value}.content_changed",
                "occurred_at": occurred_at,
                "actor_id": uuid.UUID(named[0]) if named else None,
                "resource_type": kind.value,
                "resource_id": doc_id,
                "data": {kind.value: ref, "editorIds": named},
                "coalesce_key": name,
                "available_at": datetime.fromtimestamp((window + 1) * window_seconds + grace, UTC),
            }
        )
    if rows:  # a bulk insert, not ORM objects: a burst of windows must not stall the loop
        await session.execute(insert(OutboxEvent), rows)  # a concurrent insert raises IntegrityError
    return len(rows)
