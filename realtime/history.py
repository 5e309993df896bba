"""The version history of loops and songs: activity, versions, time travel, compare, restore.

Built on the kept updates (``storage.history``): every accepted update with its author and
time, kept past the update log's compaction for ``history_retention_days``. What it adds:

- **automatic versions**: a whole state, made once a burst of editing settles (no fold for
  ``history_version_interval_seconds``), at most once per that interval while editing goes
  on, and when the last person leaves; **named versions** on request, kept until deleted;
- **time travel**: the content at any instant the history holds, replayed from the newest
  version before it (or the base) with the kept updates up to that instant;
- **restore** and **undo one person's changes**: computed in music terms (``music.changes``)
  and written through the document service's content write, as a new CRDT update on top of
  the live document (never a reset), so every instance relays it and stale clients merge it;
- **retention**: old kept updates fold into the base, old automatic versions go, on each
  automatic version (per document) and by a daily sweep.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from pycrdt import Doc

from music.changes import CellWatcher, Change, cells, changed_fields, content_of_cells, diff, summarize
from music.kinds import DocKind
from music.reading import doc_to_content
from storage import history as kept
from storage.database import Database
from storage.errors import HistoryNotKept, NotFound
from storage.kinds import document_model
from storage.models import DocumentVersion, utcnow

if TYPE_CHECKING:
    from realtime.rooms import Room
    from realtime.tasks import OwnedTasks

log = logging.getLogger(__name__)

# Edits by one person less than this apart are one session of the activity feed.
ACTIVITY_SESSION_GAP = timedelta(minutes=5)
# Content keys a restore never writes (the server computes them).
_DERIVED = frozenset({"totalBars"})


class LiveDocuments(Protocol):
    """What the history needs of the document service (which owns it)."""

    async def open_room(self, kind: DocKind, doc_id: uuid.UUID) -> Room: ...

    async def snapshot(self, room: Room) -> Any: ...

    async def write_content(
        self,
        kind: DocKind,
        doc_id: uuid.UUID,
        content: dict[str, Any],
        fields: set[str],
        *,
        user_id: uuid.UUID,
        owner_only: bool = False,
    ) -> Any: ...


@dataclass(frozen=True)
class HistoryPolicy:
    version_interval: float  # HISTORY_VERSION_INTERVAL_SECONDS
    retention_days: int  # HISTORY_RETENTION_DAYS
    max_versions: int  # HISTORY_MAX_VERSIONS (automatic ones; named versions are kept)
    pack_after: float  # HISTORY_PACK_AFTER_SECONDS


@dataclass
class _Session:
    """One person's coalesced edits (entries ``first``..``last`` of the replay, by index)."""

    author_id: uuid.UUID | None
    started_at: datetime
    ended_at: datetime
    first: int
    last: int
    edits: int = 0
    touched: set[str] = field(default_factory=set)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        changes = [
            Change(cell, self.before.get(cell), self.after.get(cell))
            for cell in sorted(self.touched)
            if self.before.get(cell) != self.after.get(cell)
        ]
        return {
            "userId": None if self.author_id is None else str(self.author_id),
            "startedAt": self.started_at.isoformat(),
            "endedAt": self.ended_at.isoformat(),
            "edits": self.edits,
            "summary": summarize(changes),
            "fields": changed_fields(changes),
        }


def _sessions(found: list[kept.Entry]) -> list[_Session]:
    """The session of each entry: entries grouped per author, a new session after
    ``ACTIVITY_SESSION_GAP`` of quiet."""
    owners: list[_Session] = []
    open_by_author: dict[uuid.UUID | None, _Session] = {}
    for index, entry in enumerate(found):
        when = _utc(entry.created_at)
        current = open_by_author.get(entry.author_id)
        if current is None or when - current.ended_at > ACTIVITY_SESSION_GAP:
            current = _Session(entry.author_id, when, when, index, index)
            open_by_author[entry.author_id] = current
        current.ended_at, current.last = when, index
        current.edits += 1
        owners.append(current)
    return owners


def content_of_state(kind: DocKind, state: bytes) -> dict[str, Any]:
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    return doc_to_content(kind, doc)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class VersionHistory:
    """The history of every document (see the module docstring); one per document service."""

    def __init__(
        self, documents: LiveDocuments, db: Database, tasks: OwnedTasks, policy: HistoryPolicy
    ) -> None:
        self.documents = documents
        self.db = db
        self.tasks = tasks
        self.policy = policy
        self._settle: dict[tuple[DocKind, uuid.UUID], asyncio.TimerHandle] = {}
        self._last_version: dict[tuple[DocKind, uuid.UUID], float] = {}  # monotonic, this instance
        self._sweep: asyncio.Task[None] | None = None
        self.versions_made = 0

    # --- automatic versions ---------------------------------------------------------------

    def folded(self, room: Room) -> None:
        """A snapshot folded edits into the row: a version is due if none was made for an
        interval (editing goes on); otherwise one follows once editing settles."""
        key = (room.kind, room.doc_id)
        interval = self.policy.version_interval
        now = time.monotonic()
        # The first fold seen here starts the clock: a lone REST write makes its version once
        # it settles, not in the middle of its request's work.
        if now - self._last_version.setdefault(key, now) >= interval:
            self._spawn_version(room.kind, room.doc_id, min_age=interval)
        previous = self._settle.pop(key, None)
        if previous is not None:
            previous.cancel()
        self._settle[key] = asyncio.get_running_loop().call_later(
            interval, self._settled, room.kind, room.doc_id
        )

    def last_left(self, room: Room) -> None:
        """The last person left (their edits were just folded): a version of what they did."""
        previous = self._settle.pop((room.kind, room.doc_id), None)
        if previous is not None:
            previous.cancel()
        self._spawn_version(room.kind, room.doc_id, min_age=0.0)
        self._last_version.pop((room.kind, room.doc_id), None)  # the next fold starts anew

    def _settled(self, kind: DocKind, doc_id: uuid.UUID) -> None:
        self._settle.pop((kind, doc_id), None)
        self._spawn_version(kind, doc_id, min_age=0.0)
        self._last_version.pop((kind, doc_id), None)  # bounded by the documents being edited

    def _spawn_version(self, kind: DocKind, doc_id: uuid.UUID, *, min_age: float) -> None:
        self._last_version[(kind, doc_id)] = time.monotonic()
        self.tasks.spawn(self._auto_version(kind, doc_id, min_age), f"version {kind.value}:{doc_id}")

    async def _auto_version(self, kind: DocKind, doc_id: uuid.UUID, min_age: float) -> None:
        made = await self.make_version(kind, doc_id, min_age=min_age)
        if made is not None:
            await self.prune(kind, doc_id)
            await self.pack(kind, doc_id, at_least=kept.CHUNK_ENTRIES)

    async def make_version(
        self,
        kind: DocKind,
        doc_id: uuid.UUID,
        *,
        name: str | None = None,
        created_by: uuid.UUID | None = None,
        min_age: float = 0.0,
    ) -> DocumentVersion | None:
        """A version of the document as its row stores it. Automatic ones (no ``name``) are
        made only if something changed since the newest version, made ``min_age`` seconds
        ago or more; None when none was due."""
        model = document_model(kind.value)
        async with self.db.session() as session:
            row = await kept.stored_state(session, kind.value, doc_id)
            if row is None:
                return None
            state, position = row
            newest = await kept.newest_version(session, doc_id)
            if name is None and newest is not None:
                if newest.position >= position:
                    return None
                if (utcnow() - _utc(newest.created_at)).total_seconds() < min_age:
                    return None
            before: dict[str, Any] = {}
            if newest is not None:
                before, previous_position = kept.unpack_content(newest.content), newest.position
            else:
                base = await kept.base_of(session, kind.value, doc_id)
                previous_position = base.position if base else 0
                if base is not None:
                    before = content_of_state(kind, base.state)
            authors = await kept.authors_between(session, kind.value, doc_id, previous_position, position)
            checkpoint = await kept.newest_version(session, doc_id, checkpoint=True)
            since_checkpoint = await kept.count_between(
                session, kind.value, doc_id, checkpoint.position if checkpoint else 0, position
            )
        content = content_of_state(kind, state)
        summary = diff(kind, before, content).summary() if before else {}
        version = DocumentVersion(
            resource_type=kind.value,
            resource_id=doc_id,
            name=name,
            created_by=created_by,
            authors=[str(a) for a in authors],
            position=position,
            content=kept.pack_content(content),
            state=kept.pack_state(state)
            if since_checkpoint >= kept.CHECKPOINT_ENTRIES or checkpoint is None
            else None,
            summary=summary,
        )
        async with self.db.write_session() as session:
            if await session.get(model, doc_id) is None:
                return None  # deleted meanwhile
            session.add(version)
            await session.flush()
            await kept.trim_versions(session, doc_id, keep=self.policy.max_versions)
        self.versions_made += 1
        return version

    async def name_version(
        self, kind: DocKind, doc_id: uuid.UUID, name: str, user_id: uuid.UUID
    ) -> DocumentVersion:
        """A named version of the live content: the room is folded first, so it holds every
        edit relayed so far."""
        room = await self.documents.open_room(kind, doc_id)
        await self.documents.snapshot(room)
        version = await self.make_version(kind, doc_id, name=name, created_by=user_id)
        if version is None:
            raise NotFound(f"{kind.value} not found")
        return version

    # --- reading --------------------------------------------------------------------------

    async def _replay_to(self, kind: DocKind, doc_id: uuid.UUID, at: datetime) -> tuple[Doc[Any], int]:
        """A document holding the content as it was at ``at``, and the last log id in it."""
        async with self.db.session() as session:
            base = await kept.base_of(session, kind.value, doc_id)
            if base is None:
                raise NotFound(f"{kind.value} not found")
            if at < _utc(base.at):
                raise HistoryNotKept(
                    f"the history of this {kind.value} starts at {_utc(base.at).isoformat()}",
                    details=[{"startsAt": _utc(base.at).isoformat()}],
                )
            start = await kept.checkpoint_before(session, doc_id, at=at, not_before=base.position)
            state, position = (
                (kept.unpack_state(start.state), start.position)
                if start and start.state
                else (base.state, base.position)
            )
            found = await kept.entries(session, kind.value, doc_id, after=position, until=at)
        doc: Doc[Any] = Doc()
        with doc.transaction():
            doc.apply_update(state)
            for entry in found:
                doc.apply_update(entry.data)
        return doc, (found[-1].id if found else position)

    async def content_at(self, kind: DocKind, doc_id: uuid.UUID, at: datetime) -> dict[str, Any]:
        """The content as it was at ``at`` (HistoryNotKept before the kept history starts)."""
        doc, _ = await self._replay_to(kind, doc_id, _utc(at))
        return doc_to_content(kind, doc)

    async def live_content(self, kind: DocKind, doc_id: uuid.UUID) -> dict[str, Any]:
        room = await self.documents.open_room(kind, doc_id)
        return room.content()

    async def version_content(
        self, kind: DocKind, doc_id: uuid.UUID, version_id: uuid.UUID
    ) -> tuple[DocumentVersion, dict[str, Any]]:
        async with self.db.session() as session:
            version = await kept.get_version(session, doc_id, version_id)
        if version is None:
            raise NotFound("version not found")
        return version, kept.unpack_content(version.content)

    async def activity(
        self, kind: DocKind, doc_id: uuid.UUID, *, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Who edited and when, newest session first: each person's edits less than
        ``ACTIVITY_SESSION_GAP`` apart are one session, whose summary is the net change of the
        cells they touched in it. The content is read only at the sessions' edges."""
        async with self.db.session() as session:
            base = await kept.base_of(session, kind.value, doc_id)
        if base is None:
            raise NotFound(f"{kind.value} not found")
        start = max(_utc(base.at), since) if since is not None else _utc(base.at)
        doc, position = await self._replay_to(kind, doc_id, start)
        async with self.db.session() as session:
            found = await kept.entries(session, kind.value, doc_id, after=position)
        owners = _sessions(found)
        sessions = list({id(s): s for s in owners}.values())
        firsts = {s.first: s for s in sessions}
        lasts: dict[int, list[_Session]] = {}
        for s in sessions:
            lasts.setdefault(s.last, []).append(s)
        watcher = CellWatcher(kind, doc)
        try:
            for index, entry in enumerate(found):
                opening = firsts.get(index)
                if opening is not None:
                    opening.before = cells(kind, doc_to_content(kind, doc))
                doc.apply_update(entry.data)
                touched = watcher.take()
                for closing in lasts.get(index, ()):
                    closing.after = cells(kind, doc_to_content(kind, doc))
                owners[index].touched |= touched
        finally:
            watcher.close()
        sessions.sort(key=lambda s: s.ended_at, reverse=True)
        return [s.as_json() for s in sessions]

    # --- writing --------------------------------------------------------------------------

    async def restore(
        self, kind: DocKind, doc_id: uuid.UUID, version_id: uuid.UUID, *, user_id: uuid.UUID
    ) -> dict[str, Any]:
        """Make the document read as the version again: one CRDT update on top of the live
        document, holding only what differs, relayed live like any edit."""
        _version, content = await self.version_content(kind, doc_id, version_id)
        return await self._write(kind, doc_id, content, user_id)

    async def revert(
        self, kind: DocKind, doc_id: uuid.UUID, *, person: uuid.UUID, since: datetime, user_id: uuid.UUID
    ) -> dict[str, Any]:
        """Undo ``person``'s changes made after ``since``: each cell they were the last to
        change goes back to what it was at ``since``; a cell someone else changed after them
        keeps that later change. One CRDT update on top, as a restore."""
        doc, position = await self._replay_to(kind, doc_id, _utc(since))
        at_since = cells(kind, doc_to_content(kind, doc))
        async with self.db.session() as session:
            found = await kept.entries(session, kind.value, doc_id, after=position)
        last_writer: dict[str, uuid.UUID | None] = {}
        watcher = CellWatcher(kind, doc)
        try:
            for entry in found:
                doc.apply_update(entry.data)
                for cell in watcher.take():
                    last_writer[cell] = entry.author_id
        finally:
            watcher.close()
        wanted = cells(kind, await self.live_content(kind, doc_id))
        for cell, author in last_writer.items():
            if author != person:
                continue
            if cell in at_since:
                wanted[cell] = at_since[cell]
            else:
                wanted.pop(cell, None)
        return await self._write(kind, doc_id, content_of_cells(kind, wanted), user_id)

    async def _write(
        self, kind: DocKind, doc_id: uuid.UUID, content: dict[str, Any], user_id: uuid.UUID
    ) -> dict[str, Any]:
        content = {key: value for key, value in content.items() if key not in _DERIVED}
        written = await self.documents.write_content(kind, doc_id, content, set(content), user_id=user_id)
        return written.content

    # --- retention ------------------------------------------------------------------------

    def cutoff(self) -> datetime:
        return utcnow() - timedelta(days=self.policy.retention_days)

    async def prune(self, kind: DocKind, doc_id: uuid.UUID) -> int:
        """Fold kept updates older than the retention window into the base and drop automatic
        versions older than it; how many updates were dropped."""
        cutoff = self.cutoff()
        async with self.db.session() as session:
            base = await kept.base_of(session, kind.value, doc_id)
            settings = await kept.settings_of(session, doc_id)
            if base is None or settings is None or settings.base_state is None:
                old: list[kept.Entry] = []
            else:
                old = await kept.entries(session, kind.value, doc_id, after=base.position, until=cutoff)
        async with self.db.write_session() as session:
            if not old:
                # Nothing to fold; automatic versions past the window may still be due to go.
                await kept.drop_versions_before(session, doc_id, cutoff)
                return 0
            assert base is not None
            doc: Doc[Any] = Doc()
            with doc.transaction():
                doc.apply_update(base.state)
                for entry in old:
                    doc.apply_update(entry.data)
            new_base = kept.Base(doc.get_update(), old[-1].id, cutoff)
            return await kept.prune_before(session, doc_id, cutoff=cutoff, new_base=new_base)

    async def pack(self, kind: DocKind, doc_id: uuid.UUID, *, at_least: int = 1) -> int:
        """Pack the document's kept entries older than ``pack_after`` into compressed chunks of
        ``CHUNK_ENTRIES`` (none while fewer than ``at_least`` are due); how many were packed."""
        before = utcnow() - timedelta(seconds=self.policy.pack_after)
        packed = 0
        while True:
            async with self.db.write_session() as session:
                moved = await kept.pack_kept(session, kind.value, doc_id, before=before, at_least=at_least)
            packed += moved
            if moved < kept.CHUNK_ENTRIES:
                return packed

    async def sweep(self) -> int:
        """Apply the retention window to every document holding older history, and pack every
        document's entries due to be packed; how many documents were pruned."""
        async with self.db.session() as session:
            due = await kept.documents_with_history_before(session, self.cutoff())
            unpacked = await kept.documents_with_unpacked_before(
                session, utcnow() - timedelta(seconds=self.policy.pack_after)
            )
        for resource_type, doc_id in due:
            try:
                await self.prune(DocKind(resource_type), doc_id)
            except Exception:
                log.exception("history retention of %s:%s failed", resource_type, doc_id)
        for resource_type, doc_id in unpacked:
            try:
                await self.pack(DocKind(resource_type), doc_id)
            except Exception:
                log.exception("packing the history of %s:%s failed", resource_type, doc_id)
        return len(due)

    def start(self, *, every: float = 24 * 3600, first_delay: float = 300) -> None:
        async def run() -> None:
            await asyncio.sleep(first_delay)
            while True:
                try:
                    swept = await self.sweep()
                    log.info("history retention: %d documents pruned", swept)
                except Exception:
                    log.exception("history retention sweep failed; retrying in a day")
                await asyncio.sleep(every)

        self._sweep = self.tasks.spawn(run(), "history retention")

    def stop(self) -> None:
        for handle in self._settle.values():
            handle.cancel()
        self._settle.clear()


def parse_when(value: str) -> datetime:
    """An ISO 8601 instant (``Z`` or an offset; none means UTC). ValueError if not one."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return _utc(parsed)
