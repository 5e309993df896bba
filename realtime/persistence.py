"""Persistence of live documents: loading, persist-then-relay, the snapshot (fold), trim, catch-up.

Durability: an update is applied in memory, appended to the durable log (group commit), and
only then relayed, so a crash never loses an update any client has received. Snapshots fold
the log into the document row (its Yjs state and the JSON columns that mirror it) every
``snapshot_interval`` while dirty, when the last client leaves, and at shutdown.

A REST write goes the same way, except that it is folded into the row before it is relayed
(:meth:`RoomPersistence.write_through`): by the time anyone sees it the row already holds it,
so one read-cache invalidation (the fold's) covers it, and the write answers with the row as
the fold saved it.

Several instances: snapshots lock the row and merge what another instance stored before
writing, so they never lose its content. After a bus outage (or a gap in an origin's
sequence numbers) a room catches up from the row and the log.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pycrdt import Doc

from music.columns import content_columns, row_content
from music.kinds import DocKind
from music.writing import content_to_update
from realtime.cluster import ClusterMessage
from realtime.errors import ErrorCode
from realtime.read_cache import ReadCache
from realtime.rooms import Room, RoomKey, RoomTransport, Session
from realtime.tasks import OwnedTasks
from storage import document_store as stored
from storage import history as kept_history
from storage.database import Database, Steps
from storage.errors import NotFound
from storage.kinds import document_model
from storage.models import Loop, Song
from storage.update_log import UpdateLog

log = logging.getLogger(__name__)

# Folded log entries the snapshot's own transaction deletes on SQLite (the rest go in batches
# of storage.document_store.SQLITE_TRIM_BATCH, a transaction each, so the update log's writer gets
# the one write lock between them). A REST write's fold, a handful of entries, needs no
# transaction of its own for them; a busy room's fold holds the lock ~0.2 ms longer at most.
FOLD_TRIM_BATCH = 64


class SnapshotOutcome(enum.Enum):
    SAVED = "saved"
    MERGED = "merged"  # the row had moved (another instance stored it): merged, then saved
    DELETED = "deleted"  # the row is gone: the room was dropped and its sockets told


@dataclass
class _Trim:
    """The deletion of folded log entries at the end of a snapshot's transaction."""

    limit: int | None  # None: all of them (Postgres)
    started: bool = False
    deleted: int = 0


async def _not_wired(room: Room) -> None:
    raise RuntimeError("RoomPersistence.on_deleted is not wired")


class RoomPersistence:
    """Reads live documents from storage and writes them back (the rooms' store)."""

    def __init__(
        self,
        db: Database,
        update_log: UpdateLog,
        read_cache: ReadCache,
        publish: Callable[[Room, ClusterMessage], None],
        tasks: OwnedTasks,
    ) -> None:
        self.db = db
        self.update_log = update_log
        self.read_cache = read_cache
        self._publish = publish
        self._tasks = tasks
        self._log_ahead_of_row: set[RoomKey] = set()  # rooms with durable updates since their snapshot
        self._catching_up: set[RoomKey] = set()
        # A snapshot or catch-up found the row gone: drop the room and tell its sockets (the registry).
        self.on_deleted: Callable[[Room], Awaitable[None]] = _not_wired
        # Called with (seconds, stored bytes) after each snapshot (metrics).
        self.on_snapshot: Callable[[float, int], None] | None = None
        # Called after each fold that saved (the version history arms its automatic versions).
        self.on_folded: Callable[[Room], None] | None = None
        self.snapshots: list[tuple[RoomKey, float, SnapshotOutcome]] = []  # recent, for tests/metrics
        self.loads = 0  # documents loaded from storage (a join storm loads once)
        self.updates_relayed = 0  # updates relayed to their room once durable
        self.catch_ups = 0

    # --- loading --------------------------------------------------------------------

    async def load(self, kind: DocKind, doc_id: uuid.UUID, transport: RoomTransport) -> Room:
        """A new room holding the stored document (the row's state and the log after it) and
        its access rules, read from one snapshot of the database."""
        self.loads += 1
        loaded = await stored.load_document_and_access(self.db, resource_type=kind.value, resource_id=doc_id)
        if loaded is None:
            raise NotFound(f"{kind.value} not found")
        found, rules = loaded
        doc: Doc[Any] = Doc()
        room = Room(kind, doc_id, doc, transport, position=found.position, access=rules)
        if found.state is None:
            # A document created before the CRDT era: its JSON becomes its first update, once.
            async with self.db.session() as session:
                row: Loop | Song | None = await session.get(document_model(kind.value), doc_id)
            if row is None:
                raise NotFound(f"{kind.value} not found")
            first = content_to_update(kind, row_content(row))
            doc.apply_update(first)
            created = await self.db.write_steps(
                stored.save_snapshot(
                    resource_type=kind.value,
                    resource_id=doc_id,
                    state=first,
                    position=found.position,
                    columns={},
                    only_if_no_state=True,
                )
            )
            if not created:  # another process made the first state meanwhile: use that one
                return await self.load(kind, doc_id, transport)
            room.stored_bytes = len(first)
        else:
            doc.apply_update(found.state)
            room.stored_bytes = len(found.state)
        room.folded_bytes = room.stored_bytes
        if found.updates:
            # One transaction for the whole log: half the cost of one per update (and far
            # cheaper than merge_updates, which grows superlinearly with the log).
            with doc.transaction():
                for _, update in found.updates:
                    doc.apply_update(update)
            room.stored_bytes += sum(len(update) for _, update in found.updates)
            room.position = max(room.position, found.updates[-1][0])
        room.loaded()
        room.persisted_version = room.version
        room.listing_changed = False  # the meta observer saw the document being built
        if found.updates:
            room.dirty_since = time.monotonic()  # fold the replayed log into a snapshot soon
            room.listing_changed = True  # whatever the replayed entries changed
        return room

    def room_closed(self, room: Room) -> None:
        self._log_ahead_of_row.discard((room.kind, room.doc_id))

    # --- writing --------------------------------------------------------------------

    def persist_then_relay(self, room: Room, delta: bytes, sender: Session | None) -> asyncio.Future[int]:
        """Queue ``delta`` for the durable log; relay it to the room once it is committed.

        Nothing waits here: a socket keeps reading while its edits are being committed, and
        edits committed in one batch are relayed together (``Room.queue_broadcast``). Once
        durable, the update is also published to the other instances.
        """
        room.stored_bytes += len(delta)
        # ``room.position`` moves only with ids read back from the log (see snapshot()): an
        # entry another process committed with a lower id may not have reached us yet.
        author = sender.user_id if sender is not None else None
        committed = self.update_log.submit(room.kind.value, room.doc_id, delta, author)

        def relay(future: asyncio.Future[int]) -> None:
            if future.cancelled() or future.exception() is not None:
                # Only at shutdown (the log retries database errors until they are durable).
                log.error("%s: an update could not be stored; not relayed", room.namespace)
                if sender is not None and sender.sid in room.sessions:
                    room.transport.send(
                        room.namespace,
                        [sender],
                        "error",
                        {
                            "code": ErrorCode.STORAGE_UNAVAILABLE,
                            "message": "your last edit could not be saved",
                        },
                    )
                return
            if not room.closed:
                room.logged_ids.add(future.result())
                self.updates_relayed += 1
                room.queue_broadcast(delta, sender.sid if sender is not None else None)
                self._publish(room, ClusterMessage("update", {"id": future.result()}, delta))
                key = (room.kind, room.doc_id)
                if key not in self._log_ahead_of_row:
                    # The row no longer tells the whole story: no instance may answer a REST
                    # read from a cached copy of it (they read the log, or open the room).
                    self._log_ahead_of_row.add(key)
                    self.read_cache.invalidate(room.kind.value, room.doc_id)

        committed.add_done_callback(relay)
        return committed

    async def write_through(self, room: Room, delta: bytes, author: uuid.UUID | None = None) -> Any | None:
        """A REST write: ``delta`` committed to the log, folded into the row, then relayed.

        Returns the row as the fold saved it (every column but the Yjs state), or None if the
        document was deleted meanwhile. It runs as an owned task, so a client that hangs up
        does not cut it short: a committed write is always folded and relayed.
        """
        return await asyncio.shield(
            self._tasks.spawn(self._write_through(room, delta, author), f"write {room.namespace}")
        )

    async def _write_through(self, room: Room, delta: bytes, author: uuid.UUID | None) -> Any | None:
        room.stored_bytes += len(delta)
        try:
            entry_id = await asyncio.shield(
                self.update_log.submit(room.kind.value, room.doc_id, delta, author)
            )
        except Exception:  # only at shutdown (the log retries database errors until they are durable)
            log.error("%s: an update could not be stored; not relayed", room.namespace)
            raise
        room.logged_ids.add(entry_id)
        folded = False
        try:
            outcome, row = await self._fold(room, returning_row=True)
            folded = True
        finally:
            if not room.closed:  # as persist_then_relay's commit callback does
                self.updates_relayed += 1
                room.queue_broadcast(delta, None)
                self._publish(room, ClusterMessage("update", {"id": entry_id}, delta))
                key = (room.kind, room.doc_id)
                if not folded and key not in self._log_ahead_of_row:
                    self._log_ahead_of_row.add(key)
                    self.read_cache.invalidate(room.kind.value, room.doc_id)
        return None if outcome is SnapshotOutcome.DELETED else row

    # --- the snapshot ---------------------------------------------------------------

    async def snapshot(self, room: Room) -> SnapshotOutcome:
        """Fold the log into the document row and refresh the JSON columns.

        The row is locked for the whole fold, so snapshots of one document by several
        instances take turns. If the row moved past what this room has seen (another
        instance stored it and trimmed the log), its state is merged into the room first:
        the CRDT merge is idempotent, so nothing stored by anyone is ever overwritten.
        Then the entries of the log after the row's position that the room does not hold
        are applied, so the new position only covers entries in the state.
        The fold is one ``write_steps`` transaction, which also deletes the log entries it
        folded in (on SQLite up to ``FOLD_TRIM_BATCH`` of them; the rest follow, a batch per
        transaction): on a SQLite file it holds the write lock only while its statements
        run, so the update log does not wait behind it.
        """
        outcome, _row = await self._fold(room, returning_row=False)
        return outcome

    async def _fold(self, room: Room, *, returning_row: bool) -> tuple[SnapshotOutcome, Any | None]:
        async with room.snapshot_lock:
            started = time.perf_counter()
            if room.closed:
                return SnapshotOutcome.DELETED, None
            trim = _Trim(FOLD_TRIM_BATCH if self.db.dialect == "sqlite" else None)
            room.listing_changed = False  # a change from here on is seen by the next snapshot
            try:
                outcome, version, stored_bytes, row = await self.db.write_steps(
                    self._fold_log_into_row(room, returning_row=returning_row, trim=trim)
                )
            except Exception:
                if not trim.started:
                    raise
                # Only the trim failed: the snapshot stands without it (readers skip folded
                # entries anyway). Folding again from the room as it now is stores the same.
                log.warning(
                    "%s: folded log entries stay until the next snapshot", room.namespace, exc_info=True
                )
                outcome, version, stored_bytes, row = await self.db.write_steps(
                    self._fold_log_into_row(room, returning_row=returning_row, trim=None)
                )
            else:
                if outcome is not SnapshotOutcome.DELETED and trim.deleted == trim.limit:
                    try:
                        await self._trim_log(room)
                    except Exception:  # the snapshot stands: readers skip folded entries anyway
                        log.warning(
                            "%s: folded log entries stay until the next snapshot",
                            room.namespace,
                            exc_info=True,
                        )
            self._log_ahead_of_row.discard((room.kind, room.doc_id))
            self.read_cache.invalidate(room.kind.value, room.doc_id)
            self._record_snapshot(room, outcome)
            if outcome is SnapshotOutcome.DELETED:
                log.info("%s was deleted; dropping its room", room.namespace)
                await self.on_deleted(room)
                return outcome, None
            if outcome is SnapshotOutcome.MERGED:
                log.info("%s: the row had moved (another instance stored it); merged it", room.namespace)
            room.persisted_version = version
            room.stored_bytes = room.folded_bytes = stored_bytes
            # The next periodic snapshot is due one interval after this one, even if edits
            # kept arriving meanwhile (otherwise sustained editing snapshots every tick).
            room.dirty_since = None if room.version == version else time.monotonic()
            if self.on_snapshot is not None:
                self.on_snapshot(time.perf_counter() - started, room.stored_bytes)
            if self.on_folded is not None:
                self.on_folded(room)
            return outcome, row

    async def _trim_log(self, room: Room) -> None:
        """Delete the folded log entries the snapshot's transaction left (SQLite only): a short
        batch per transaction, so the update log's writer gets the one write lock between them."""
        trim = functools.partial(
            stored.trim_document_log,
            resource_type=room.kind.value,
            resource_id=room.doc_id,
            up_to=room.position,
            limit=stored.SQLITE_TRIM_BATCH,
        )
        while await self.db.write_steps(trim()) == stored.SQLITE_TRIM_BATCH:
            pass

    def _fold_log_into_row(
        self, room: Room, *, returning_row: bool, trim: _Trim | None
    ) -> Steps[tuple[SnapshotOutcome, int, int, Any | None]]:
        """The statements of a snapshot (see ``snapshot``): its outcome, the room version it
        stored, the stored state's size and the row as saved (if asked for). With ``trim``,
        it then deletes folded log entries (at most ``trim.limit``; how many: ``trim.deleted``)."""
        kind, doc_id = room.kind.value, room.doc_id
        locked = yield from stored.lock_document_state(resource_type=kind, resource_id=doc_id)
        if locked is None:
            return SnapshotOutcome.DELETED, room.version, 0, None
        outcome = SnapshotOutcome.SAVED
        row_state, row_position = locked
        if row_position > room.position and row_state is not None:
            outcome = SnapshotOutcome.MERGED
            self._apply_stored(room, row_state)
            room.position = row_position
        count, newest = yield from stored.log_after(
            resource_type=kind, resource_id=doc_id, position=room.position
        )
        known = sum(1 for entry_id in room.logged_ids if room.position < entry_id <= newest)
        if count != known:
            # Entries this room never saw (another instance's, its bus message not here yet).
            # The room's own are all in the log, so equal counts mean it holds every entry.
            missing = yield from stored.updates_after(
                resource_type=kind, resource_id=doc_id, position=room.position
            )
            for entry_id, update in missing:
                if entry_id not in room.logged_ids:
                    self._apply_stored(room, update)
        room.position = max(room.position, newest)
        room.logged_ids = {entry_id for entry_id in room.logged_ids if entry_id > room.position}
        version, position = room.version, room.position
        state = room.doc.get_update()
        columns = content_columns(room.content())
        if room.last_edit_at is not None:  # a flush with no edit leaves updatedAt alone
            columns["updated_at"] = datetime.fromtimestamp(room.last_edit_at, UTC)
        # The history keeps what this fold folds in before the log is trimmed.
        yield from kept_history.keep_folded(
            resource_type=kind,
            resource_id=doc_id,
            previous_state=row_state,
            previous_position=row_position,
            up_to=position,
        )
        save = stored.save_snapshot_returning_row if returning_row else stored.save_snapshot
        saved = yield from save(
            resource_type=kind, resource_id=doc_id, state=state, position=position, columns=columns
        )
        if trim is not None:
            trim.started = True
            trim.deleted = yield from stored.trim_document_log(
                resource_type=kind, resource_id=doc_id, up_to=position, limit=trim.limit
            )
        return outcome, version, len(state), saved if returning_row else None

    def _record_snapshot(self, room: Room, outcome: SnapshotOutcome) -> None:
        self.snapshots.append(((room.kind, room.doc_id), time.monotonic(), outcome))
        del self.snapshots[:-1000]

    def _apply_stored(self, room: Room, update: bytes) -> int:
        """Apply durable content (row state or log entry) and relay what was new to us."""
        delta = room.apply(update)
        if delta is None:
            return 0
        room.queue_broadcast(delta, None)
        return 1

    # --- catching up ----------------------------------------------------------------

    async def catch_up(self, room: Room) -> int:
        """Bring a room up to date from the row and the log (after a bus outage or a gap).

        Returns how many stored pieces held something the room lacked.
        """
        async with room.snapshot_lock:
            if room.closed:
                return 0
            loaded = await stored.load_document_and_access(
                self.db, resource_type=room.kind.value, resource_id=room.doc_id
            )
            if loaded is None:
                await self.on_deleted(room)
                return 0
            # Access changes announced while the bus was down were missed too.
            found, room.access = loaded
            changed = 0
            if found.position > room.position and found.state is not None:
                changed += self._apply_stored(room, found.state)
                room.position = found.position
            for entry_id, update in found.updates:
                if entry_id > room.position:
                    changed += self._apply_stored(room, update)
                    room.position = entry_id
            self.catch_ups += 1
            return changed

    def schedule_catch_up(self, room: Room, why: str) -> None:
        key = (room.kind, room.doc_id)
        if key in self._catching_up:
            return
        self._catching_up.add(key)

        async def run() -> None:
            try:
                changed = await self.catch_up(room)
                log.info(
                    "%s caught up after %s: %d stored updates were new here", room.namespace, why, changed
                )
            finally:
                self._catching_up.discard(key)

        self._tasks.spawn(run(), f"catch-up {room.namespace}")
