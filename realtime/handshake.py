"""Who may open a live document, whatever wire they came by: the credentials (a token or a
share token), the caller's role, and a place in the room.

Both wires (``realtime/ysocketio/``, ``realtime/ywebsocket/``) call :func:`admit` and
translate a :class:`Refusal` into their own terms: a Socket.IO connect refusal, or a
WebSocket close code.
"""

from __future__ import annotations

import asyncio
import enum
import re
import uuid
from dataclasses import dataclass
from typing import Any, Final

from identity.authenticator import Authenticator
from identity.errors import ExpiredToken, InvalidToken
from identity.firebase import FirebaseUnavailable
from music.bounds import UNSTORABLE_TEXT
from music.ids import CANONICAL_UUID
from music.kinds import DocKind
from realtime.errors import ErrorCode, RealtimeError
from realtime.rooms import Room, RoomTransport, Session, TokenBucket
from realtime.service import DocumentService
from storage.errors import NotFound

DOCUMENT_NAME: Final = re.compile(rf"({'|'.join(DocKind)}):({CANONICAL_UUID})")
MAX_SHARE_TOKEN_LEN: Final = 256  # share tokens are short random strings
GUEST_NAME: Final = "Guest"  # how a share-link visitor without an account appears


def parse_document_name(name: str) -> tuple[DocKind, uuid.UUID] | None:
    """``(kind, id)`` of ``loop:<uuid>`` or ``song:<uuid>`` (the id in its canonical spelling
    only, ``music.ids``), None for anything else."""
    match = DOCUMENT_NAME.fullmatch(name)
    if match is None:
        return None
    return DocKind(match.group(1)), uuid.UUID(match.group(2))


class RefusalKind(enum.Enum):
    """Why a caller may not open a document, in the terms every wire maps to its own."""

    BAD_REQUEST = "bad_request"  # credentials of the wrong type
    UNAUTHENTICATED = "unauthenticated"  # no credentials, or a bad or expired token
    NOT_FOUND = "not_found"  # no such document, or not the caller's to see
    ROOM_FULL = ErrorCode.ROOM_FULL.value  # no place left (per user, per room, or for viewers)
    UNAVAILABLE = "unavailable"  # sign-in verification is down; try again


class Refusal(Exception):
    """A refused caller: its kind, a message for people, and details for programs
    (``{"code": "token_expired"}`` for an expired token: refresh it and reconnect)."""

    def __init__(self, kind: RefusalKind, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.data = data


@dataclass(frozen=True)
class Credentials:
    """What a caller presented: a bearer token, a share link's token, or both."""

    token: str | None
    share_token: str | None

    @classmethod
    def read(cls, token: Any, share_token: Any, kind: DocKind) -> Credentials:
        """Check what a client sent. Raises :class:`Refusal`."""
        if not isinstance(token, str | None) or not isinstance(share_token, str | None):
            raise Refusal(RefusalKind.BAD_REQUEST, "auth.token and auth.shareToken must be strings")
        if not token and not share_token:
            raise Refusal(
                RefusalKind.UNAUTHENTICATED,
                "authentication required: connect with auth {token} or {shareToken}",
            )
        if share_token and (len(share_token) > MAX_SHARE_TOKEN_LEN or UNSTORABLE_TEXT.search(share_token)):
            # No such link (and no database query).
            raise Refusal(RefusalKind.NOT_FOUND, f"{kind.value} not found")
        return cls(token or None, share_token or None)


def token_refusal(exc: InvalidToken) -> Refusal:
    """The refusal of a bad token: ``token expired: …`` (refresh it and reconnect) or
    ``invalid token: …`` (sign in again), with the REST error's code as ``data.code``."""
    prefix = "token expired" if isinstance(exc, ExpiredToken) else "invalid token"
    return Refusal(RefusalKind.UNAUTHENTICATED, f"{prefix}: {exc.reason}", {"code": exc.code})


async def admit(
    service: DocumentService,
    auth: Authenticator,
    kind: DocKind,
    doc_id: uuid.UUID,
    credentials: Credentials,
    *,
    sid: str,
    wire: RoomTransport,
    transport_id: Any = None,
) -> tuple[Room, Session]:
    """Authenticate the caller, open the room, answer the role and take a place in the room.

    Raises :class:`Refusal`; on success the session is in the room (the wire must make it
    ``leave`` when the socket goes).
    """
    user_id = None
    try:
        if credentials.token:
            caller = await auth.authenticate(credentials.token)
            user_id = caller.user_id
        # The room (and the name) at once. The room's access rules answer the role without
        # another query (a refused caller leaves at most an empty room, unloaded when idle).
        opening = service.open_room(kind, doc_id)
        if user_id is None:
            room, display_name = await opening, GUEST_NAME
        else:
            room, display_name = await asyncio.gather(opening, _display_name(service, user_id))
        role = await service.role_of(kind, doc_id, user_id=user_id, share_token=credentials.share_token)
    except InvalidToken as exc:
        raise token_refusal(exc) from None
    except FirebaseUnavailable:
        raise Refusal(RefusalKind.UNAVAILABLE, "sign-in verification is temporarily unavailable") from None
    except NotFound:
        raise Refusal(RefusalKind.NOT_FOUND, f"{kind.value} not found") from None
    if role is None:  # private documents of others do not exist
        raise Refusal(RefusalKind.NOT_FOUND, f"{kind.value} not found")
    session = Session(
        sid=sid,
        user_id=user_id,
        display_name=display_name,
        role=role,
        share_token=credentials.share_token,
        bucket=TokenBucket(service.limits.max_messages_per_second),
        transport_id=transport_id,
        wire=wire,
    )
    try:
        service.join(room, session)
    except RealtimeError as exc:
        raise Refusal(RefusalKind.ROOM_FULL, exc.message) from None
    return room, session


async def _display_name(service: DocumentService, user_id: uuid.UUID) -> str:
    name = await service.shown_name(user_id)
    if name is None:
        raise InvalidToken("this account no longer exists")
    return name
