"""Bounded reading of lib0 varints, for validating what clients send before a decoder sees it.

lib0 (Yjs) writes unsigned integers as 7 bits per byte. A decoder that trusts them can be
made to build huge integers (a run of 0xff bytes) or reserve memory for a huge count. This
reader stops at 2^53 - 1, the largest integer a JavaScript client reads, so a value it
accepts is one every stock client accepts too.
"""

from __future__ import annotations

from typing import Final

MAX_SAFE_INTEGER: Final = 2**53 - 1


class MalformedPayload(ValueError):
    """A binary payload is not what it claims to be (its message is safe to show)."""


def read_var_uint(data: bytes, pos: int) -> tuple[int, int]:
    """One varuint at ``pos``: ``(value, next position)``.

    Raises:
        MalformedPayload: truncated, or above 2^53 - 1.
    """
    value = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise MalformedPayload("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if value > MAX_SAFE_INTEGER or shift > 49:
            raise MalformedPayload("integer out of range")
        if byte < 0x80:
            return value, pos
        shift += 7
