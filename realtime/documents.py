"""The document service: every loop and song as a live CRDT document.

It is the single source of truth for content. Sockets (``realtime.sockets``) and REST both
go through it: a REST write becomes a CRDT update that live collaborators receive, a REST
read sees every update the server has relayed. Ownership, visibility and counters stay in SQL.

Durability: an update is applied in memory, appended to the durable log (group commit),
and only then relayed, so a crash never loses an update any client has received. Snapshots
fold the log into the document row every ``snapshot_interval`` while dirty, when the last
client leaves, and at shutdown; idle rooms are then unloaded.

Several instances (see ``realtime.cluster``): every loaded document is subscribed to its bus
channel. Durable updates, awareness, members and control events are published there and
applied by every other instance that has the document loaded. Snapshots lock the row, and
merge what another instance stored before writing, so they never lose its content. After a
bus outage (or a gap in an origin's sequence numbers) a room catches up from the row and
the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cachetools import TTLCache
from pycrdt import Doc

from bus import Bus, BusState, Envelope, MemoryBus
from presence.members import Member
from realtime import cluster, docschema
from realtime.cluster import ClusterMessage, RemotePeers
from realtime.errors import RealtimeError
from realtime.limits import MalformedPayload, admission_refusal, check_update_header
from realtime.read_cache import ReadCache
from realtime.rooms import EVERYONE, Audience, Room, RoomTransport, Session
from storage import documents as stored
from storage.access import Role, load_access_rules, role_with_share
from storage.database import Database, Steps
from storage.errors import NotFound
from storage.kinds import document_model
from storage.models import Loop, Song
from storage.update_log import UpdateLog, UpdateLogFull
from storage.users import shown_names

log = logging.getLogger(__name__)


MAX_NAMES_PER_READ = 500  # users whose shown names one read asks for (joins of one loop turn)

# REST JSON field -> SQL column, for the columns refreshed from the document.
_COLUMNS = {
    "name": "name",
    "length": "length",
    "bpm": "bpm",
    "color": "color",
    "schemaVersion": "schema_version",
    "chordProgression": "chord_progression",
    "iconSequence": "icon_sequence",
    "timeSignature": "time_signature",
    "timeline": "timeline",
    "totalBars": "total_bars",
}


def content_columns(content: dict[str, Any]) -> dict[str, Any]:
    """Document content -> the SQL columns that mirror it (for listings and search)."""
    return {_COLUMNS[key]: value for key, value in content.items() if key in _COLUMNS}


def initial_state(kind: docschema.DocKind, content: dict[str, Any]) -> bytes:
    """The first update of a new document (REST create, migration, fork): made once."""
    return docschema.content_to_update(kind, content)


@dataclass(frozen=True)
class RealtimeLimits:
    """Bounds and timings of live documents. The first nine are settings of the same name (no
    defaults here: the composition root builds them from ``Settings``, tests too)."""

    max_update_bytes: int
    max_document_bytes: int
    max_clients_per_room: int
    max_connections_per_user: int
    max_messages_per_second: int
    snapshot_interval: float
    room_idle_seconds: float
    presence_timeout: float  # a silent instance's members and cursors vanish after it
    read_cache_ttl: float
    awareness_interval: float = 0.05  # at most one awareness message a client per this, on the bus
    presence_roll_call: float = 0.2  # how long REST presence waits for other instances' answers


class SnapshotOutcome(enum.Enum):
    SAVED = "saved"
    MERGED = "merged"  # the row had moved (another instance stored it): merged, then saved
    DELETED = "deleted"  # the row is gone: the room was dropped and its sockets told


RoomKey = tuple[docschema.DocKind, uuid.UUID]


@dataclass
class _AwarenessOut:
    """Awareness of one local session waiting for its turn on the bus (coalescing)."""

    room: Room
    pending: list[bytes]
    last_sent: float = 0.0
    timer: asyncio.TimerHandle | None = None


class DocumentService:
    """Loads, edits, persists and unloads live documents."""

    def __init__(
        self,
        db: Database,
        update_log: UpdateLog,
        limits: RealtimeLimits,
        *,
        bus: Bus | None = None,
        channel_prefix: str = "mp:",
    ) -> None:
        self.db = db
        self.update_log = update_log
        self.limits = limits
        self.bus = bus if bus is not None else MemoryBus()
        self.prefix = channel_prefix
        self.rooms: dict[RoomKey, Room] = {}
        self._loading: dict[RoomKey, asyncio.Future[Room]] = {}
        self._early: dict[RoomKey, list[Envelope]] = {}  # bus messages that arrived mid-load
        self._peers: dict[RoomKey, RemotePeers] = {}
        self._awareness_out: dict[str, _AwarenessOut] = {}
        self._members_dirty: set[RoomKey] = set()
        self._catching_up: set[RoomKey] = set()
        self._log_ahead_of_row: set[RoomKey] = set()  # rooms with durable updates since their snapshot
        self._tasks: set[asyncio.Task[Any]] = set()
        self._transport: RoomTransport | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self.loads = 0  # documents loaded from storage (a join storm loads once)
        self.deliveries = 0  # sync-update messages handed to a recipient's transport (the transport counts)
        self.updates_applied = 0  # client updates that changed a document
        self.updates_relayed = 0  # updates relayed to their room once durable
        # Called with (seconds, stored bytes) after each snapshot (metrics).
        self.on_snapshot: Callable[[float, int], None] | None = None
        self.snapshots: list[tuple[RoomKey, float, SnapshotOutcome]] = []  # recent, for tests/metrics
        self.catch_ups = 0
        self._message_handlers: dict[str, Callable[[Room, str, ClusterMessage], None]] = {
            "update": self._remote_update,
            "awareness": self._remote_awareness,
            "awareness-gone": self._remote_awareness_gone,
            "members": self._remote_members,
            "hello": self._remote_hello,
            "deleted": self._remote_deleted,
            "access": self._remote_access,
            "event": self._remote_event,
        }
        # How each user appears in presence, so a join storm asks the database once per user.
        # Dropped on every instance when a user changes (user_changed); trusted only while
        # the bus is up, like the read cache.
        self._shown_names: TTLCache[uuid.UUID, str] = TTLCache(maxsize=10_000, ttl=limits.read_cache_ttl)
        # Names asked for and not yet read: one query reads all that a loop turn asked for
        # (a join storm of 200 sockets is a few queries, not 200), and concurrent joins of
        # one user share its lookup.
        self._names_wanted: dict[uuid.UUID, asyncio.Future[str | None]] = {}
        self._names_reads: set[asyncio.Task[None]] = set()
        self._names_generation = 0  # bumped by every change, so a racing read is not kept
        self.read_cache = ReadCache(
            ttl=limits.read_cache_ttl,
            on_invalidate=self._publish_invalidation,
            trusted=lambda: self.bus.state is BusState.UP,
        )

    # --- lifecycle --------------------------------------------------------------------

    def attach_transport(self, transport: RoomTransport) -> None:
        self._transport = transport

    @property
    def transport(self) -> RoomTransport:
        if self._transport is None:
            raise RuntimeError("DocumentService has no transport attached")
        return self._transport

    async def start(self) -> None:
        self.bus.on_restored(self._after_outage)
        await self.bus.subscribe(cluster.cache_channel(self.prefix), self._on_cache_message)
        self._maintenance = asyncio.create_task(self._maintain(), name="documents-maintenance")

    async def stop(self) -> None:
        """Flush every dirty document (the database must still be open)."""
        log.info("flushing %d open documents", len(self.rooms))
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        for room in list(self.rooms.values()):
            try:
                await self.snapshot(room)
            except Exception:
                log.exception("final snapshot of %s failed; its updates stay in the log", room.namespace)
        for room in list(self.rooms.values()):
            self._close_room(room)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.rooms.clear()
        with contextlib.suppress(Exception):
            await self.bus.unsubscribe(cluster.cache_channel(self.prefix))

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """An owned background task: tracked, logged if it fails, cancelled at stop."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed", name, exc_info=t.exception())

        task.add_done_callback(done)

    async def __aenter__(self) -> DocumentService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _maintain(self) -> None:
        """Periodic snapshots of dirty rooms, unloading of idle ones. Logs and keeps going."""
        tick = min(1.0, self.limits.snapshot_interval / 2)
        heartbeat_every = self.limits.presence_timeout / 3
        last_heartbeat = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            heartbeat = now - last_heartbeat >= heartbeat_every
            if heartbeat:
                last_heartbeat = now
            for room in list(self.rooms.values()):
                try:
                    self._expire_peers(room)
                    if heartbeat and room.sessions:
                        self._publish_members(room)
                except Exception:
                    log.exception("presence upkeep of %s failed; will retry", room.namespace)
                try:
                    if (
                        room.dirty_since is not None
                        and now - room.dirty_since >= self.limits.snapshot_interval
                    ):
                        await self.snapshot(room)
                    if (
                        not room.sessions
                        and room.empty_since is not None
                        and now - room.empty_since >= self.limits.room_idle_seconds
                    ):
                        await self._unload(room)
                except Exception:
                    log.exception("maintenance of %s failed; will retry", room.namespace)

    # --- loading ----------------------------------------------------------------------

    def loaded(self, kind: docschema.DocKind, doc_id: uuid.UUID) -> Room | None:
        return self.rooms.get((kind, doc_id))

    async def open_room(self, kind: docschema.DocKind, doc_id: uuid.UUID) -> Room:
        """The live room of a document, loading it once however many callers ask at once."""
        key = (kind, doc_id)
        room = self.rooms.get(key)
        if room is not None:
            return room
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._loading[key] = pending
            self._early[key] = []
            channel = self._channel(kind, doc_id)
            try:
                # Subscribe before reading storage: an update committed after our read is
                # then certain to arrive on the bus (it is published after its commit).
                await self.bus.subscribe(channel, lambda envelope: self._on_document_message(key, envelope))
                room = await self._load(kind, doc_id)
            except BaseException as exc:
                self._early.pop(key, None)
                with contextlib.suppress(Exception):
                    await self.bus.unsubscribe(channel)
                pending.set_exception(exc)
                pending.exception()  # mark retrieved; the waiters re-raise it
                raise
            finally:
                self._loading.pop(key, None)
            self.rooms[key] = room
            self._peers[key] = RemotePeers()
            room.empty_since = time.monotonic()
            for envelope in self._early.pop(key, []):
                self._on_document_message(key, envelope)
            self._publish(room, ClusterMessage("hello"))
            pending.set_result(room)
            return room
        return await asyncio.shield(pending)

    async def _load(self, kind: docschema.DocKind, doc_id: uuid.UUID) -> Room:
        self.loads += 1
        loaded = await stored.load_document_and_access(self.db, resource_type=kind.value, resource_id=doc_id)
        if loaded is None:
            raise NotFound(f"{kind.value} not found")
        found, rules = loaded
        doc: Doc[Any] = Doc()
        room = Room(kind, doc_id, doc, self.transport, position=found.position, access=rules)
        if found.state is None:
            # A document created before the CRDT era: its JSON becomes its first update, once.
            async with self.db.session() as session:
                row: Loop | Song | None = await session.get(document_model(kind.value), doc_id)
            if row is None:
                raise NotFound(f"{kind.value} not found")
            first = initial_state(kind, _row_content(row))
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
                return await self._load(kind, doc_id)
            room.stored_bytes = len(first)
        else:
            doc.apply_update(found.state)
            room.stored_bytes = len(found.state)
        if found.updates:
            # One transaction for the whole log: half the cost of one per update (and far
            # cheaper than merge_updates, which grows superlinearly with the log).
            with doc.transaction():
                for _, update in found.updates:
                    doc.apply_update(update)
            room.stored_bytes += sum(len(update) for _, update in found.updates)
            room.position = max(room.position, found.updates[-1][0])
        room.persisted_version = room.version
        if found.updates:
            room.dirty_since = time.monotonic()  # fold the replayed log into a snapshot soon
        return room

    async def _unload(self, room: Room) -> None:
        async with room.snapshot_lock:
            if room.sessions or room.version != room.persisted_version:
                return
            self._close_room(room)

    def _close_room(self, room: Room) -> None:
        if room.closed:
            return
        room.closed = True
        key = (room.kind, room.doc_id)
        self.rooms.pop(key, None)
        self._peers.pop(key, None)
        self._members_dirty.discard(key)
        self._log_ahead_of_row.discard(key)
        room.close()
        if self.bus.state is not BusState.STOPPED:
            channel = self._channel(room.kind, room.doc_id)
            self.bus.drop(channel)
            self._spawn(self.bus.settle(channel), f"unsubscribe {room.namespace}")

    # --- persistence ------------------------------------------------------------------

    def _persist_then_relay(self, room: Room, delta: bytes, sender: Session | None) -> asyncio.Future[int]:
        """Queue ``delta`` for the durable log; relay it to the room once it is committed.

        Nothing waits here: a socket keeps reading while its edits are being committed, and
        edits committed in one batch are relayed together (``Room.queue_broadcast``). Once
        durable, the update is also published to the other instances.
        """
        room.stored_bytes += len(delta)
        # ``room.position`` moves only with ids read back from the log (see snapshot()): an
        # entry another process committed with a lower id may not have reached us yet.
        committed = self.update_log.submit(room.kind.value, room.doc_id, delta)

        def relay(future: asyncio.Future[int]) -> None:
            if future.cancelled() or future.exception() is not None:
                # Only at shutdown (the log retries database errors until they are durable).
                log.error("%s: an update could not be stored; not relayed", room.namespace)
                if sender is not None and sender.sid in room.sessions:
                    room.transport.send(
                        room.namespace,
                        [sender],
                        "error",
                        {"code": "storage_unavailable", "message": "your last edit could not be saved"},
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

    async def snapshot(self, room: Room) -> SnapshotOutcome:
        """Fold the log into the document row and refresh the JSON columns.

        The row is locked for the whole fold, so snapshots of one document by several
        instances take turns. If the row moved past what this room has seen (another
        instance stored it and trimmed the log), its state is merged into the room first:
        the CRDT merge is idempotent, so nothing stored by anyone is ever overwritten.
        Then the entries of the log after the row's position that the room does not hold
        are applied, so the new position only covers entries in the state.
        The fold is one ``write_steps`` transaction: on a SQLite file it holds the write
        lock only while its statements run, so the update log does not wait behind it.
        """
        async with room.snapshot_lock:
            started = time.perf_counter()
            if room.closed:
                return SnapshotOutcome.DELETED
            outcome, version, stored_bytes = await self.db.write_steps(self._fold_log_into_row(room))
            if outcome is not SnapshotOutcome.DELETED:
                try:
                    await self._trim_log(room)
                except Exception:  # the snapshot stands: readers skip folded entries anyway
                    log.warning(
                        "%s: folded log entries stay until the next snapshot", room.namespace, exc_info=True
                    )
            self._log_ahead_of_row.discard((room.kind, room.doc_id))
            self.read_cache.invalidate(room.kind.value, room.doc_id)
            self._record_snapshot(room, outcome)
            if outcome is SnapshotOutcome.DELETED:
                log.info("%s was deleted; dropping its room", room.namespace)
                await self._drop_deleted(room)
                return outcome
            if outcome is SnapshotOutcome.MERGED:
                log.info("%s: the row had moved (another instance stored it); merged it", room.namespace)
            room.persisted_version = version
            room.stored_bytes = stored_bytes
            # The next periodic snapshot is due one interval after this one, even if edits
            # kept arriving meanwhile (otherwise sustained editing snapshots every tick).
            room.dirty_since = None if room.version == version else time.monotonic()
            if self.on_snapshot is not None:
                self.on_snapshot(time.perf_counter() - started, room.stored_bytes)
            return outcome

    async def _trim_log(self, room: Room) -> None:
        """Delete the log entries the row now holds. SQLite: a short batch per transaction,
        so the update log's writer gets the one write lock between them. Postgres: in one
        statement, which does not hold up the log's inserts."""
        limit = stored.SQLITE_TRIM_BATCH if self.db.dialect == "sqlite" else None
        trim = functools.partial(
            stored.trim_document_log,
            resource_type=room.kind.value,
            resource_id=room.doc_id,
            up_to=room.position,
            limit=limit,
        )
        while await self.db.write_steps(trim()) == limit:
            pass

    def _fold_log_into_row(self, room: Room) -> Steps[tuple[SnapshotOutcome, int, int]]:
        """The statements of a snapshot (see ``snapshot``): its outcome, the room version it
        stored and the stored state's size."""
        kind, doc_id = room.kind.value, room.doc_id
        locked = yield from stored.lock_document_state(resource_type=kind, resource_id=doc_id)
        if locked is None:
            return SnapshotOutcome.DELETED, room.version, 0
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
        yield from stored.save_snapshot(
            resource_type=kind, resource_id=doc_id, state=state, position=position, columns=columns
        )
        return outcome, version, len(state)

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
                await self._drop_deleted(room)
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

    def _schedule_catch_up(self, room: Room, why: str) -> None:
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

        self._spawn(run(), f"catch-up {room.namespace}")

    async def _after_outage(self) -> None:
        """The bus is back: anything may have been missed meanwhile."""
        self.read_cache.clear()
        self._forget_name(None)
        rooms = list(self.rooms.values())
        for room in rooms:
            room.access = None  # joins ask the database until catch_up() reloads the rules
        if not rooms:
            return
        changed = 0
        for room in rooms:
            try:
                changed += await self.catch_up(room)
            except Exception:
                log.exception("catch-up of %s failed", room.namespace)
            if room.sessions:
                self._publish_members(room)
                self._publish_awareness_of_sessions(room)
        log.warning(
            "bus restored: %d rooms caught up from storage, %d stored updates were new here",
            len(rooms),
            changed,
        )

    # --- sockets ----------------------------------------------------------------------

    def join(self, room: Room, session: Session) -> None:
        # Every instance's members count: the room limit is cluster-wide.
        refusal = admission_refusal(
            [_admission_entry(room, sid, member) for sid, member in room.members.items()],
            identity=session.identity,
            can_write=session.role.can_write,
            max_clients=self.limits.max_clients_per_room,
            max_per_user=self.limits.max_connections_per_user,
        )
        if refusal is not None:
            raise RealtimeError("room_full", refusal)
        room.sessions[session.sid] = session
        room.members.add(session.sid, session.member)
        room.empty_since = None
        room.send_presence()
        self._members_changed(room)

    async def leave(self, room: Room, session: Session) -> None:
        if room.sessions.pop(session.sid, None) is None:
            return
        room.members.remove(session.sid)
        outgoing = self._awareness_out.pop(session.sid, None)
        if outgoing is not None and outgoing.timer is not None:
            outgoing.timer.cancel()
        if room.closed:
            return
        removal = room.awareness.remove_session(session.sid)
        if removal is not None:
            room.send_to_others(session.sid, "awareness-update", removal)
            self._publish(room, ClusterMessage("awareness-gone", {"sid": session.sid}))
        room.send_presence()
        self._members_changed(room)
        if not room.sessions:
            room.empty_since = time.monotonic()
            if room.version != room.persisted_version:
                try:
                    await self.snapshot(room)
                except Exception:
                    log.exception("snapshot of %s after the last client left failed", room.namespace)

    def client_update(self, room: Room, session: Session, update: bytes) -> None:
        """A ``sync-update`` (or a sync-step-1 reply) from a client: applied now, relayed to
        the others once durable."""
        if not session.role.can_write:
            raise RealtimeError("read_only", "you can view this document but not edit it")
        if len(update) > self.limits.max_update_bytes:
            raise RealtimeError(
                "update_too_large", f"an update may be at most {self.limits.max_update_bytes} bytes"
            )
        if room.stored_bytes + len(update) > self.limits.max_document_bytes:
            raise RealtimeError(
                "document_too_large", f"a document may be at most {self.limits.max_document_bytes} bytes"
            )
        if self.update_log.full:
            # Refused before it is applied: nothing half-done, and the sender is told.
            raise RealtimeError(
                "storage_backlog",
                "the server cannot store edits fast enough right now; this edit was not taken",
            )
        try:
            check_update_header(update)
        except MalformedPayload as exc:
            raise RealtimeError("malformed_update", f"not a valid Yjs update: {exc}") from None
        delta = room.apply_untrusted(update)
        if delta is not None:
            self.updates_applied += 1
            try:
                self._persist_then_relay(room, delta, session)
            except UpdateLogFull:  # checked above; only a race with another room could get here
                raise RealtimeError("storage_backlog", "the server cannot store edits right now") from None

    def client_awareness(self, room: Room, session: Session, update: bytes) -> None:
        relay = room.awareness.apply(session.sid, update, session.identity)
        if relay is not None:
            room.send_to_others(session.sid, "awareness-update", relay)
            self._queue_awareness(room, session.sid, relay)

    async def role_of(
        self,
        kind: docschema.DocKind,
        doc_id: uuid.UUID,
        *,
        user_id: uuid.UUID | None,
        share_token: str | None,
    ) -> Role | None:
        """The caller's role. A loaded room answers from its access rules (kept current by
        access changes announced on the bus, so only while the bus is up); only a share token
        that the rules do not already outrank is looked up."""
        room = self.loaded(kind, doc_id)
        rules = room.access if room is not None and self.bus.state is BusState.UP else None
        if rules is not None:
            role = rules.role(user_id)
            if role is not None or not share_token or rules.hidden:
                return role
        async with self.db.session() as session:
            if rules is None:
                rules = await load_access_rules(session, document_model(kind.value), doc_id)
            if rules is None:
                raise NotFound(f"{kind.value} not found")
            return await role_with_share(
                session,
                rules,
                resource_type=kind.value,
                resource_id=doc_id,
                user_id=user_id,
                share_token=share_token,
            )

    async def shown_name(self, user_id: uuid.UUID) -> str | None:
        """How the user appears to collaborators; None if the account no longer exists."""
        trusted = self.bus.state is BusState.UP
        name = self._shown_names.get(user_id) if trusted else None
        if name is not None:
            return name
        lookup = self._names_wanted.get(user_id)
        if lookup is None:
            if not self._names_wanted:
                asyncio.get_running_loop().call_soon(self._read_wanted_names)
            lookup = self._names_wanted[user_id] = asyncio.get_running_loop().create_future()
        return await asyncio.shield(lookup)

    def _read_wanted_names(self) -> None:
        wanted, self._names_wanted = self._names_wanted, {}
        ids = list(wanted)
        for start in range(0, len(ids), MAX_NAMES_PER_READ):  # bound the query's parameters
            chunk = {user_id: wanted[user_id] for user_id in ids[start : start + MAX_NAMES_PER_READ]}
            task = asyncio.ensure_future(self._read_names(chunk))
            self._names_reads.add(task)  # owned until done
            task.add_done_callback(self._names_reads.discard)

    async def _read_names(self, wanted: dict[uuid.UUID, asyncio.Future[str | None]]) -> None:
        generation = self._names_generation
        try:
            names = await shown_names(self.db, list(wanted))
        except BaseException as exc:
            for future in wanted.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: each waiter re-raises it
            if not isinstance(exc, Exception):
                raise
            return
        # Not kept if a user changed meanwhile (the read may predate the change).
        keep = self.bus.state is BusState.UP and generation == self._names_generation
        for user_id, future in wanted.items():
            name = names.get(user_id)
            if name is not None and keep:
                self._shown_names[user_id] = name
            if not future.done():
                future.set_result(name)

    def user_changed(self, user_id: uuid.UUID) -> None:
        """A user was renamed or deleted: no instance shows the old name or admits them."""
        self._forget_name(user_id)
        if self.bus.state is not BusState.STOPPED:
            message = ClusterMessage("user-changed", {"id": str(user_id)})
            self.bus.publish(cluster.cache_channel(self.prefix), message.encode())

    def _forget_name(self, user_id: uuid.UUID | None) -> None:
        """Drop one user's cached name (None: everyone's)."""
        self._names_generation += 1
        if user_id is None:
            self._shown_names.clear()
        else:
            self._shown_names.pop(user_id, None)

    # --- REST -------------------------------------------------------------------------

    async def read_content(
        self, kind: docschema.DocKind, doc_id: uuid.UUID, *, stale: bool
    ) -> dict[str, Any] | None:
        """Content newer than the SQL columns, or None when the columns are current.

        ``stale`` says the update log holds entries not yet folded into the row (another
        instance is editing, or this one crashed): then the document is opened to read them.
        """
        room = self.loaded(kind, doc_id)
        if room is None and stale:
            room = await self.open_room(kind, doc_id)
        return room.content() if room is not None else None

    async def write_content(
        self, kind: docschema.DocKind, doc_id: uuid.UUID, content: dict[str, Any], fields: set[str]
    ) -> dict[str, Any]:
        """A REST write: becomes one CRDT update, relayed live, then snapshotted at once."""
        room = await self.open_room(kind, doc_id)
        if self.update_log.full:
            raise RealtimeError("storage_backlog", "the server cannot store edits right now")
        room_left = self.limits.max_document_bytes - room.stored_bytes
        delta = room.apply_content(content, fields, max_growth=room_left)
        if delta is not None:
            await asyncio.shield(self._persist_then_relay(room, delta, None))
            await self.snapshot(room)
        return room.content()

    async def document_deleted(self, kind: docschema.DocKind, doc_id: uuid.UUID) -> None:
        """The row was deleted (REST): every instance drops the room and its sockets."""
        self.read_cache.invalidate(kind.value, doc_id)
        self.bus.publish(self._channel(kind, doc_id), ClusterMessage("deleted").encode())
        room = self.loaded(kind, doc_id)
        if room is not None:
            await self._drop_deleted(room)

    async def _drop_deleted(self, room: Room) -> None:
        self._close_room(room)
        for session in list(room.sessions.values()):
            await self.transport.disconnect(
                room.namespace, session, "document_deleted", f"this {room.kind.value} was deleted"
            )

    async def access_changed(self, kind: docschema.DocKind, doc_id: uuid.UUID) -> None:
        """Access rules changed (visibility, shares, collaborators): every instance re-checks
        its sockets' roles, and no read cache keeps the old answer."""
        self.read_cache.invalidate(kind.value, doc_id)
        self.bus.publish(self._channel(kind, doc_id), ClusterMessage("access").encode())
        await self._recheck_roles(kind, doc_id)

    async def _recheck_roles(self, kind: docschema.DocKind, doc_id: uuid.UUID) -> None:
        room = self.loaded(kind, doc_id)
        if room is None:
            return
        async with self.db.session() as db_session:
            rules = await load_access_rules(db_session, document_model(kind.value), doc_id)
            room.access = rules
            roles = {
                sid: (
                    await role_with_share(
                        db_session,
                        rules,
                        resource_type=kind.value,
                        resource_id=doc_id,
                        user_id=s.user_id,
                        share_token=s.share_token,
                    )
                    if rules is not None
                    else None
                )
                for sid, s in list(room.sessions.items())
            }
        for sid, role in roles.items():
            session = room.sessions.get(sid)
            if session is None or role == session.role:
                continue
            if role is None:
                await self.transport.disconnect(
                    room.namespace,
                    session,
                    "access_revoked",
                    f"you no longer have access to this {kind.value}",
                )
            else:
                session.role = role
                room.members.add(sid, session.member)
                room.transport.send(room.namespace, [session], "role-changed", {"role": role.value})
        room.send_presence()
        self._members_changed(room)

    async def broadcast(
        self, kind: docschema.DocKind, doc_id: uuid.UUID, event: str, data: Any, audience: Audience = EVERYONE
    ) -> None:
        """Deliver a named event (e.g. ``comment``) to the sockets of the document that
        ``audience`` admits (default: every one), on every instance. ``data`` must be
        JSON-serializable."""
        header: dict[str, Any] = {"event": event, "data": data}
        if audience is not EVERYONE:
            header["audience"] = audience.as_json()
        self.bus.publish(self._channel(kind, doc_id), ClusterMessage("event", header).encode())
        room = self.loaded(kind, doc_id)
        if room is not None:
            room.send_to_others(None, event, data, audience)

    async def presence(self, kind: docschema.DocKind, doc_id: uuid.UUID) -> list[dict[str, Any]]:
        """Members of every instance. A document not loaded here is opened, and the other
        instances answer its ``hello`` within one bus round trip (waited for briefly)."""
        room = self.loaded(kind, doc_id)
        if room is None:
            if isinstance(self.bus, MemoryBus):
                return []  # a single instance: not loaded means nobody is connected
            room = await self.open_room(kind, doc_id)
            if self.bus.state is BusState.UP:
                await asyncio.sleep(self.limits.presence_roll_call)
        return room.members.as_json()

    # --- the bus ----------------------------------------------------------------------

    def _channel(self, kind: docschema.DocKind, doc_id: uuid.UUID) -> str:
        return cluster.document_channel(self.prefix, kind.value, doc_id)

    def _publish(self, room: Room, message: ClusterMessage) -> None:
        channel = self._channel(room.kind, room.doc_id)
        # One instance alone (the embedded default): nothing to encode for nobody.
        if self.bus.state is not BusState.STOPPED and self.bus.reaches_others(channel):
            self.bus.publish(channel, message.encode())

    def _publish_invalidation(self, kind: str, doc_id: uuid.UUID) -> None:
        if self.bus.state is not BusState.STOPPED:
            message = ClusterMessage("invalidate", {"kind": kind, "id": str(doc_id)})
            self.bus.publish(cluster.cache_channel(self.prefix), message.encode())

    def _on_cache_message(self, envelope: Envelope) -> None:
        message = ClusterMessage.decode(envelope.data)
        if message.kind == "invalidate":
            self.read_cache.invalidate_local(str(message.header["kind"]), uuid.UUID(message.header["id"]))
        elif message.kind == "user-changed":
            self._forget_name(uuid.UUID(message.header["id"]))
        if envelope.after_gap:  # an invalidation may have been lost
            self.read_cache.clear()
            self._forget_name(None)

    def _on_document_message(self, key: RoomKey, envelope: Envelope) -> None:
        room = self.rooms.get(key)
        if room is None:
            early = self._early.get(key)
            if early is not None:  # still loading: applied once the room exists
                early.append(envelope)
            return
        message = ClusterMessage.decode(envelope.data)
        handler = self._message_handlers.get(message.kind)
        if handler is not None:
            handler(room, envelope.origin, message)
        if envelope.after_gap:
            self._schedule_catch_up(room, f"a gap in the messages of instance {envelope.origin[:8]}")

    def _remote_update(self, room: Room, origin: str, message: ClusterMessage) -> None:
        try:
            delta = room.apply(message.body)
        except Exception:
            log.exception("%s: a malformed update from instance %s", room.namespace, origin[:8])
            return
        entry_id = message.header.get("id")
        if type(entry_id) is int:
            room.logged_ids.add(entry_id)
        if delta is not None:
            room.stored_bytes += len(delta)
            room.queue_broadcast(delta, None)

    def _remote_awareness(self, room: Room, origin: str, message: ClusterMessage) -> None:
        owner = cluster.pseudo_sid(origin, str(message.header.get("sid")))
        peers = self._peers[(room.kind, room.doc_id)]
        peers.awareness.setdefault(origin, set()).add(owner)
        peers.touch(origin)
        for update in cluster.read_awareness(message):
            try:
                relay = room.awareness.apply(owner, update)
            except ValueError:
                continue
            if relay is not None:
                room.send_to_others(None, "awareness-update", relay)

    def _remote_awareness_gone(self, room: Room, origin: str, message: ClusterMessage) -> None:
        owner = cluster.pseudo_sid(origin, str(message.header.get("sid")))
        self._peers[(room.kind, room.doc_id)].awareness.get(origin, set()).discard(owner)
        removal = room.awareness.remove_session(owner)
        if removal is not None:
            room.send_to_others(None, "awareness-update", removal)

    def _remote_members(self, room: Room, origin: str, message: ClusterMessage) -> None:
        peers = self._peers[(room.kind, room.doc_id)]
        peers.touch(origin)
        members = {cluster.pseudo_sid(origin, sid): m for sid, m in cluster.read_members(message).items()}
        before = peers.members.get(origin, set())
        changed = False
        for gone in before - members.keys():
            room.members.remove(gone)
            changed = True
        for pseudo, member in members.items():
            if pseudo not in before:
                changed = True
            room.members.add(pseudo, member)
        if members:
            peers.members[origin] = set(members)
        else:
            peers.forget(origin)
        if changed:
            room.send_presence()

    def _remote_hello(self, room: Room, origin: str, message: ClusterMessage) -> None:
        if room.sessions:
            self._publish_members(room)
            self._publish_awareness_of_sessions(room)

    def _remote_deleted(self, room: Room, origin: str, message: ClusterMessage) -> None:
        self.read_cache.invalidate_local(room.kind.value, room.doc_id)
        self._spawn(self._drop_deleted(room), f"deleted {room.namespace}")

    def _remote_access(self, room: Room, origin: str, message: ClusterMessage) -> None:
        self.read_cache.invalidate_local(room.kind.value, room.doc_id)
        self._spawn(self._recheck_roles(room.kind, room.doc_id), f"access {room.namespace}")

    def _remote_event(self, room: Room, origin: str, message: ClusterMessage) -> None:
        try:
            audience = Audience.from_json(message.header.get("audience"))
        except ValueError:  # never delivered to everyone by mistake
            log.error("%s: an event from instance %s with a malformed audience", room.namespace, origin[:8])
            return
        room.send_to_others(None, str(message.header["event"]), message.header.get("data"), audience)

    def _members_changed(self, room: Room) -> None:
        """Publish this instance's members of ``room`` soon (a join storm sends one message)."""
        key = (room.kind, room.doc_id)
        if key in self._members_dirty:
            return
        self._members_dirty.add(key)

        def publish() -> None:
            self._members_dirty.discard(key)
            if not room.closed:
                self._publish_members(room)

        asyncio.get_running_loop().call_later(0.01, publish)

    def _publish_members(self, room: Room) -> None:
        local = {sid: session.member for sid, session in room.sessions.items()}
        self._publish(room, cluster.members_message(local))

    def _publish_awareness_of_sessions(self, room: Room) -> None:
        for sid in room.sessions:
            encoded = room.awareness.encode_session(sid)
            if encoded is not None:
                self._publish(room, cluster.awareness_message(sid, [encoded]))

    def _queue_awareness(self, room: Room, sid: str, update: bytes) -> None:
        """Publish a session's awareness, at most one bus message per ``awareness_interval``
        (what arrives meanwhile travels together in the next one)."""
        outgoing = self._awareness_out.get(sid)
        if outgoing is None:
            outgoing = self._awareness_out[sid] = _AwarenessOut(room, [])
        outgoing.pending.append(update)
        if outgoing.timer is not None:
            return
        wait = outgoing.last_sent + self.limits.awareness_interval - time.monotonic()
        if wait <= 0:
            self._flush_awareness(sid)
        else:
            outgoing.timer = asyncio.get_running_loop().call_later(wait, self._flush_awareness, sid)

    def _flush_awareness(self, sid: str) -> None:
        outgoing = self._awareness_out.get(sid)
        if outgoing is None:
            return
        outgoing.timer = None
        pending, outgoing.pending = outgoing.pending, []
        if pending and not outgoing.room.closed:
            outgoing.last_sent = time.monotonic()
            self._publish(outgoing.room, cluster.awareness_message(sid, pending))

    def _expire_peers(self, room: Room) -> None:
        """Forget instances not heard from within the presence timeout (crashed, cut off)."""
        peers = self._peers.get((room.kind, room.doc_id))
        if peers is None:
            return
        for origin in peers.expired(self.limits.presence_timeout):
            members, owners = peers.forget(origin)
            for pseudo in members:
                room.members.remove(pseudo)
            for owner in owners:
                removal = room.awareness.remove_session(owner)
                if removal is not None:
                    room.send_to_others(None, "awareness-update", removal)
            log.info(
                "%s: instance %s went silent; dropped its %d members",
                room.namespace,
                origin[:8],
                len(members),
            )
            room.send_presence()


def _admission_entry(room: Room, sid: str, member: Member) -> tuple[str, bool]:
    """``(identity, can_write)`` of a room member, local or on another instance."""
    local = room.sessions.get(sid)
    if local is not None:
        return local.identity, local.role.can_write
    identity = f"user:{member.user_id}" if member.user_id else f"guest:{sid}"
    return identity, member.role in (Role.OWNER.value, Role.EDITOR.value)


def _row_content(row: Loop | Song) -> dict[str, Any]:
    """The content mirrored in a row's columns (the inverse of :func:`content_columns`)."""
    return {key: getattr(row, column) for key, column in _COLUMNS.items() if hasattr(row, column)}
