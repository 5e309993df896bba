"""The document service: every loop and song as a live CRDT document, behind one façade.

It is the single source of truth for content. The Socket.IO edge (``realtime.ysocketio.server``) and
REST both go through it: a REST write becomes a CRDT update that live collaborators receive,
a REST read sees every update the server has relayed. Ownership, visibility and counters stay
in SQL. The work is done by parts with one job each, wired here:

- ``realtime.registry``: which rooms are live, loaded once, unloaded when idle; the
  maintenance tick;
- ``realtime.persistence``: loading, persist-then-relay, snapshots (the fold), trim, catch-up;
- ``realtime.relay``: the bus (each room's channel, the messages of other instances);
- ``presence.cluster``: members and cursors across instances;
- ``realtime.access``: roles, and their re-check when access rules change;
- ``realtime.names``: how users appear to collaborators.

The live edit path stays short: ``client_update`` applies the update to the room, hands it to
the update log and returns; the log's commit relays it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bus import Bus, BusState, MemoryBus
from music.kinds import DocKind
from music.lib0 import MalformedPayload
from music.roles import Role
from music.yjs_checks import check_update_header
from presence.cluster import ClusterPresence
from presence.members import Member
from realtime.access import AccessControl
from realtime.admission import admission_refusal
from realtime.cluster import ClusterMessage
from realtime.errors import ErrorCode, RealtimeError
from realtime.history import HistoryPolicy, VersionHistory
from realtime.names import ShownNames
from realtime.persistence import RoomPersistence, SnapshotOutcome
from realtime.read_cache import ReadCache
from realtime.registry import RoomRegistry
from realtime.relay import ClusterRelay
from realtime.rooms import EVERYONE, Audience, Room, RoomKey, RoomTransport, Session
from realtime.tasks import OwnedTasks
from storage.database import Database
from storage.errors import Forbidden, NotFound
from storage.update_log import UpdateLog, UpdateLogFull

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RealtimeLimits:
    """Bounds and timings of live documents. Those without a default are settings of the same
    name (their defaults are the settings': the composition root builds them from ``Settings``,
    tests too)."""

    max_update_bytes: int
    max_document_bytes: int
    max_clients_per_room: int
    max_connections_per_user: int
    max_messages_per_second: int
    snapshot_interval: float
    snapshot_quiet_interval: float
    room_idle_seconds: float
    presence_timeout: float  # a silent instance's members and cursors vanish after it
    read_cache_ttl: float
    socket_connect_timeout: float  # seconds an Engine.IO session may go without a namespace
    # The version history (see realtime/history.py).
    history_version_interval_seconds: float
    history_retention_days: int
    history_max_versions: int
    history_pack_after_seconds: float
    awareness_interval: float = 0.05  # at most one awareness message a client per this, on the bus
    presence_roll_call: float = 0.2  # how long REST presence waits for other instances' answers


@dataclass(frozen=True)
class ContentWrite:
    """What a REST write of content left: the document's content, and its row as the write
    stored it (every column but the Yjs state; None when the content was already so)."""

    content: dict[str, Any]
    row: Any | None


class DocumentService:
    """Loads, edits, persists and unloads live documents (see the module docstring)."""

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
        self.tasks = OwnedTasks()
        # The relay publishes from now on; it receives once wired below (most parts publish
        # through it, and it hands what it receives to them).
        self.relay = ClusterRelay(self.bus, channel_prefix, self.tasks)
        self.read_cache = ReadCache(
            ttl=limits.read_cache_ttl,
            on_invalidate=self.relay.publish_invalidation,
            trusted=lambda: self.bus.state is BusState.UP,
        )
        self.names = ShownNames(db, self.bus, ttl=limits.read_cache_ttl)
        self.cluster_presence: ClusterPresence[Room] = ClusterPresence(
            self.relay.publish_presence,
            timeout=limits.presence_timeout,
            awareness_interval=limits.awareness_interval,
        )
        self.persistence = RoomPersistence(db, update_log, self.read_cache, self.relay.publish, self.tasks)
        self.registry = RoomRegistry(
            self.persistence,
            self.relay,
            self.cluster_presence,
            snapshot_interval=limits.snapshot_interval,
            quiet_interval=limits.snapshot_quiet_interval,
            idle_seconds=limits.room_idle_seconds,
        )
        self.access = AccessControl(db, self.bus, self.registry, self.cluster_presence)
        self.persistence.on_deleted = self.registry.drop_deleted
        self.history = VersionHistory(
            self,
            db,
            self.tasks,
            HistoryPolicy(
                limits.history_version_interval_seconds,
                limits.history_retention_days,
                limits.history_max_versions,
                limits.history_pack_after_seconds,
            ),
        )
        self.persistence.on_folded = self.history.folded
        self.relay.wire(
            rooms=self.registry.rooms,
            drop_deleted=self.registry.drop_deleted,
            recheck_roles=self.access.recheck_roles,
            persistence=self.persistence,
            presence=self.cluster_presence,
            names=self.names,
            read_cache=self.read_cache,
        )
        self.rooms: dict[RoomKey, Room] = self.registry.rooms
        # The live edit path calls these once per message: bound once here, so a message
        # costs no more lookups than when this class did everything itself.
        self._persist_then_relay = self.persistence.persist_then_relay
        self._queue_awareness = self.cluster_presence.queue_awareness
        self.deliveries = 0  # sync-update messages handed to a recipient's transport (the transport counts)
        self.updates_applied = 0  # client updates that changed a document
        # Told of every applied edit (kind, id, editor; None for a share link): events/.
        self.on_edit: Callable[[DocKind, uuid.UUID, uuid.UUID | None], None] | None = None

    # --- lifecycle --------------------------------------------------------------------

    def attach_transport(self, transport: RoomTransport) -> None:
        self.registry.attach_transport(transport)

    @property
    def transport(self) -> RoomTransport:
        return self.registry.transport

    async def start(self) -> None:
        await self.relay.start()
        self.registry.start()
        self.history.start()

    async def stop(self) -> None:
        """Flush every dirty document (the database must still be open), close every room,
        end every background task."""
        await self.registry.stop()
        self.history.stop()
        await self.tasks.cancel_all()
        self.rooms.clear()
        await self.relay.stop()

    async def __aenter__(self) -> DocumentService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- counters (metrics, tests) ----------------------------------------------------

    @property
    def loads(self) -> int:
        """Documents loaded from storage (a join storm loads once)."""
        return self.persistence.loads

    @property
    def updates_relayed(self) -> int:
        """Updates relayed to their room once durable."""
        return self.persistence.updates_relayed

    @property
    def catch_ups(self) -> int:
        return self.persistence.catch_ups

    @property
    def snapshots(self) -> list[tuple[RoomKey, float, SnapshotOutcome]]:
        """Recent snapshots: ``(room key, monotonic time, outcome)``."""
        return self.persistence.snapshots

    @property
    def on_snapshot(self) -> Callable[[float, int], None] | None:
        """Called with (seconds, stored bytes) after each snapshot (metrics)."""
        return self.persistence.on_snapshot

    @on_snapshot.setter
    def on_snapshot(self, callback: Callable[[float, int], None] | None) -> None:
        self.persistence.on_snapshot = callback

    # --- rooms ------------------------------------------------------------------------

    def loaded(self, kind: DocKind, doc_id: uuid.UUID) -> Room | None:
        return self.rooms.get((kind, doc_id))

    async def open_room(self, kind: DocKind, doc_id: uuid.UUID) -> Room:
        """The live room of a document, loading it once however many callers ask at once."""
        return await self.registry.open_room(kind, doc_id)

    async def snapshot(self, room: Room) -> SnapshotOutcome:
        """Fold the log into the document row now (see ``RoomPersistence.snapshot``)."""
        return await self.persistence.snapshot(room)

    async def catch_up(self, room: Room) -> int:
        """Bring a room up to date from the row and the log; how many stored pieces were new."""
        return await self.persistence.catch_up(room)

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
            raise RealtimeError(ErrorCode.ROOM_FULL, refusal)
        room.sessions[session.sid] = session
        room.empty_since = None
        self.cluster_presence.joined(room, session.sid, session.member)

    async def leave(self, room: Room, session: Session) -> None:
        if room.sessions.pop(session.sid, None) is None:
            return
        self.cluster_presence.left(room, session.sid)
        if room.closed:
            return
        if not room.sessions:
            room.empty_since = time.monotonic()
            if room.version != room.persisted_version:
                try:
                    await self.persistence.snapshot(room)
                except Exception:
                    log.exception("snapshot of %s after the last client left failed", room.namespace)
                else:
                    self.history.last_left(room)

    def client_update(self, room: Room, session: Session, update: bytes) -> asyncio.Future[int] | None:
        """A ``sync-update`` (or a sync-step-1 reply) from a client: applied now, relayed to
        the others once durable. Returns the future of its log entry (None: nothing changed);
        the wires never wait on it, the binary document API does."""
        if not session.role.can_write:
            raise RealtimeError(ErrorCode.READ_ONLY, "you can view this document but not edit it")
        if len(update) > self.limits.max_update_bytes:
            raise RealtimeError(
                ErrorCode.UPDATE_TOO_LARGE, f"an update may be at most {self.limits.max_update_bytes} bytes"
            )
        if room.stored_bytes + len(update) > self.limits.max_document_bytes:
            raise RealtimeError(
                ErrorCode.DOCUMENT_TOO_LARGE,
                f"a document may be at most {self.limits.max_document_bytes} bytes",
            )
        if self.update_log.full:
            # Refused before it is applied: nothing half-done, and the sender is told.
            raise RealtimeError(
                ErrorCode.STORAGE_BACKLOG,
                "the server cannot store edits fast enough right now; this edit was not taken",
            )
        try:
            check_update_header(update)
        except MalformedPayload as exc:
            raise RealtimeError(ErrorCode.MALFORMED_UPDATE, f"not a valid Yjs update: {exc}") from None
        delta = room.apply_untrusted(update)
        if delta is None:
            return None
        self.updates_applied += 1
        if self.on_edit is not None:
            self.on_edit(room.kind, room.doc_id, session.user_id)
        try:
            return self._persist_then_relay(room, delta, session)
        except UpdateLogFull:  # checked above; only a race with another room could get here
            raise RealtimeError(
                ErrorCode.STORAGE_BACKLOG, "the server cannot store edits right now"
            ) from None

    def client_awareness(self, room: Room, session: Session, update: bytes) -> None:
        relay = room.awareness.apply(session.sid, update, session.identity)
        if relay is not None:
            room.send_to_others(session.sid, "awareness-update", relay)
            self._queue_awareness(room, session.sid, relay)

    async def role_of(
        self,
        kind: DocKind,
        doc_id: uuid.UUID,
        *,
        user_id: uuid.UUID | None,
        share_token: str | None,
    ) -> Role | None:
        """The caller's role (see ``AccessControl.role_of``); NotFound if no such document."""
        return await self.access.role_of(kind, doc_id, user_id=user_id, share_token=share_token)

    async def shown_name(self, user_id: uuid.UUID) -> str | None:
        """How the user appears to collaborators; None if the account no longer exists."""
        return await self.names.shown_name(user_id)

    def user_changed(self, user_id: uuid.UUID) -> None:
        """A user was renamed or deleted: no instance shows the old name or admits them."""
        self.names.forget(user_id)
        self.relay.publish_user_changed(user_id)

    # --- REST -------------------------------------------------------------------------

    async def read_content(self, kind: DocKind, doc_id: uuid.UUID, *, stale: bool) -> dict[str, Any] | None:
        """Content newer than the SQL columns, or None when the columns are current.

        ``stale`` says the update log holds entries not yet folded into the row (another
        instance is editing, or this one crashed): then the document is opened to read them.
        """
        room = self.loaded(kind, doc_id)
        if room is None and stale:
            room = await self.open_room(kind, doc_id)
        return room.content() if room is not None else None

    async def write_content(
        self,
        kind: DocKind,
        doc_id: uuid.UUID,
        content: dict[str, Any],
        fields: set[str],
        *,
        user_id: uuid.UUID,
        owner_only: bool = False,
    ) -> ContentWrite:
        """A REST write by ``user_id``: one CRDT update, folded into the row at once and
        relayed live.

        The role comes from the room's access rules (read with the document when it is
        loaded), so a document nobody has open costs three transactions: the load, the log's
        commit and the fold. Raises NotFound (no such document, or not the caller's to see),
        Forbidden (a viewer, or not the owner when ``owner_only``), ValueError (invalid
        content) and RealtimeError (too large, storage backlog).
        """
        room = await self.open_room(kind, doc_id)
        role = await self.access.role_of(kind, doc_id, user_id=user_id, share_token=None)
        if role is None:
            raise NotFound(f"{kind.value} not found")
        if role is not Role.OWNER and (owner_only or not role.can_write):
            raise Forbidden(f"only the owner may change or delete this {kind.value}")
        if self.update_log.full:
            raise RealtimeError(ErrorCode.STORAGE_BACKLOG, "the server cannot store edits right now")
        room_left = self.limits.max_document_bytes - room.stored_bytes
        delta = room.apply_content(content, fields, max_growth=room_left)
        row = None
        if delta is not None:
            if self.on_edit is not None:
                self.on_edit(kind, doc_id, user_id)
            row = await self.persistence.write_through(room, delta, user_id)
            if row is None:
                raise NotFound(f"{kind.value} not found")  # deleted meanwhile
        return ContentWrite(room.content(), row)

    async def document_deleted(self, kind: DocKind, doc_id: uuid.UUID) -> None:
        """The row was deleted (REST): every instance drops the room and its sockets."""
        self.read_cache.invalidate(kind.value, doc_id)
        self.relay.announce(kind, doc_id, ClusterMessage("deleted"))
        room = self.loaded(kind, doc_id)
        if room is not None:
            await self.registry.drop_deleted(room)

    async def access_changed(self, kind: DocKind, doc_id: uuid.UUID) -> None:
        """Access rules changed (visibility, shares, collaborators): every instance re-checks
        its sockets' roles, and no read cache keeps the old answer."""
        self.read_cache.invalidate(kind.value, doc_id)
        self.relay.announce(kind, doc_id, ClusterMessage("access"))
        await self.access.recheck_roles(kind, doc_id)

    async def broadcast(
        self, kind: DocKind, doc_id: uuid.UUID, event: str, data: Any, audience: Audience = EVERYONE
    ) -> None:
        """Deliver a named event (e.g. ``comment``) to the sockets of the document that
        ``audience`` admits (default: every one), on every instance. ``data`` must be
        JSON-serializable."""
        header: dict[str, Any] = {"event": event, "data": data}
        if audience is not EVERYONE:
            header["audience"] = audience.as_json()
        self.relay.announce(kind, doc_id, ClusterMessage("event", header))
        room = self.loaded(kind, doc_id)
        if room is not None:
            room.send_to_others(None, event, data, audience)

    async def presence(self, kind: DocKind, doc_id: uuid.UUID) -> list[dict[str, Any]]:
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


def _admission_entry(room: Room, sid: str, member: Member) -> tuple[str, bool]:
    """``(identity, can_write)`` of a room member, local or on another instance."""
    local = room.sessions.get(sid)
    if local is not None:
        return local.identity, local.role.can_write
    identity = f"user:{member.user_id}" if member.user_id else f"guest:{sid}"
    return identity, member.role.can_write
