"""A room: one live collaborative document in memory and the sockets editing it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pycrdt import Doc, TransactionEvent, merge_updates

from presence.awareness import RoomAwareness
from presence.members import Member, RoomMembers
from realtime import docschema
from storage.access import Role


class TokenBucket:
    """Messages per second for one connection, with a burst of twice the rate."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = rate * 2
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(eq=False)
class Session:
    """One socket connected to one document."""

    sid: str
    user_id: uuid.UUID | None
    display_name: str
    role: Role
    share_token: str | None
    bucket: TokenBucket
    transport_id: Any = None  # the transport's handle for fast sends
    last_error_at: float = 0.0

    @property
    def member(self) -> Member:
        return Member(self.user_id, self.display_name, self.role.value)


class RoomTransport(Protocol):
    """How a room reaches its sockets (implemented by the Socket.IO edge)."""

    def send(self, namespace: str, sessions: Iterable[Session], event: str, data: Any) -> None:
        """Queue ``event`` for every session; the payload is encoded once."""

    async def disconnect(self, namespace: str, session: Session, code: str, message: str) -> None:
        """Tell the session why with an ``error`` event, then close it (no reconnect)."""


@dataclass(eq=False)
class Room:
    """The live document of one loop or song.

    Updates from clients are applied to ``doc`` at once (that validates them), written to
    the durable log, and only then relayed: ``queue_broadcast`` batches what became durable
    in the same loop iteration into one message per recipient, never echoing to a sender.
    """

    kind: docschema.DocKind
    doc_id: uuid.UUID
    doc: Doc
    transport: RoomTransport
    position: int = 0  # newest update-log id known to be in ``doc``
    stored_bytes: int = 0  # size of the last snapshot plus what was appended since
    sessions: dict[str, Session] = field(default_factory=dict)
    version: int = 0
    persisted_version: int = 0
    dirty_since: float | None = None
    empty_since: float | None = None
    last_edit_at: float = field(default_factory=time.time)
    snapshot_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False

    def __post_init__(self) -> None:
        self.namespace = f"/yjs|{self.kind.value}:{self.doc_id}"
        self.awareness = RoomAwareness(self.doc)
        self.members = RoomMembers()
        self._delta: bytes | None = None
        self._outbox: list[tuple[str | None, bytes]] = []
        self._flush_scheduled = False
        self._full_update: bytes | None = None
        self._state_vector: bytes | None = None
        self._content: dict[str, Any] | None = None
        self.full_encodes = 0  # how often the whole document was encoded (join storms: once)
        self._subscription = self.doc.observe(self._on_transaction)

    # --- the document ---------------------------------------------------------------

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._delta = event.update
        self.version += 1
        self._full_update = self._state_vector = self._content = None

    def apply(self, update: bytes) -> bytes | None:
        """Apply a Yjs update; return what it changed (None if nothing). Raises ValueError."""
        self._delta = None
        with self.doc.transaction():
            self.doc.apply_update(update)
        return self._take_delta()

    def apply_content(self, content: dict[str, Any], fields: set[str] | None) -> bytes | None:
        """Make the document match ``content`` for ``fields`` (a REST write)."""
        self._delta = None
        docschema.apply_content(self.kind, self.doc, content, fields=fields)
        return self._take_delta()

    def _take_delta(self) -> bytes | None:
        delta, self._delta = self._delta, None
        if delta is not None:
            self.last_edit_at = time.time()
            if self.dirty_since is None:
                self.dirty_since = time.monotonic()
        return delta

    def state_vector(self) -> bytes:
        if self._state_vector is None:
            self._state_vector = self.doc.get_state()
        return self._state_vector

    def missing_update(self, state_vector: bytes) -> bytes:
        """What a client with ``state_vector`` lacks. Joiners with an empty document share one
        cached full state, so a join storm encodes the document once."""
        if state_vector == b"\x00":
            if self._full_update is None:
                self.full_encodes += 1
                self._full_update = self.doc.get_update()
            return self._full_update
        return self.doc.get_update(state_vector)

    def content(self) -> dict[str, Any]:
        """The document as REST JSON (cached until the next change)."""
        if self._content is None:
            self._content = docschema.doc_to_content(self.kind, self.doc)
        return self._content

    # --- fan-out ----------------------------------------------------------------------

    def queue_broadcast(self, update: bytes, sender: str | None) -> None:
        """Relay a durable update to every session but its sender, batched per loop turn."""
        self._outbox.append((sender, update))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, []
        if not outbox or not self.sessions:
            return
        senders = {sender for sender, _ in outbox}
        everything = outbox[0][1] if len(outbox) == 1 else merge_updates(*(u for _, u in outbox))
        bystanders = [s for sid, s in self.sessions.items() if sid not in senders]
        if bystanders:
            self.transport.send(self.namespace, bystanders, "sync-update", everything)
        for sender in senders:
            session = self.sessions.get(sender) if sender is not None else None
            if session is None:
                continue
            others = [u for s, u in outbox if s != sender]
            if others:
                payload = others[0] if len(others) == 1 else merge_updates(*others)
                self.transport.send(self.namespace, [session], "sync-update", payload)

    def send_to_others(self, sender: str | None, event: str, data: Any) -> None:
        recipients = [s for sid, s in self.sessions.items() if sid != sender]
        if recipients:
            self.transport.send(self.namespace, recipients, event, data)

    def send_presence(self) -> None:
        if self.sessions:
            self.transport.send(
                self.namespace, self.sessions.values(), "presence", {"members": self.members.as_json()}
            )
