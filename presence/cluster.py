"""Presence across instances: every instance's members and cursors in every instance's rooms.

Each instance owns the sessions connected to it and tells the others about them over the bus
(through the ``publish`` it is given; the envelope and the channels are the real-time layer's):

- ``members``: its members of a room, once per burst of changes (a join storm sends one
  message) and as a heartbeat every third of the presence timeout;
- ``awareness``: a session's awareness (cursors, selections), coalesced: at most one message a
  session per ``awareness_interval``, carrying everything that arrived meanwhile;
- ``awareness-gone``: a session left, its awareness with it;
- on ``hello`` (an instance just loaded the room) and after a bus outage, all of the above again.

What arrives from the others is kept per room (:class:`RemotePeers`) under pseudo session ids
``<origin>:<sid>``, so the usual ownership rules of awareness apply to remote sessions too. An
instance not heard from within the presence timeout (crashed, cut off) is forgotten: its
members and cursors vanish from the room.

The headers and bodies of those messages are defined here (``members_header``,
``awareness_payload`` and their readers); this package imports nothing of the real-time layer,
which hands each room and message in.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from music.roles import Role
from presence.awareness import RoomAwareness
from presence.members import Member, RoomMembers

log = logging.getLogger(__name__)

# A burst of joins and leaves (a join storm) goes out as one members message after this.
MEMBERS_BATCH_SECONDS = 0.01


class LocalSession(Protocol):
    """A socket connected to this instance, as presence sees it."""

    @property
    def member(self) -> Member: ...


class PresenceRoom(Protocol):
    """What presence needs of a live room (``realtime.rooms.Room`` is one)."""

    @property
    def namespace(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    @property
    def sessions(self) -> Mapping[str, LocalSession]: ...

    @property
    def members(self) -> RoomMembers: ...

    @property
    def awareness(self) -> RoomAwareness: ...

    def send_to_others(self, sender: str | None, event: str, data: Any) -> None:
        """Send ``event`` to every local session but ``sender`` (None: to all)."""

    def send_presence(self) -> None:
        """Send the room's member list to its local sessions (soon, once)."""


class PresenceMessage(Protocol):
    """A presence message from another instance: its header and body."""

    @property
    def header(self) -> Mapping[str, Any]: ...

    @property
    def body(self) -> bytes: ...


R = TypeVar("R", bound=PresenceRoom)
# publish(room, kind, header, body): put a presence message for the room's other instances on the bus.
Publish = Callable[[R, str, dict[str, Any], bytes], None]


@dataclass
class RemotePeers:
    """What one room knows of the other instances: their members and awareness owners.

    Remote sessions appear in the room's member list and awareness under the pseudo
    session id ``<origin>:<sid>``, so the usual ownership rules apply to them too.
    """

    members: dict[str, set[str]] = field(default_factory=dict)  # origin -> pseudo sids
    awareness: dict[str, set[str]] = field(default_factory=dict)  # origin -> pseudo sids
    seen: dict[str, float] = field(default_factory=dict)  # origin -> monotonic time

    def touch(self, origin: str) -> None:
        self.seen[origin] = time.monotonic()

    def expired(self, timeout: float) -> list[str]:
        now = time.monotonic()
        return [origin for origin, seen in self.seen.items() if now - seen > timeout]

    def forget(self, origin: str) -> tuple[set[str], set[str]]:
        """Drop an origin; return its pseudo sids (members, awareness owners)."""
        self.seen.pop(origin, None)
        return self.members.pop(origin, set()), self.awareness.pop(origin, set())


def pseudo_sid(origin: str, sid: str) -> str:
    return f"{origin}:{sid}"


def members_header(members: Mapping[str, Member]) -> dict[str, Any]:
    """The header of a ``members`` message: ``{members: [[sid, userId, displayName, role], ...]}``."""
    rows = [
        [sid, str(m.user_id) if m.user_id else None, m.display_name, m.role] for sid, m in members.items()
    ]
    return {"members": rows}


def read_members(header: Mapping[str, Any]) -> dict[str, Member]:
    members: dict[str, Member] = {}
    for sid, user_id, name, role in header.get("members", []):
        members[str(sid)] = Member(uuid.UUID(user_id) if user_id else None, str(name), Role(role))
    return members


def awareness_payload(sid: str, updates: list[bytes]) -> tuple[dict[str, Any], bytes]:
    """Header and body of an ``awareness`` message: one session's awareness updates, joined."""
    return {"sid": sid, "sizes": [len(u) for u in updates]}, b"".join(updates)


def read_awareness(header: Mapping[str, Any], body: bytes) -> list[bytes]:
    updates, offset = [], 0
    for size in header.get("sizes", []):
        updates.append(body[offset : offset + int(size)])
        offset += int(size)
    return updates


@dataclass
class _AwarenessOut(Generic[R]):
    """Awareness of one local session waiting for its turn on the bus (coalescing)."""

    room: R
    pending: list[bytes]
    last_sent: float = 0.0
    timer: asyncio.TimerHandle | None = None


class ClusterPresence(Generic[R]):
    """Presence of the rooms of one instance, shared with the other instances.

    The real-time layer calls it when a room opens or closes, a session joins, leaves or
    sends awareness, a presence message arrives from another instance, and on every
    maintenance tick (:meth:`upkeep`).
    """

    def __init__(self, publish: Publish[R], *, timeout: float, awareness_interval: float) -> None:
        self._publish = publish
        self._timeout = timeout
        self._awareness_interval = awareness_interval
        self._peers: dict[R, RemotePeers] = {}
        self._awareness_out: dict[str, _AwarenessOut[R]] = {}  # local sid -> its pending awareness
        self._members_dirty: set[R] = set()
        self._last_heartbeat = time.monotonic()

    # --- rooms and local sessions ----------------------------------------------------

    def room_opened(self, room: R) -> None:
        self._peers[room] = RemotePeers()

    def room_closed(self, room: R) -> None:
        self._peers.pop(room, None)
        self._members_dirty.discard(room)

    def joined(self, room: R, sid: str, member: Member) -> None:
        room.members.add(sid, member)
        room.send_presence()
        self.members_changed(room)

    def left(self, room: R, sid: str) -> None:
        """A local session left: its member, pending awareness and cursors go."""
        room.members.remove(sid)
        outgoing = self._awareness_out.pop(sid, None)
        if outgoing is not None and outgoing.timer is not None:
            outgoing.timer.cancel()
        if room.closed:
            return
        removal = room.awareness.remove_session(sid)
        if removal is not None:
            room.send_to_others(sid, "awareness-update", removal)
            self._publish(room, "awareness-gone", {"sid": sid}, b"")
        room.send_presence()
        self.members_changed(room)

    def members_changed(self, room: R) -> None:
        """Publish this instance's members of ``room`` soon (a join storm sends one message)."""
        if room in self._members_dirty:
            return
        self._members_dirty.add(room)

        def publish() -> None:
            self._members_dirty.discard(room)
            if not room.closed:
                self._publish_members(room)

        asyncio.get_running_loop().call_later(MEMBERS_BATCH_SECONDS, publish)

    def queue_awareness(self, room: R, sid: str, update: bytes) -> None:
        """Publish a session's awareness, at most one bus message per ``awareness_interval``
        (what arrives meanwhile travels together in the next one)."""
        outgoing = self._awareness_out.get(sid)
        if outgoing is None:
            outgoing = self._awareness_out[sid] = _AwarenessOut(room, [])
        outgoing.pending.append(update)
        if outgoing.timer is not None:
            return
        wait = outgoing.last_sent + self._awareness_interval - time.monotonic()
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
            header, body = awareness_payload(sid, pending)
            self._publish(outgoing.room, "awareness", header, body)

    def announce(self, room: R) -> None:
        """Tell the other instances everything this one has in ``room`` (when one of them
        just loaded it, and after a bus outage)."""
        if room.sessions:
            self._publish_members(room)
            for sid in room.sessions:
                encoded = room.awareness.encode_session(sid)
                if encoded is not None:
                    header, body = awareness_payload(sid, [encoded])
                    self._publish(room, "awareness", header, body)

    def _publish_members(self, room: R) -> None:
        local = {sid: session.member for sid, session in room.sessions.items()}
        self._publish(room, "members", members_header(local), b"")

    # --- messages from other instances ----------------------------------------------

    def remote_awareness(self, room: R, origin: str, message: PresenceMessage) -> None:
        owner = pseudo_sid(origin, str(message.header.get("sid")))
        peers = self._peers[room]
        peers.awareness.setdefault(origin, set()).add(owner)
        peers.touch(origin)
        for update in read_awareness(message.header, message.body):
            try:
                relay = room.awareness.apply(owner, update)
            except ValueError:
                continue
            if relay is not None:
                room.send_to_others(None, "awareness-update", relay)

    def remote_awareness_gone(self, room: R, origin: str, message: PresenceMessage) -> None:
        owner = pseudo_sid(origin, str(message.header.get("sid")))
        self._peers[room].awareness.get(origin, set()).discard(owner)
        removal = room.awareness.remove_session(owner)
        if removal is not None:
            room.send_to_others(None, "awareness-update", removal)

    def remote_members(self, room: R, origin: str, message: PresenceMessage) -> None:
        peers = self._peers[room]
        peers.touch(origin)
        members = {pseudo_sid(origin, sid): m for sid, m in read_members(message.header).items()}
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

    def remote_hello(self, room: R, origin: str, message: PresenceMessage) -> None:
        self.announce(room)

    # --- upkeep (every maintenance tick) ----------------------------------------------

    def heartbeat_due(self) -> bool:
        """Whether this tick re-sends every room's members (every third of the timeout)."""
        now = time.monotonic()
        if now - self._last_heartbeat < self._timeout / 3:
            return False
        self._last_heartbeat = now
        return True

    def upkeep(self, room: R, *, heartbeat: bool) -> None:
        """Forget instances not heard from within the timeout; on a heartbeat, re-send members."""
        self._expire_peers(room)
        if heartbeat and room.sessions:
            self._publish_members(room)

    def _expire_peers(self, room: R) -> None:
        peers = self._peers.get(room)
        if peers is None:
            return
        for origin in peers.expired(self._timeout):
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
