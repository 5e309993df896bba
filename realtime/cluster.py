"""What instances tell each other about live documents, over the bus.

Channels: one per document (``<prefix>doc:<kind>:<id>``, subscribed while the document is
loaded) and one for the whole cluster (``<prefix>cache``, REST read-cache invalidations).
A message is a kind, a small JSON header and an optional binary body:

- ``update`` ``{id}`` + Yjs update: published once the update is durable (``id``: its log id);
- ``awareness`` ``{sid, sizes}`` + awareness updates of one remote session (coalesced);
- ``awareness-gone`` ``{sid}``: that session left;
- ``members`` ``{members: [[sid, userId, displayName, role], ...]}``: every member the origin
  owns in this room (on each change and as a heartbeat);
- ``hello``: an instance just loaded the room and asks the others for their members and
  awareness;
- ``deleted``, ``access``: control events (document deleted, access rules changed);
- ``event`` ``{event, data, audience?}``: a named event for the sockets of the room that the
  audience admits (``broadcast``; no audience: every socket);
- ``invalidate`` ``{kind, id}`` (cache channel): a row changed.
"""

from __future__ import annotations

import functools
import json
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from presence.members import Member

_LENGTH = struct.Struct(">BI")  # kind index, header length

KINDS = (
    "update",
    "awareness",
    "awareness-gone",
    "members",
    "hello",
    "deleted",
    "access",
    "event",
    "invalidate",
    "user-changed",  # a user renamed or deleted (cached names)
)
_KIND_INDEX = {kind: i for i, kind in enumerate(KINDS)}


@dataclass(frozen=True, slots=True)
class ClusterMessage:
    kind: str
    header: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""

    def encode(self) -> bytes:
        # default=str: event payloads may carry ids and timestamps (they travel as text).
        header = json.dumps(self.header, separators=(",", ":"), default=str).encode() if self.header else b""
        return _LENGTH.pack(_KIND_INDEX[self.kind], len(header)) + header + self.body

    @classmethod
    def decode(cls, data: bytes) -> ClusterMessage:
        index, size = _LENGTH.unpack_from(data)
        start = _LENGTH.size
        header = json.loads(data[start : start + size]) if size else {}
        if not isinstance(header, dict):
            raise ValueError("a cluster message header must be an object")
        return cls(KINDS[index], header, bytes(data[start + size :]))


@functools.lru_cache(maxsize=65536)  # asked for every update published; a UUID is slow to format
def document_channel(prefix: str, kind: str, doc_id: uuid.UUID) -> str:
    return f"{prefix}doc:{kind}:{doc_id}"


def cache_channel(prefix: str) -> str:
    return f"{prefix}cache"


def members_message(members: dict[str, Member]) -> ClusterMessage:
    rows = [
        [sid, str(m.user_id) if m.user_id else None, m.display_name, m.role] for sid, m in members.items()
    ]
    return ClusterMessage("members", {"members": rows})


def read_members(message: ClusterMessage) -> dict[str, Member]:
    members: dict[str, Member] = {}
    for sid, user_id, name, role in message.header.get("members", []):
        members[str(sid)] = Member(uuid.UUID(user_id) if user_id else None, str(name), str(role))
    return members


def awareness_message(sid: str, updates: list[bytes]) -> ClusterMessage:
    return ClusterMessage("awareness", {"sid": sid, "sizes": [len(u) for u in updates]}, b"".join(updates))


def read_awareness(message: ClusterMessage) -> list[bytes]:
    updates, offset = [], 0
    for size in message.header.get("sizes", []):
        updates.append(message.body[offset : offset + int(size)])
        offset += int(size)
    return updates


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
