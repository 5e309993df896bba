"""Cheap checks on what a client sends, run before pycrdt (or a JSON parser) decodes it.

pycrdt trusts the counts at the head of its binary encodings: a 5-byte state vector that
claims 2^29 entries makes yrs reserve room for all of them (seconds of CPU, half a gigabyte).
Every entry takes at least one byte per varint, so a payload's length bounds every honest
count; these checks refuse the rest before the decoder sees them. They validate, they do not
decode: the documents themselves are always decoded by pycrdt.
"""

from __future__ import annotations

from music.lib0 import MalformedPayload, read_var_uint


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
