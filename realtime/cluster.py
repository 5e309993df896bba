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
- ``invalidate`` ``{kind, id}`` (cache channel): a row changed;
- ``user-changed`` ``{id}`` (cache channel): a user was renamed or deleted (cached names).

The headers and bodies of the presence messages (``awareness``, ``awareness-gone``,
``members``) are ``presence.cluster``'s; this module is the envelope and the channels.
"""

from __future__ import annotations

import functools
import json
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

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
