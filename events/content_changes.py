"""Content edits become at most one ``<kind>.content_changed`` event per document per window
(``CONTENT_EVENT_DEBOUNCE_SECONDS``), naming everyone who edited in it.

The first edit of a document in a window writes the event at once (right after the edit is
applied, in its own transaction, not the update log's group commit, so the live edit path
never waits for it), due at the window's end; a new editor in the same window adds their id
to it. Windows are aligned on the clock and the row is keyed by document and window
(``coalesce_key``), so two instances editing one document fill one event. Nothing is written
for an editor already recorded in the window. An event lost because the server died between
the edit's commit and this write is written later from the update log
(:mod:`events.content_recovery`), under the same key.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from events.outbox import document_ref
from music.kinds import DocKind
from storage.database import Database
from storage.kinds import document_model
from storage.models import Loop, OutboxEvent, Song

log = logging.getLogger(__name__)
# How many (document, window) entries the in-memory "already recorded" memo keeps.
MAX_REMEMBERED = 10_000


class ContentChanges:
    """Hooked into the document service (``DocumentService.on_edit``); ``async with``."""

    def __init__(self, db: Database, *, window: float, wake: asyncio.Event | None = None) -> None:
        self.db = db
        self.window = window
        self._recorded: dict[tuple[DocKind, uuid.UUID, int], set[uuid.UUID | None]] = {}
        self._pending: dict[tuple[DocKind, uuid.UUID, int], set[uuid.UUID | None]] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    async def __aenter__(self) -> ContentChanges:
        self._task = asyncio.create_task(self._write_loop(), name="events: content changes")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._ready.set()
            await self._flush()  # what was edited before the shutdown
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

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
            key, waiting = next(iter(self._pending.items()))
            editors = set(waiting)  # edited() may add to ``waiting`` while this writes
            for attempt in range(2):  # a concurrent insert by another instance: update it then
                try:
                    await self._write(key, editors)
                    break
                except IntegrityError:
                    if attempt:
                        raise
            if len(self._recorded) >= MAX_REMEMBERED:
                self._recorded.clear()
            self._recorded.setdefault(key, set()).update(editors)
            waiting -= editors
            if not waiting:
                del self._pending[key]

    async def _write(self, key: tuple[DocKind, uuid.UUID, int], editors: set[uuid.UUID | None]) -> None:
        kind, doc_id, window = key
        async with self.db.write_session() as session:
            if await write_content_event(
                session, kind, doc_id, window, self.window, editors, occurred_at=datetime.now(UTC)
            ):
                self.written += 1


def coalesce_key(kind: DocKind, doc_id: uuid.UUID, window: int) -> str:
    """The outbox key of ``doc_id``'s content event for the ``window``-th window."""
    return f"{kind.value}.content_changed:{doc_id}:{window}"


async def write_content_event(
    session: AsyncSession,
    kind: DocKind,
    doc_id: uuid.UUID,
    window: int,
    window_seconds: float,
    editors: set[uuid.UUID | None],
    *,
    occurred_at: datetime,
) -> bool:
    """Add ``editors`` to the document's event for ``window`` (still undispatched), or write it,
    due at the window's end; whether a row was inserted. Raises IntegrityError when another
    transaction inserted it meanwhile (then call again: it updates)."""
    key = coalesce_key(kind, doc_id, window)
    named = sorted(str(e) for e in editors if e is not None)
    row = await session.scalar(select(OutboxEvent).where(OutboxEvent.coalesce_key == key).with_for_update())
    if row is not None:
        if row.dispatched_at is None:
            merged = sorted(set(row.data.get("editorIds", [])) | set(named))
            if merged != row.data.get("editorIds"):
                row.data = {**row.data, "editorIds": merged}
        return False
    document: Loop | Song | None = await session.get(document_model(kind.value), doc_id)  # type: ignore[assignment]
    if document is None:
        return False  # deleted meanwhile
    session.add(
        OutboxEvent(
            id=uuid.uuid4(),
            kind=f"{kind.value}.content_changed",
            occurred_at=occurred_at,
            actor_id=uuid.UUID(named[0]) if named else None,
            resource_type=kind.value,
            resource_id=doc_id,
            data={kind.value: document_ref(document), "editorIds": named},
            coalesce_key=key,
            available_at=datetime.fromtimestamp((window + 1) * window_seconds, UTC),
        )
    )
    await session.flush()  # a concurrent insert shows here, as IntegrityError
    return True
