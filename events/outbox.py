"""Writing events: :func:`record` adds one to the outbox inside the caller's transaction, so
the event exists exactly when the change it tells about was committed. :class:`Claimed` is an
outbox row as the dispatcher claims it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from sqlalchemy import event, insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from events.catalogue import kind as catalogue_kind
from storage.models import Loop, OutboxEvent, Song, utcnow

_INSERT = insert(OutboxEvent)


class Claimed(NamedTuple):
    """An outbox row claimed for dispatch: its place in the outbox and its kind."""

    seq: int
    kind: str


# Marks a connection whose transaction wrote an event: its commit wakes the dispatcher.
_WROTE_EVENTS = "events_written"


def document_ref(document: Loop | Song) -> dict[str, Any]:
    """How an event names a loop or song."""
    return named_ref("loop" if isinstance(document, Loop) else "song", document.id, document.name)


def named_ref(kind: str, doc_id: uuid.UUID, name: str) -> dict[str, Any]:
    """:func:`document_ref` from the row's kind, id and name alone."""
    return {"kind": kind, "id": str(doc_id), "name": name}


async def record(
    session: AsyncSession,
    name: str,
    data: dict[str, Any],
    *,
    actor_id: uuid.UUID | None = None,
    document: Loop | Song | None = None,
    resource: tuple[str, uuid.UUID] | None = None,
) -> uuid.UUID:
    """Write the event ``name`` (a catalogue kind) in ``session``'s transaction; its id.

    ``document`` (or ``resource``, a type and id) is what the event is about: notifications
    about it are shown only to those who may still read it.
    """
    catalogue_kind(name)  # a kind nobody defined is a programming error, found here
    if document is not None:
        resource = ("loop" if isinstance(document, Loop) else "song", document.id)
    event_id = uuid.uuid4()
    now = utcnow()
    # Core on the session's connection: the ORM's statement machinery would cost more than
    # the INSERT itself on this path (bench/events.py).
    connection = await session.connection()
    await connection.execute(
        _INSERT,
        {
            "id": event_id,
            "kind": name,
            "occurred_at": now,
            "actor_id": actor_id,
            "resource_type": resource[0] if resource else None,
            "resource_id": resource[1] if resource else None,
            "data": data,
            "available_at": now,
        },
    )
    connection.info[_WROTE_EVENTS] = True
    return event_id


def on_commit_of_events(engine: AsyncEngine, wake: Callable[[], None]) -> Callable[[], None]:
    """Call ``wake`` after each commit that wrote an event on ``engine``; returns the undo."""

    def committed(connection: Connection) -> None:
        if connection.info.pop(_WROTE_EVENTS, False):
            wake()

    def rolled_back(connection: Connection) -> None:
        # An invalidated connection (a statement cancelled mid-way) has no info left to
        # clear, and reading it would raise, replacing the error that ended the transaction.
        if not connection.invalidated:
            connection.info.pop(_WROTE_EVENTS, None)

    sync_engine = engine.sync_engine
    event.listen(sync_engine, "commit", committed)
    event.listen(sync_engine, "rollback", rolled_back)

    def remove() -> None:
        event.remove(sync_engine, "commit", committed)
        event.remove(sync_engine, "rollback", rolled_back)

    return remove
