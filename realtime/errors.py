"""Errors of the real-time layer: one code enum; the edges translate it (socket ``error``
events as they are, REST answers through ``rest.errors.REALTIME_ANSWERS``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ErrorCode(StrEnum):
    """Every code of the live path's ``error`` events and refusals (docs/realtime.md#errors)."""

    READ_ONLY = "read_only"
    UPDATE_TOO_LARGE = "update_too_large"
    DOCUMENT_TOO_LARGE = "document_too_large"
    CONTENT_TOO_LARGE = "content_too_large"
    POSITION_OUT_OF_RANGE = "position_out_of_range"
    RATE_LIMITED = "rate_limited"
    STORAGE_BACKLOG = "storage_backlog"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    MALFORMED_UPDATE = "malformed_update"
    MISSING_DEPENDENCIES = "missing_dependencies"
    MALFORMED_AWARENESS = "malformed_awareness"
    MALFORMED_MESSAGE = "malformed_message"
    UNKNOWN_EVENT = "unknown_event"
    TOO_MANY_REFUSED_UPDATES = "too_many_refused_updates"
    ACCESS_REVOKED = "access_revoked"
    DOCUMENT_DELETED = "document_deleted"
    ROOM_FULL = "room_full"


# What each code means to a client (the AsyncAPI document and docs/realtime.md say the same).
MEANINGS: Final[dict[ErrorCode, str]] = {
    ErrorCode.READ_ONLY: "you are a viewer; your update was not applied",
    ErrorCode.UPDATE_TOO_LARGE: "one update exceeds RT_MAX_UPDATE_BYTES; not applied",
    ErrorCode.DOCUMENT_TOO_LARGE: "the document would exceed RT_MAX_DOCUMENT_BYTES; not applied",
    ErrorCode.CONTENT_TOO_LARGE: "more content than REST allows (chords, steps, blocks, meta keys, fields)",
    ErrorCode.POSITION_OUT_OF_RANGE: "a step at or past length x 16 or a chord at or past length x 4 beats "
    "(docs/musical-time.md)",
    ErrorCode.RATE_LIMITED: "more messages per second than RT_MAX_MESSAGES_PER_SECOND; the excess is dropped",
    ErrorCode.STORAGE_BACKLOG: "the server cannot store edits right now; not applied: resync later",
    ErrorCode.STORAGE_UNAVAILABLE: "your last edit could not be saved (the server was stopping); resync",
    ErrorCode.MALFORMED_UPDATE: "not one binary, valid Yjs update",
    ErrorCode.MISSING_DEPENDENCIES: "the update builds on changes the server never received; resync",
    ErrorCode.MALFORMED_AWARENESS: "not one valid y-protocols awareness update, or a state too big",
    ErrorCode.MALFORMED_MESSAGE: "a sync-step-1 without a valid state vector (the ack carries the document)",
    ErrorCode.UNKNOWN_EVENT: "an event name the server does not know",
    ErrorCode.TOO_MANY_REFUSED_UPDATES: "ten refused updates; followed by a disconnect",
    ErrorCode.ACCESS_REVOKED: "you lost access; followed by a disconnect (do not reconnect)",
    ErrorCode.DOCUMENT_DELETED: "the document was deleted; followed by a disconnect (do not reconnect)",
    ErrorCode.ROOM_FULL: "the room has no place left (a handshake refusal, or a REST write's 503)",
}

# Refused updates that count towards TOO_MANY_REFUSED_UPDATES (each cost a rollback).
REFUSED_UPDATE_CODES: Final = frozenset(
    {
        ErrorCode.MALFORMED_UPDATE,
        ErrorCode.MISSING_DEPENDENCIES,
        ErrorCode.CONTENT_TOO_LARGE,
        ErrorCode.POSITION_OUT_OF_RANGE,
    }
)


class RealtimeError(Exception):
    """Refused real-time input, with its :class:`ErrorCode`."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
