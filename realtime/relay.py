"""The cluster relay: what this instance's live documents tell the others, and hear from them.

Every loaded document is subscribed to its bus channel from before it is read from storage
until it is unloaded; what arrives meanwhile waits for the room. The messages (their format is
``realtime.cluster``'s) are handled here: durable updates are applied and relayed to the
room's sockets, presence goes to ``presence.cluster``, control events (deleted, access
changed) to the registry and the access checks, named events to the sockets. A gap in an
origin's messages, or the bus coming back after an outage, makes rooms catch up from storage.

Publishing goes through here too: room messages only when another instance listens (one
instance alone, the embedded default, encodes nothing), control events always, and the
cluster-wide ones (read-cache invalidations, changed users) on the cache channel.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from bus import Bus, BusState, Envelope
from music.kinds import DocKind
from presence.cluster import ClusterPresence
from realtime import cluster
from realtime.cluster import ClusterMessage
from realtime.names import ShownNames
from realtime.persistence import RoomPersistence
from realtime.read_cache import ReadCache
from realtime.rooms import Audience, Room, RoomKey
from realtime.tasks import OwnedTasks

log = logging.getLogger(__name__)

Handler = Callable[[Room, str, ClusterMessage], None]


class ClusterRelay:
    """One instance's side of the bus for its live documents.

    Publishing works from construction; receiving once :meth:`wire` has handed in the parts
    the messages are for (they are built after this, as most of them publish through it).
    """

    def __init__(self, bus: Bus, prefix: str, tasks: OwnedTasks) -> None:
        self.bus = bus
        self.prefix = prefix
        self._tasks = tasks
        self._early: dict[RoomKey, list[Envelope]] = {}  # bus messages that arrived mid-load
        self._rooms: dict[RoomKey, Room] = {}
        self._handlers: dict[str, Handler] = {}

    def wire(
        self,
        *,
        rooms: dict[RoomKey, Room],
        drop_deleted: Callable[[Room], Coroutine[Any, Any, None]],
        recheck_roles: Callable[[DocKind, uuid.UUID], Coroutine[Any, Any, None]],
        persistence: RoomPersistence,
        presence: ClusterPresence[Room],
        names: ShownNames,
        read_cache: ReadCache,
    ) -> None:
        """Hand in where received messages go: the registry's rooms and how it drops a deleted
        one, the re-check of roles, persistence (catch-up), presence, names and the read cache."""
        self._rooms = rooms
        self._drop_deleted = drop_deleted
        self._recheck_roles = recheck_roles
        self._persistence = persistence
        self._presence = presence
        self._names = names
        self._read_cache = read_cache
        self._handlers = {
            "update": self._remote_update,
            "awareness": presence.remote_awareness,
            "awareness-gone": presence.remote_awareness_gone,
            "members": presence.remote_members,
            "hello": presence.remote_hello,
            "deleted": self._remote_deleted,
            "access": self._remote_access,
            "event": self._remote_event,
        }

    async def start(self) -> None:
        if not self._handlers:
            raise RuntimeError("ClusterRelay is not wired")
        self.bus.on_restored(self._after_outage)
        await self.bus.subscribe(cluster.cache_channel(self.prefix), self._on_cache_message)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.bus.unsubscribe(cluster.cache_channel(self.prefix))

    # --- publishing -----------------------------------------------------------------

    def channel(self, kind: DocKind, doc_id: uuid.UUID) -> str:
        return cluster.document_channel(self.prefix, kind.value, doc_id)

    def publish(self, room: Room, message: ClusterMessage) -> None:
        """Publish a room's message, if any other instance listens."""
        channel = self.channel(room.kind, room.doc_id)
        # One instance alone (the embedded default): nothing to encode for nobody.
        if self.bus.state is not BusState.STOPPED and self.bus.reaches_others(channel):
            self.bus.publish(channel, message.encode())

    def publish_presence(self, room: Room, kind: str, header: dict[str, Any], body: bytes) -> None:
        """``presence.cluster``'s way onto the bus."""
        self.publish(room, ClusterMessage(kind, header, body))

    def announce(self, kind: DocKind, doc_id: uuid.UUID, message: ClusterMessage) -> None:
        """Publish a control event of a document (deleted, access changed, a named event) for
        every instance, whether or not the document is loaded here."""
        self.bus.publish(self.channel(kind, doc_id), message.encode())

    def publish_invalidation(self, kind: str, doc_id: uuid.UUID) -> None:
        if self.bus.state is not BusState.STOPPED:
            message = ClusterMessage("invalidate", {"kind": kind, "id": str(doc_id)})
            self.bus.publish(cluster.cache_channel(self.prefix), message.encode())

    def publish_user_changed(self, user_id: uuid.UUID) -> None:
        if self.bus.state is not BusState.STOPPED:
            message = ClusterMessage("user-changed", {"id": str(user_id)})
            self.bus.publish(cluster.cache_channel(self.prefix), message.encode())

    # --- a room's channel -----------------------------------------------------------

    async def subscribe_room(self, key: RoomKey) -> None:
        """Subscribe to a document's channel before it is read from storage: an update
        committed after that read is then certain to arrive (it is published after its
        commit). What arrives before the room exists waits for :meth:`room_opened`."""
        self._early[key] = []
        await self.bus.subscribe(
            self.channel(*key), lambda envelope: self._on_document_message(key, envelope)
        )

    async def abandon_room(self, key: RoomKey) -> None:
        """The document could not be loaded: forget what arrived, leave its channel."""
        self._early.pop(key, None)
        with contextlib.suppress(Exception):
            await self.bus.unsubscribe(self.channel(*key))

    def room_opened(self, room: Room) -> None:
        """The room exists: apply what arrived while it loaded, and ask the other instances
        for their members and awareness."""
        key = (room.kind, room.doc_id)
        for envelope in self._early.pop(key, []):
            self._on_document_message(key, envelope)
        self.publish(room, ClusterMessage("hello"))

    def room_closed(self, room: Room) -> None:
        if self.bus.state is not BusState.STOPPED:
            channel = self.channel(room.kind, room.doc_id)
            self.bus.drop(channel)
            self._tasks.spawn(self.bus.settle(channel), f"unsubscribe {room.namespace}")

    # --- receiving ------------------------------------------------------------------

    def _on_document_message(self, key: RoomKey, envelope: Envelope) -> None:
        room = self._rooms.get(key)
        if room is None:
            early = self._early.get(key)
            if early is not None:  # still loading: applied once the room exists
                early.append(envelope)
            return
        message = ClusterMessage.decode(envelope.data)
        handler = self._handlers.get(message.kind)
        if handler is not None:
            handler(room, envelope.origin, message)
        if envelope.after_gap:
            self._persistence.schedule_catch_up(
                room, f"a gap in the messages of instance {envelope.origin[:8]}"
            )

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

    def _remote_deleted(self, room: Room, origin: str, message: ClusterMessage) -> None:
        self._read_cache.invalidate_local(room.kind.value, room.doc_id)
        self._tasks.spawn(self._drop_deleted(room), f"deleted {room.namespace}")

    def _remote_access(self, room: Room, origin: str, message: ClusterMessage) -> None:
        self._read_cache.invalidate_local(room.kind.value, room.doc_id)
        self._tasks.spawn(self._recheck_roles(room.kind, room.doc_id), f"access {room.namespace}")

    def _remote_event(self, room: Room, origin: str, message: ClusterMessage) -> None:
        try:
            audience = Audience.from_json(message.header.get("audience"))
        except ValueError:  # never delivered to everyone by mistake
            log.error("%s: an event from instance %s with a malformed audience", room.namespace, origin[:8])
            return
        room.send_to_others(None, str(message.header["event"]), message.header.get("data"), audience)

    def _on_cache_message(self, envelope: Envelope) -> None:
        message = ClusterMessage.decode(envelope.data)
        if message.kind == "invalidate":
            self._read_cache.invalidate_local(str(message.header["kind"]), uuid.UUID(message.header["id"]))
        elif message.kind == "user-changed":
            self._names.forget(uuid.UUID(message.header["id"]))
        if envelope.after_gap:  # an invalidation may have been lost
            self._read_cache.clear()
            self._names.forget(None)

    async def _after_outage(self) -> None:
        """The bus is back: anything may have been missed meanwhile."""
        self._read_cache.clear()
        self._names.forget(None)
        rooms = list(self._rooms.values())
        for room in rooms:
            room.access = None  # joins ask the database until catch_up() reloads the rules
        if not rooms:
            return
        changed = 0
        for room in rooms:
            try:
                changed += await self._persistence.catch_up(room)
            except Exception:
                log.exception("catch-up of %s failed", room.namespace)
            self._presence.announce(room)
        log.warning(
            "bus restored: %d rooms caught up from storage, %d stored updates were new here",
            len(rooms),
            changed,
        )
