"""A document's Yjs state for servers (the binary document API, ``rest/yjs_documents.py``):
read it as one update, or apply an update as a caller through the same checks as a live edit.

Both go through the live room, so a read sees every relayed edit and a write is seen by live
collaborators of both wires, on every instance, once durable.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from music.kinds import DocKind
from music.lib0 import MalformedPayload
from music.roles import Role
from music.yjs_checks import check_state_vector
from realtime.errors import ErrorCode, RealtimeError
from realtime.rooms import Room, Session, TokenBucket
from realtime.service import DocumentService
from storage.errors import NotFound

EMPTY_STATE_VECTOR = b"\x00"


@dataclass(frozen=True)
class Caller:
    """Who asks: a user (from a bearer token), a share link's token, both or neither."""

    user_id: uuid.UUID | None
    share_token: str | None


async def readable_room(service: DocumentService, kind: DocKind, doc_id: uuid.UUID, caller: Caller) -> Room:
    """The document's live room, if the caller may read it. Raises NotFound (no such
    document, or not the caller's to read: private documents of others do not exist)."""
    await _role(service, kind, doc_id, caller)
    return await service.open_room(kind, doc_id)


async def _role(service: DocumentService, kind: DocKind, doc_id: uuid.UUID, caller: Caller) -> Role:
    """The caller's role, checked before the room is opened: loading a document into memory
    is not something a stranger may make the server do. Raises NotFound."""
    role = await service.role_of(kind, doc_id, user_id=caller.user_id, share_token=caller.share_token)
    if role is None:
        raise NotFound(f"{kind.value} not found")
    return role


def read_update(service: DocumentService, room: Room, base: bytes | None) -> bytes:
    """The document as one Yjs update, or what a client at state vector ``base`` lacks.
    Raises RealtimeError ``malformed_message`` (``base`` is no state vector)."""
    if base is None:
        return room.missing_update(EMPTY_STATE_VECTOR)
    try:
        check_state_vector(base, max_bytes=service.limits.max_update_bytes)
    except (MalformedPayload, ValueError):
        raise RealtimeError(ErrorCode.MALFORMED_MESSAGE, "stateVector is not a Yjs state vector") from None
    return room.missing_update(base)


async def apply_update(
    service: DocumentService, kind: DocKind, doc_id: uuid.UUID, caller: Caller, update: bytes
) -> bytes:
    """Apply ``update`` as ``caller`` (the checks of a live edit: role, sizes, backlog, the
    Yjs header, bounds with rollback), wait until it is durable, and return the document's
    state vector after it.

    Raises NotFound and RealtimeError (``read_only``, ``update_too_large``,
    ``malformed_update``, ``missing_dependencies``, ``content_too_large``, ...).
    """
    role = await _role(service, kind, doc_id, caller)
    room = await service.open_room(kind, doc_id)
    session = Session(  # the caller for this one request: never joins the room
        sid=f"rest-{uuid.uuid4().hex}",
        user_id=caller.user_id,
        display_name="",
        role=role,
        share_token=caller.share_token,
        bucket=TokenBucket(service.limits.max_messages_per_second),
    )
    committed = service.client_update(room, session, update)
    if committed is not None:
        try:
            await committed  # durable (and relayed) before we answer
        except Exception:  # only at shutdown: the log retries database errors until durable
            raise RealtimeError(ErrorCode.STORAGE_UNAVAILABLE, "the update could not be stored") from None
    return room.state_vector()
