"""Content edits become at most one ``<kind>.content_changed`` event per document per window
(``CONTENT_EVENT_DEBOUNCE_SECONDS``), naming everyone who edited in it.

The first edit of a document in a window is remembered in memory; a moment later
(:func:`write_delay`) the events of every document edited meanwhile are written together, in
one transaction of their own (not the update log's group commit, so the live edit path never
waits for it). A new editor in the same window adds their id to the event. Windows are aligned
on the clock and each row is keyed by document and window (``coalesce_key``), so two instances
editing one document fill one event; an event is due :func:`due_after` its window's end, later
than any write of that window. Nothing is written for an editor already recorded in the
window. An event lost because the server died before this write is written later from the
update log (:mod:`events.content_recovery`), under the same key.
"""

from __future__ import annotations

import asyncio
import itertools
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
# How many (document, window) entries the in-memory "already recorded" memo keeps.
MAX_REMEMBERED = 10_000


Key = tuple[DocKind, uuid.UUID, int]
# How many documents' events one transaction writes at most: small enough that a burst of
# them (every document's first edit in a new window) never holds the event loop for long.
BATCH_SIZE = 64


def write_delay(window: float) -> float:
    """How long an edit's event waits for the other edits of the moment, to be written with
    them: a fifth of the window, at most a second."""
    return min(1.0, window / 5)


def due_after(window: float) -> float:
    """How long after its window's end an event is dispatched: past every write of the window
    (an edit in its last instant is written :func:`write_delay` later), so no editor is added
    to an event already told."""
    return 2 * write_delay(window)


class ContentChanges:
    """Hooked into the document service (``DocumentService.on_edit``); ``async with``."""

    def __init__(self, db: Database, *, window: float, wake: asyncio.Event | None = None) -> None:
        self.db = db
        self.window = window
        self._recorded: dict[Key, set[uuid.UUID | None]] = {}
        self._pending: dict[Key, set[uuid.UUID | None]] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    async def __aenter__(self) -> ContentChanges:
        self._task = asyncio.create_task(self._write_loop(), name="events: content changes")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            await self._flush()  # what was edited before the shutdown

    def edited(self, kind: DocKind, doc_id: uuid.UUID, user_id: uuid.UUID | None) -> None:
        """An edit of ``doc_id`` by ``user_id`` (None: a share link) was applied."""
        key = (kind, doc_id, math.floor(time.time() / self.window))
        recorded = self._recorded.get(key)
        if recorded is not None and user_id in recorded:
            return
        self._pending.setdefault(key, set()).add(user_id)
        self._ready.set()

    async def _write_loop(self) -> None:
        while True:
            await self._ready.wait()
            await asyncio.sleep(write_delay(self.window))  # the other edits of the moment
            self._ready.clear()
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("content events could not be written; retrying")
                await asyncio.sleep(1.0)
                self._ready.set()

    async def _flush(self) -> None:
        while self._pending:
            batch = dict(itertools.islice(self._pending.items(), BATCH_SIZE))
            editors = {key: set(waiting) for key, waiting in batch.items()}  # edited() may add meanwhile
            for attempt in range(2):  # a concurrent insert by another instance: update it then
                try:
                    async with self.db.write_session() as session:
                        inserted = await write_content_events(
                            session,
                            {key: (names, datetime.now(UTC)) for key, names in editors.items()},
                            self.window,
                        )
                    break
                except IntegrityError:
                    if attempt:
                        raise
            self.written += inserted
            if len(self._recorded) >= MAX_REMEMBERED:
                self._recorded.clear()
            for key, names in editors.items():
                self._recorded.setdefault(key, set()).update(names)
                waiting = batch[key]
                waiting -= names
                if not waiting:
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
        named = sorted(str(e) for e in events[key][0] if e is not None)
        row = existing.get(name)
        if row is None:
            new[name] = key
        elif row.dispatched_at is None:
            merged = sorted(set(row.data.get("editorIds", [])) | set(named))
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
