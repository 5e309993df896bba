"""The room registry: which documents are live on this instance, each loaded once.

A document is loaded when the first caller asks for it, however many ask at once (a join storm
loads it once); it stays loaded while sockets are in it, and is unloaded once it has been
empty for ``idle_seconds`` with everything stored. The maintenance tick, once a second at
most, keeps presence up to date (heartbeats, expiry of silent instances), snapshots rooms
that are due, and unloads idle ones.

A snapshot folds the update log into the document's row: durability never waits for it (every
edit is in the log before it is relayed); it compacts the log and refreshes the columns
listings read. A room is due ``snapshot_interval`` after its first unfolded edit when that
edit changed what listings show (name, tempo, colour, length) or the log's tail has grown past
``QUIET_TAIL_BYTES``; otherwise, in a quiet room of small edits, ``quiet_interval`` after it.
Quiet rooms were most of the server's CPU in many-room workloads (bench/results/2026-12-07-s3-profile.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from music.kinds import DocKind
from presence.cluster import ClusterPresence
from realtime.errors import ErrorCode
from realtime.persistence import RoomPersistence
from realtime.relay import ClusterRelay
from realtime.rooms import Room, RoomKey, RoomTransport
from realtime.wires import Wires

log = logging.getLogger(__name__)
# Past this much unfolded log, a room is folded at the regular interval: a cold open replays
# the tail, and the document-size bound counts it.
QUIET_TAIL_BYTES = 64 * 1024


class RoomRegistry:
    """The live rooms of this instance: loading (single-flight), unloading, closing."""

    def __init__(
        self,
        persistence: RoomPersistence,
        relay: ClusterRelay,
        presence: ClusterPresence[Room],
        *,
        snapshot_interval: float,
        quiet_interval: float,
        idle_seconds: float,
    ) -> None:
        self.snapshot_interval = snapshot_interval
        self.quiet_interval = max(quiet_interval, snapshot_interval)
        self.idle_seconds = idle_seconds
        self._persistence = persistence
        self._relay = relay
        self._presence = presence
        self.rooms: dict[RoomKey, Room] = {}
        self._loading: dict[RoomKey, asyncio.Future[Room]] = {}
        self._wires = Wires()
        self._maintenance: asyncio.Task[None] | None = None

    def attach_transport(self, transport: RoomTransport) -> None:
        """Add a wire: rooms reach each socket through the wire it came by."""
        self._wires.add(transport)

    @property
    def transport(self) -> RoomTransport:
        if not self._wires:
            raise RuntimeError("DocumentService has no transport attached")
        return self._wires

    def start(self) -> None:
        self._maintenance = asyncio.create_task(self._maintain(), name="documents-maintenance")

    async def stop(self) -> None:
        """Flush every dirty document (the database must still be open), then close every room."""
        log.info("flushing %d open documents", len(self.rooms))
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        for room in list(self.rooms.values()):
            try:
                await self._persistence.snapshot(room)
            except Exception:
                log.exception("final snapshot of %s failed; its updates stay in the log", room.namespace)
        for room in list(self.rooms.values()):
            self.close(room)

    # --- loading and unloading ------------------------------------------------------

    def loaded(self, kind: DocKind, doc_id: uuid.UUID) -> Room | None:
        return self.rooms.get((kind, doc_id))

    async def open_room(self, kind: DocKind, doc_id: uuid.UUID) -> Room:
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
                await self._relay.subscribe_room(key)
                room = await self._persistence.load(kind, doc_id, self.transport)
            except BaseException as exc:
                await self._relay.abandon_room(key)
                pending.set_exception(exc)
                pending.exception()  # mark retrieved; the waiters re-raise it
                raise
            finally:
                self._loading.pop(key, None)
            self.rooms[key] = room
            self._presence.room_opened(room)
            room.empty_since = time.monotonic()
            self._relay.room_opened(room)
            pending.set_result(room)
            return room
        return await asyncio.shield(pending)

    async def unload(self, room: Room) -> None:
        async with room.snapshot_lock:
            if room.sessions or room.version != room.persisted_version:
                return
            self.close(room)

    def close(self, room: Room) -> None:
        if room.closed:
            return
        room.closed = True
        self.rooms.pop((room.kind, room.doc_id), None)
        self._presence.room_closed(room)
        self._persistence.room_closed(room)
        room.close()
        self._relay.room_closed(room)

    async def drop_deleted(self, room: Room) -> None:
        """The document is gone: close its room and tell its sockets why."""
        self.close(room)
        for session in list(room.sessions.values()):
            await self.transport.disconnect(
                room.namespace, session, ErrorCode.DOCUMENT_DELETED, f"this {room.kind.value} was deleted"
            )

    # --- maintenance ----------------------------------------------------------------

    def _snapshot_due(self, room: Room, now: float) -> bool:
        if room.dirty_since is None:
            return False
        waited = now - room.dirty_since
        if waited >= self.quiet_interval:
            return True
        return waited >= self.snapshot_interval and (
            room.listing_changed or room.unfolded_bytes() >= QUIET_TAIL_BYTES
        )

    async def _maintain(self) -> None:
        """Presence upkeep, periodic snapshots of dirty rooms, unloading of idle ones. Logs
        and keeps going."""
        tick = min(1.0, self.snapshot_interval / 2)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            heartbeat = self._presence.heartbeat_due()
            for room in list(self.rooms.values()):
                try:
                    self._presence.upkeep(room, heartbeat=heartbeat)
                except Exception:
                    log.exception("presence upkeep of %s failed; will retry", room.namespace)
                try:
                    if self._snapshot_due(room, now):
                        await self._persistence.snapshot(room)
                    if (
                        not room.sessions
                        and room.empty_since is not None
                        and now - room.empty_since >= self.idle_seconds
                    ):
                        await self.unload(room)
                except Exception:
                    log.exception("maintenance of %s failed; will retry", room.namespace)
