"""Cheap checks on what a client sends, run before pycrdt (or a JSON parser) decodes it.

pycrdt trusts the counts at the head of its binary encodings: a 5-byte state vector that
claims 2^29 entries makes yrs reserve room for all of them (seconds of CPU, half a gigabyte).
Every entry takes at least one byte per varint, so a payload's length bounds every honest
count; these checks refuse the rest before the decoder sees them. They validate, they do not
decode: the documents themselves are always decoded by pycrdt.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

from presence.wire import MalformedPayload, read_var_uint
from realtime import docschema

__all__ = [
    "NAMESPACE",
    "MalformedPayload",
    "admission_refusal",
    "check_state_vector",
    "check_update_header",
    "decode_state_vector",
    "parse_canonical_uuid",
    "parse_namespace",
    "read_var_uint",
]

# One spelling per document: ``uuid.UUID()`` accepts upper case and shifted dashes, which
# would open the same document under a second namespace (rooms, fan-out and revocation all
# address the canonical one).
CANONICAL_UUID: Final = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
NAMESPACE: Final = re.compile(rf"/yjs\|(loop|song):({CANONICAL_UUID})")
_CANONICAL_UUID_RE: Final = re.compile(CANONICAL_UUID)
NAMESPACE_HELP: Final = (
    "unknown namespace; use /yjs|loop:<id> or /yjs|song:<id> with the id as a lowercase UUID "
    "(8-4-4-4-12 hex digits)"
)


def parse_namespace(namespace: str) -> tuple[docschema.DocKind, uuid.UUID] | None:
    """``(kind, id)`` of a canonical document namespace, None for anything else."""
    match = NAMESPACE.fullmatch(namespace)
    if match is None:
        return None
    return docschema.DocKind(match.group(1)), uuid.UUID(match.group(2))


def parse_canonical_uuid(text: str) -> uuid.UUID | None:
    """A UUID in its one canonical spelling (lowercase 8-4-4-4-12), None for any other text:
    the same id for every path, room and cache key."""
    return uuid.UUID(text) if _CANONICAL_UUID_RE.fullmatch(text) else None


def decode_state_vector(state_vector: bytes) -> dict[int, int]:
    """A Yjs state vector as ``{client id: clock}``, validated: the entry count is bounded by
    the length (each entry takes at least two bytes) and nothing may trail."""
    count, pos = read_var_uint(state_vector, 0)
    if count * 2 > len(state_vector) - pos:
        raise MalformedPayload("state vector claims more entries than it holds")
    entries: dict[int, int] = {}
    for _ in range(count):
        client, pos = read_var_uint(state_vector, pos)
        clock, pos = read_var_uint(state_vector, pos)
        entries[client] = clock
    if pos != len(state_vector):
        raise MalformedPayload("trailing bytes after the state vector")
    return entries


def check_state_vector(state_vector: bytes, *, max_bytes: int) -> None:
    """Refuse a state vector before pycrdt decodes it (see the module docstring)."""
    if len(state_vector) > max_bytes:
        raise MalformedPayload(f"a state vector may be at most {max_bytes} bytes")
    decode_state_vector(state_vector)


def check_update_header(update: bytes) -> None:
    """Refuse an update whose leading client count exceeds what its bytes can hold (each
    client section has at least three varints). The rest is decoded by pycrdt, whose later
    counts do not pre-allocate."""
    count, pos = read_var_uint(update, 0)
    if count * 3 > len(update) - pos:
        raise MalformedPayload("update claims more clients than it holds")


def admission_refusal(
    sessions: list[tuple[str, bool]],
    *,
    identity: str,
    can_write: bool,
    max_clients: int,
    max_per_user: int,
) -> str | None:
    """Why a socket may not join a room (None: it may). ``sessions`` are the room's current
    ``(identity, can_write)`` pairs.

    One user holds at most ``max_per_user`` connections to a document, and the last quarter
    of the room is kept for owners and editors, so viewers can never lock out the people
    who edit (a share link may be public).
    """
    if sum(1 for who, _ in sessions if who == identity) >= max_per_user:
        return f"you already have {max_per_user} connections to this document; close one first"
    if len(sessions) >= max_clients:
        return f"this document already has {len(sessions)} connections"
    if not can_write and len(sessions) >= max_clients - writer_reserve(max_clients):
        return "this document has as many viewers as it can take; try again later"
    return None


def writer_reserve(max_clients: int) -> int:
    """Connections of a room that only owners and editors may use."""
    return max(1, max_clients // 4) if max_clients > 1 else 0
