"""The close codes of the y-websocket wire, each defined once, and what each refusal maps to.

The stock ``y-websocket`` client (3.x) stops reconnecting after a code in 4400-4499 (it emits
``closed`` and sets ``shouldConnect = false``; ``provider.connect()`` resumes) and reconnects
with backoff (100 ms doubling to 2.5 s) after any other. So every code that reconnecting
cannot fix is in 4400-4499, and the ones where a later try can work are not.
"""

from __future__ import annotations

import enum
from typing import Final

from aiohttp import WSCloseCode

from realtime.errors import ErrorCode
from realtime.handshake import RefusalKind


class CloseCode(enum.IntEnum):
    """Why the server closed a y-websocket connection (docs/y-websocket.md#close-codes)."""

    BAD_REQUEST = 4400
    UNAUTHENTICATED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    AUTH_TIMEOUT = 4408
    REVOKED = 4409
    REFUSED_UPDATE = 4422
    TRY_AGAIN_LATER = 4503
    TOO_BIG = WSCloseCode.MESSAGE_TOO_BIG  # 1009
    RESTART = WSCloseCode.SERVICE_RESTART  # 1012
    RATE_LIMITED = WSCloseCode.TRY_AGAIN_LATER  # 1013


# What each code tells a client author (the AsyncAPI document and docs/y-websocket.md say the same).
MEANINGS: Final[dict[CloseCode, str]] = {
    CloseCode.BAD_REQUEST: "a malformed message or path, a bogus state vector, or an unknown message type",
    CloseCode.UNAUTHENTICATED: "no credentials, or an invalid or expired token (refresh it, then connect())",
    CloseCode.FORBIDDEN: "a viewer's update (not applied), or a page origin not in CORS_ORIGIN",
    CloseCode.NOT_FOUND: "no such document (or not yours to see), or it was deleted",
    CloseCode.AUTH_TIMEOUT: "no auth message within RT_CONNECT_TIMEOUT_SECONDS",
    CloseCode.REVOKED: "your access was revoked while connected",
    CloseCode.REFUSED_UPDATE: "an update the server refused (malformed, missing dependencies, too large, "
    "a position past the loop's end)",
    CloseCode.TRY_AGAIN_LATER: "the room is full or the server cannot store edits now; reconnect later",
    CloseCode.TOO_BIG: "a frame larger than RT_MAX_UPDATE_BYTES allows",
    CloseCode.RESTART: "the server is restarting (or stopped before your last edit was stored); reconnect",
    CloseCode.RATE_LIMITED: "more messages a second than RT_MAX_MESSAGES_PER_SECOND; reconnect and resync",
}

# A live error (``realtime.errors``) -> the code that closes the connection. Every code is
# here (tests/unit/test_ywebsocket_protocol.py): y-websocket has no error message, so a
# refused message always closes, and the client's reconnect (when the code allows one)
# resyncs whatever was not taken. A missing code would close with 1000 instead, and the stock
# client would reconnect and resend the refused edit forever.
FOR_ERROR: Final[dict[ErrorCode, CloseCode]] = {
    ErrorCode.READ_ONLY: CloseCode.FORBIDDEN,
    ErrorCode.UPDATE_TOO_LARGE: CloseCode.TOO_BIG,
    ErrorCode.DOCUMENT_TOO_LARGE: CloseCode.REFUSED_UPDATE,
    ErrorCode.CONTENT_TOO_LARGE: CloseCode.REFUSED_UPDATE,
    ErrorCode.POSITION_OUT_OF_RANGE: CloseCode.REFUSED_UPDATE,
    ErrorCode.MALFORMED_UPDATE: CloseCode.REFUSED_UPDATE,
    ErrorCode.MISSING_DEPENDENCIES: CloseCode.REFUSED_UPDATE,
    ErrorCode.TOO_MANY_REFUSED_UPDATES: CloseCode.REFUSED_UPDATE,
    ErrorCode.RATE_LIMITED: CloseCode.RATE_LIMITED,
    ErrorCode.STORAGE_BACKLOG: CloseCode.TRY_AGAIN_LATER,
    ErrorCode.STORAGE_UNAVAILABLE: CloseCode.RESTART,
    ErrorCode.MALFORMED_AWARENESS: CloseCode.BAD_REQUEST,
    ErrorCode.MALFORMED_MESSAGE: CloseCode.BAD_REQUEST,
    ErrorCode.UNKNOWN_EVENT: CloseCode.BAD_REQUEST,
    ErrorCode.ACCESS_REVOKED: CloseCode.REVOKED,
    ErrorCode.DOCUMENT_DELETED: CloseCode.NOT_FOUND,
    ErrorCode.ROOM_FULL: CloseCode.TRY_AGAIN_LATER,
}

# A refused handshake (``realtime.handshake``) -> its close code.
FOR_REFUSAL: Final[dict[RefusalKind, CloseCode]] = {
    RefusalKind.BAD_REQUEST: CloseCode.BAD_REQUEST,
    RefusalKind.UNAUTHENTICATED: CloseCode.UNAUTHENTICATED,
    RefusalKind.NOT_FOUND: CloseCode.NOT_FOUND,
    RefusalKind.ROOM_FULL: CloseCode.TRY_AGAIN_LATER,
    RefusalKind.UNAVAILABLE: CloseCode.TRY_AGAIN_LATER,
}

# Codes whose closing is preceded by y-protocols' auth "permission denied" message with the
# reason in words (the stock client logs it with console.warn).
PERMISSION_DENIED: Final = frozenset(
    {CloseCode.UNAUTHENTICATED, CloseCode.FORBIDDEN, CloseCode.NOT_FOUND, CloseCode.REVOKED}
)
