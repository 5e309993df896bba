"""Content events derived again from the durable update log, for edits whose event was lost.

The live path (:mod:`events.content_changes`) writes a document's ``<kind>.content_changed``
event in a transaction of its own, right after the edit is applied, so the edit never waits
for it. A server killed between the edit's commit and that write would lose the event; the
update log (``document_updates``, and ``document_history`` once a snapshot folded the entries
in) still holds the edit, its author and its time. Each pass reads the log entries of a time
slice, grouped by the database by document, author and debounce window, and writes the event
of every window that has none, with the logged authors as its editors, through the same
``coalesce_key`` (so two instances, or a pass and the live path, fill one row).

The first pass, at startup, looks back ``CONTENT_EVENT_LOOKBACK_SECONDS``; later passes, each
``window`` seconds, read only the slice since the previous one (plus :data:`SETTLE_SECONDS`
of overlap, for an entry committed late). An entry is read once it is a window and
:data:`SETTLE_SECONDS` old: by then the live path has written its event (as its window ended).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Integer, SQLColumnExpression, cast, func, select
from sqlalchemy.exc import IntegrityError

from events.content_changes import BATCH_SIZE, coalesce_key, write_content_events
from music.kinds import DocKind
from storage.database import Database
from storage.models import DocumentHistory, DocumentUpdate, OutboxEvent, utcnow

log = logging.getLogger(__name__)
# How long after its window a log entry is read by a pass (the live path wrote its event by
# then), and the overlap between slices (an entry stamped before a pass's end but committed
# after it).
SETTLE_SECONDS = 5.0
# The live path keys an edit on the time it was applied, the log on the time it was
# committed, a little later: entries this early in a window count as the previous
# window's when that one has an event (no second event for one burst of editing).
LOG_LAG_SECONDS = 1.0
# How many grouped log rows a pass reads between two turns of the event loop (the edits go on).
YIELD_EVERY_ROWS = 200
# How much of the log a pass reads and holds at once (rounded up to whole windows).
SLICE_SECONDS = 300.0


@dataclass
class _Window:
    """The log entries of one document in one debounce window."""

    editors: set[uuid.UUID | None] = field(default_factory=set)
    first: datetime | None = None
    last: datetime | None = None

    def add(self, author: uuid.UUID | None, at: datetime) -> None:
        self.editors.add(author)
        self.first = at if self.first is None else min(self.first, at)
        self.last = at if self.last is None else max(self.last, at)


Key = tuple[DocKind, uuid.UUID, int]


def window_index(column: SQLColumnExpression[datetime], window: float, dialect: str) -> ColumnElement[int]:
    """The debounce window a UTC timestamp column falls in, computed by the database:
    ``floor(epoch seconds / window)``, as the live path computes it from the clock."""
    if dialect == "sqlite":  # stored as UTC text; julianday() reads it, 2440587.5 is 1970-01-01
        epoch = (func.julianday(column) - 2440587.5) * 86400.0
        return cast(epoch / window, Integer)  # truncation is floor for times after 1970
    return cast(func.floor(func.extract("epoch", column) / window), Integer)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class ContentRecovery:
    """``async with``: a pass at startup, then one every ``window`` seconds."""

    def __init__(self, db: Database, *, window: float, lookback: float) -> None:
        self.db = db
        self.window = window
        self.lookback = lookback
        self.recovered = 0  # events written by a pass (each was missing)
        self._since: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ContentRecovery:
        self._task = asyncio.create_task(self._run(), name="events: content recovery")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("events: recovering content events from the update log failed; retrying")
            await asyncio.sleep(max(self.window, 1.0))

    async def run_pass(self) -> int:
        """Write the missing events of the slice since the previous pass; how many."""
        until = utcnow() - timedelta(seconds=self.window + SETTLE_SECONDS)
        if self._since is None:
            since = until - timedelta(seconds=self.lookback)
        else:
            since = self._since - timedelta(seconds=SETTLE_SECONDS)
        written = 0
        # The startup pass reads up to the whole lookback (hours of a busy log): one slice at a
        # time, so memory holds one slice's windows, not the lookback's. Slices end on window
        # boundaries: each window's entries are read together.
        step = math.ceil(max(SLICE_SECONDS, self.window) / self.window) * self.window
        start = await self._first_entry(since, until)  # no slices over an empty stretch
        while start is not None and start < until:
            end = min(until, datetime.fromtimestamp((math.floor(start.timestamp() / step) + 1) * step, UTC))
            written += await self._recover(start, end)
            start = end
        self._since = until
        if written:
            log.warning("events: %d content event(s) recovered from the update log", written)
        self.recovered += written
        return written

    async def _first_entry(self, since: datetime, until: datetime) -> datetime | None:
        """Just before the earliest log entry in (``since``, ``until``] (None: there is none)."""
        async with self.db.session() as session:
            firsts = [
                await session.scalar(
                    select(func.min(model.created_at)).where(
                        model.created_at > since, model.created_at <= until
                    )
                )
                for model in (DocumentUpdate, DocumentHistory)
            ]
        found = [_aware(at) for at in firsts if at is not None]
        return max(since, min(found) - timedelta(microseconds=1)) if found else None

    async def _recover(self, since: datetime, until: datetime) -> int:
        """Write the missing events of the log entries in (``since``, ``until``]; how many."""
        windows = await self._read_log(since, until)
        missing = await self._missing(windows)
        written = 0
        for start in range(0, len(missing), BATCH_SIZE):
            written += await self._write({key: windows[key] for key in missing[start : start + BATCH_SIZE]})
        return written

    async def _read_log(self, since: datetime, until: datetime) -> dict[Key, _Window]:
        windows: dict[Key, _Window] = defaultdict(_Window)
        async with self.db.session() as session:
            for model in (DocumentUpdate, DocumentHistory):  # a snapshot moves entries from one to the other
                # Grouped by the database: one row per document, author and window, not one per
                # edit (a busy log's slice is thousands of edits).
                index = window_index(model.created_at, self.window, self.db.dialect).label("window")
                rows = await session.execute(
                    select(
                        model.resource_type,
                        model.resource_id,
                        model.author_id,
                        index,
                        func.min(model.created_at),
                        func.max(model.created_at),
                    )
                    .where(model.created_at > since, model.created_at <= until)
                    .group_by(model.resource_type, model.resource_id, model.author_id, index)
                )
                for i, (resource_type, resource_id, author_id, w, first, last) in enumerate(rows):
                    if i % YIELD_EVERY_ROWS == YIELD_EVERY_ROWS - 1:
                        await asyncio.sleep(0)
                    entries = windows[(DocKind(resource_type), resource_id, int(w))]
                    entries.add(author_id, _aware(first))
                    entries.add(author_id, _aware(last))
        return windows

    async def _missing(self, windows: dict[Key, _Window]) -> list[Key]:
        """The windows with no event, nor one in the previous window that covers them."""
        if not windows:
            return []
        wanted = {coalesce_key(kind, doc, w - i): (kind, doc, w) for kind, doc, w in windows for i in (0, 1)}
        found: set[str] = set()
        keys = list(wanted)
        async with self.db.session() as session:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                found.update(
                    await session.scalars(
                        select(OutboxEvent.coalesce_key).where(OutboxEvent.coalesce_key.in_(chunk))
                    )
                )
        missing = []
        for (kind, doc, w), entries in windows.items():
            if coalesce_key(kind, doc, w) in found:
                continue
            assert entries.last is not None
            lag_allowed = datetime.fromtimestamp(w * self.window + LOG_LAG_SECONDS, UTC)
            if coalesce_key(kind, doc, w - 1) in found and entries.last < lag_allowed:
                continue
            missing.append((kind, doc, w))
        return missing

    async def _write(self, windows: dict[Key, _Window]) -> int:
        events = {key: (entries.editors, entries.last or utcnow()) for key, entries in windows.items()}
        for attempt in range(2):  # another instance's pass or the live path inserted one: update
            try:
                async with self.db.write_session() as session:
                    return await write_content_events(session, events, self.window)
            except IntegrityError:
                if attempt:
                    raise
        return 0
