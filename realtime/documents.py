"""The document service: every loop and song as a live CRDT document.

It is the single source of truth for content. Sockets (``realtime.sockets``) and REST both
go through it: a REST write becomes a CRDT update that live collaborators receive, a REST
read sees every update the server has relayed. Ownership, visibility and counters stay in SQL.

Durability: an update is applied in memory, appended to the durable log (group commit),
and only then relayed, so a crash never loses an update any client has received. Snapshots
fold the log into the document row every ``snapshot_interval`` while dirty, when the last
client leaves, and at shutdown; idle rooms are then unloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pycrdt import Doc

from realtime import docschema
from realtime.errors import RealtimeError
from realtime.read_cache import ReadCache
from realtime.rooms import Room, RoomTransport, Session
from storage import documents as stored
from storage.access import Role, resolve_role
from storage.database import Database
from storage.errors import NotFound
from storage.models import Loop, Song
from storage.update_log import UpdateLog

log = logging.getLogger(__name__)

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
    max_update_bytes: int = 256 * 1024
    max_document_bytes: int = 8 * 1024 * 1024
    max_clients_per_room: int = 64
    max_messages_per_second: int = 100
    snapshot_interval: float = 10.0
    room_idle_seconds: float = 30.0


class DocumentService:
    """Loads, edits, persists and unloads live documents."""

    def __init__(self, db: Database, update_log: UpdateLog, limits: RealtimeLimits) -> None:
        self.db = db
        self.update_log = update_log
        self.limits = limits
        self.rooms: dict[tuple[docschema.DocKind, uuid.UUID], Room] = {}
        self._loading: dict[tuple[docschema.DocKind, uuid.UUID], asyncio.Future[Room]] = {}
        self._transport: RoomTransport | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self.loads = 0  # documents loaded from storage (a join storm loads once)
        self.read_cache = ReadCache()

    # --- lifecycle --------------------------------------------------------------------

    def attach_transport(self, transport: RoomTransport) -> None:
        self._transport = transport

    @property
    def transport(self) -> RoomTransport:
        if self._transport is None:
            raise RuntimeError("DocumentService has no transport attached")
        return self._transport

    async def start(self) -> None:
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
        self.rooms.clear()

    async def __aenter__(self) -> DocumentService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _maintain(self) -> None:
        """Periodic snapshots of dirty rooms, unloading of idle ones. Logs and keeps going."""
        tick = min(1.0, self.limits.snapshot_interval / 2)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for room in list(self.rooms.values()):
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
            try:
                room = await self._load(kind, doc_id)
            except BaseException as exc:
                pending.set_exception(exc)
                pending.exception()  # mark retrieved; the waiters re-raise it
                raise
            finally:
                self._loading.pop(key, None)
            self.rooms[key] = room
            room.empty_since = time.monotonic()
            pending.set_result(room)
            return room
        return await asyncio.shield(pending)

    async def _load(self, kind: docschema.DocKind, doc_id: uuid.UUID) -> Room:
        self.loads += 1
        async with self.db.session() as session:
            found = await stored.load_document(session, resource_type=kind.value, resource_id=doc_id)
            row = None
            if found is not None and found.state is None:
                row = await session.get(stored.document_model(kind.value), doc_id)
        if found is None:
            raise NotFound(f"{kind.value} not found")
        doc = Doc()
        room = Room(kind, doc_id, doc, self.transport, position=found.position)
        if found.state is None:
            # A document created before the CRDT era: its JSON becomes its first update, once.
            assert row is not None
            first = initial_state(kind, _row_content(row))
            doc.apply_update(first)
            async with self.db.write_session() as session:
                created = await stored.save_snapshot(
                    session,
                    resource_type=kind.value,
                    resource_id=doc_id,
                    state=first,
                    position=found.position,
                    columns={},
                    only_if_no_state=True,
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
        self.rooms.pop((room.kind, room.doc_id), None)
        room.doc.unobserve(room._subscription)

    # --- persistence ------------------------------------------------------------------

    def _persist_then_relay(self, room: Room, delta: bytes, sender: Session | None) -> asyncio.Future[int]:
        """Queue ``delta`` for the durable log; relay it to the room once it is committed.

        Nothing waits here: a socket keeps reading while its edits are being committed, and
        edits committed in one batch are relayed together (``Room.queue_broadcast``).
        """
        room.stored_bytes += len(delta)
        # ``room.position`` moves only with ids read back from the log (see snapshot()): an
        # entry another process committed with a lower id may not have reached us yet.
        committed = self.update_log.submit(room.kind.value, room.doc_id, delta)

        def relay(future: asyncio.Future[int]) -> None:
            if future.cancelled() or future.exception() is not None:
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
                room.queue_broadcast(delta, sender.sid if sender is not None else None)

        committed.add_done_callback(relay)
        return committed

    async def snapshot(self, room: Room) -> None:
        """Fold the log into the document row and refresh the JSON columns.

        Re-reads the log after ``room.position`` (our own entries included: re-applying them
        is a no-op) so the new position only covers entries known to be in the state.
        """
        async with room.snapshot_lock:
            async with self.db.session() as session:
                missing = await stored.updates_after(
                    session, resource_type=room.kind.value, resource_id=room.doc_id, position=room.position
                )
            for entry_id, update in missing:  # written by another process; idempotent here
                delta = room.apply(update)
                room.position = max(room.position, entry_id)
                if delta is not None:
                    room.queue_broadcast(delta, None)
            version, position = room.version, room.position
            state = room.doc.get_update()
            columns = content_columns(room.content())
            columns["updated_at"] = datetime.fromtimestamp(room.last_edit_at, UTC)
            async with self.db.write_session() as session:
                saved = await stored.save_snapshot(
                    session,
                    resource_type=room.kind.value,
                    resource_id=room.doc_id,
                    state=state,
                    position=position,
                    columns=columns,
                )
            self.read_cache.invalidate(room.kind.value, room.doc_id)
            if not saved:
                log.info("%s was deleted; dropping its room", room.namespace)
                self._close_room(room)
                return
            room.persisted_version = version
            room.stored_bytes = len(state)
            if room.version == version:
                room.dirty_since = None

    # --- sockets ----------------------------------------------------------------------

    def join(self, room: Room, session: Session) -> None:
        if len(room.sessions) >= self.limits.max_clients_per_room:
            raise RealtimeError("room_full", f"this document already has {len(room.sessions)} connections")
        room.sessions[session.sid] = session
        room.members.add(session.sid, session.member)
        room.empty_since = None
        room.send_presence()

    async def leave(self, room: Room, session: Session) -> None:
        if room.sessions.pop(session.sid, None) is None:
            return
        room.members.remove(session.sid)
        if room.closed:
            return
        removal = room.awareness.remove_session(session.sid)
        if removal is not None:
            room.send_to_others(session.sid, "awareness-update", removal)
        room.send_presence()
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
        try:
            delta = room.apply(update)
        except Exception as exc:  # pycrdt raises ValueError, sometimes others, on junk
            raise RealtimeError("malformed_update", "not a valid Yjs update") from exc
        if delta is not None:
            self._persist_then_relay(room, delta, session)

    def client_awareness(self, room: Room, session: Session, update: bytes) -> None:
        relay = room.awareness.apply(session.sid, update)
        if relay is not None:
            room.send_to_others(session.sid, "awareness-update", relay)

    async def role_of(
        self,
        kind: docschema.DocKind,
        doc_id: uuid.UUID,
        *,
        user_id: uuid.UUID | None,
        share_token: str | None,
    ) -> Role | None:
        async with self.db.session() as session:
            document = await session.get(stored.document_model(kind.value), doc_id)
            if document is None:
                raise NotFound(f"{kind.value} not found")
            return await resolve_role(session, document, user_id=user_id, share_token=share_token)

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
        delta = room.apply_content(content, fields)
        if delta is not None:
            await asyncio.shield(self._persist_then_relay(room, delta, None))
            await self.snapshot(room)
        return room.content()

    async def document_deleted(self, kind: docschema.DocKind, doc_id: uuid.UUID) -> None:
        self.read_cache.invalidate(kind.value, doc_id)
        room = self.loaded(kind, doc_id)
        if room is None:
            return
        self._close_room(room)
        for session in list(room.sessions.values()):
            await self.transport.disconnect(
                room.namespace, session, "document_deleted", f"this {kind.value} was deleted"
            )

    async def access_changed(self, kind: docschema.DocKind, doc_id: uuid.UUID) -> None:
        """Re-check every connected session's role (visibility, shares, collaborators)."""
        room = self.loaded(kind, doc_id)
        if room is None:
            return
        async with self.db.session() as db_session:
            document = await db_session.get(stored.document_model(kind.value), doc_id)
            roles = {
                sid: (
                    await resolve_role(db_session, document, user_id=s.user_id, share_token=s.share_token)
                    if document is not None
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

    async def broadcast(self, kind: docschema.DocKind, doc_id: uuid.UUID, event: str, data: Any) -> None:
        """Send a named event (e.g. ``comment``) to every socket of the document's room.

        On this instance: only a loaded room has sockets; nothing to do otherwise.
        """
        room = self.loaded(kind, doc_id)
        if room is not None and room.sessions:
            self.transport.send(room.namespace, list(room.sessions.values()), event, data)

    def presence(self, kind: docschema.DocKind, doc_id: uuid.UUID) -> list[dict[str, Any]]:
        room = self.loaded(kind, doc_id)
        return room.members.as_json() if room is not None else []


def _row_content(row: Loop | Song) -> dict[str, Any]:
    """The content mirrored in a row's columns (the inverse of :func:`content_columns`)."""
    return {key: getattr(row, column) for key, column in _COLUMNS.items() if hasattr(row, column)}
