"""The in-app inbox: who is notified of an event, grouping, what a user may still see, and
which kinds each user turned off.

An event of a grouped kind (comments, forks) joins the recipient's unread entry for the same
kind and document, counting up, so twenty comments on one loop are one entry. Nobody is
notified of their own action, nor about a document they cannot read; and an entry stops being
listed when its document is deleted, hidden by a moderator, or no longer readable by them, or
when the comment it names was hidden by a moderator.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from events.catalogue import BY_NAME, Audience
from storage import moderation
from storage.errors import DomainError
from storage.models import (
    Collaborator,
    Comment,
    Loop,
    Notification,
    NotificationSetting,
    OutboxEvent,
    Song,
    User,
    utcnow,
)

MAX_ACTORS = 5  # the latest actors an entry names
MAX_PAGE = 50


class BadCursor(DomainError):
    status = 400
    code = "invalid_cursor"


class UnknownKind(DomainError):
    status = 400
    code = "unknown_event_kind"


@dataclass(frozen=True)
class Delivered:
    """A notification written for ``user_id``: what its live push carries."""

    user_id: uuid.UUID
    body: dict[str, Any]


def notifiable_kinds() -> list[str]:
    return [k.name for k in BY_NAME.values() if k.audience is not Audience.NOBODY]


def as_json(n: Notification) -> dict[str, Any]:
    return {
        "id": str(n.id),
        "kind": n.kind,
        "count": n.count,
        "actorIds": list(n.actor_ids),
        "resource": {"type": n.resource_type, "id": str(n.resource_id)} if n.resource_id else None,
        "data": n.data,
        "eventId": str(n.event_id),
        "createdAt": _utc_text(n.created_at),
        "updatedAt": _utc_text(n.updated_at),
        "read": n.read_at is not None,
    }


def _utc_text(when: datetime) -> str:
    """As the REST routes write a time (``2026-12-07T15:19:24.892233Z``), so a live push and
    ``GET /api/notifications`` give an entry alike (SQLite hands back naive UTC times)."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- fan-out --------------------------------------------------------------------------------


async def _document(session: AsyncSession, event: OutboxEvent) -> Loop | Song | None:
    if event.resource_id is None or event.resource_type not in ("loop", "song"):
        return None
    model = Loop if event.resource_type == "loop" else Song
    return await session.get(model, event.resource_id)


async def _recipients(
    session: AsyncSession, event: OutboxEvent, document: Loop | Song | None, admin_ids: Collection[uuid.UUID]
) -> set[uuid.UUID]:
    audience = BY_NAME[event.kind].audience
    if audience in (Audience.SUBJECT, Audience.REPORTER):
        return {uuid.UUID(event.data["userId"])}
    if audience is Audience.MODERATORS:
        return set(await moderation.admin_ids(session, admin_ids))
    if document is None:
        return set()
    found = {document.user_id}
    if audience is Audience.THREAD:
        # Who had taken part when the event happened (it may be fanned out later).
        authors = await session.scalars(
            select(Comment.author_id)
            .where(Comment.resource_id == document.id, Comment.created_at <= event.occurred_at)
            .distinct()
        )
        found.update(authors)
    elif audience is Audience.COLLABORATORS:
        found.update(
            await session.scalars(select(Collaborator.user_id).where(Collaborator.resource_id == document.id))
        )
    return found


async def _muted(session: AsyncSession, users: Collection[uuid.UUID], kind: str) -> set[uuid.UUID]:
    rows = await session.execute(
        select(NotificationSetting.user_id, NotificationSetting.muted_kinds).where(
            NotificationSetting.user_id.in_(users)
        )
    )
    return {user_id for user_id, muted in rows if kind in muted}


def tells_someone(kind: str) -> bool:
    """Whether events of ``kind`` may notify anyone (else :func:`fan_out` has nothing to do)."""
    return BY_NAME[kind].audience is not Audience.NOBODY


async def fan_out(
    session: AsyncSession, event: OutboxEvent, *, admin_ids: Collection[uuid.UUID]
) -> list[Delivered]:
    """Write (or count into) the notifications of ``event``, in the dispatcher's transaction."""
    if not tells_someone(event.kind):
        return []
    document = await _document(session, event)
    if event.resource_id is not None and event.resource_type in ("loop", "song") and document is None:
        return []  # deleted since
    if event.actor_id is not None:
        actor_hidden = await session.scalar(select(User.hidden_at).where(User.id == event.actor_id))
        if actor_hidden is not None:
            return []  # a hidden account's actions reach nobody
    recipients = await _recipients(session, event, document, admin_ids) - {event.actor_id}
    if not recipients:
        return []
    recipients -= await _muted(session, recipients, event.kind)
    if document is not None:
        recipients = {u for u in recipients if await _may_read(session, document, u)}
    existing_users = set(await session.scalars(select(User.id).where(User.id.in_(recipients))))
    written = []
    for user_id in sorted(existing_users):
        written.append(Delivered(user_id, as_json(await _write(session, event, user_id))))
    return written


async def _may_read(session: AsyncSession, document: Loop | Song, user_id: uuid.UUID) -> bool:
    if document.user_id == user_id:
        return True
    if document.hidden_at is not None:
        return False
    if document.is_public:
        return True
    role = await session.scalar(
        select(Collaborator.role).where(
            Collaborator.resource_id == document.id, Collaborator.user_id == user_id
        )
    )
    return role is not None


async def _write(session: AsyncSession, event: OutboxEvent, user_id: uuid.UUID) -> Notification:
    grouped = BY_NAME[event.kind].group and event.resource_id is not None
    group_key = f"{event.kind}:{event.resource_id}" if grouped else f"{event.kind}:{event.id}"
    actors = [str(event.actor_id)] if event.actor_id else []
    now = utcnow()
    entry = None
    if grouped:
        entry = await session.scalar(
            select(Notification).where(
                Notification.user_id == user_id,
                Notification.group_key == group_key,
                Notification.read_at.is_(None),
            )
        )
    if entry is not None:
        entry.count += 1
        entry.actor_ids = (actors + [a for a in entry.actor_ids if a not in actors])[:MAX_ACTORS]
        entry.data = event.data
        entry.event_id = event.id
        entry.updated_at = now
    else:
        entry = Notification(
            user_id=user_id,
            kind=event.kind,
            group_key=group_key,
            resource_type=event.resource_type,
            resource_id=event.resource_id,
            count=1,
            actor_ids=actors,
            data=event.data,
            event_id=event.id,
            created_at=now,
            updated_at=now,
        )
        session.add(entry)
    await session.flush()
    return entry


# --- reading ----------------------------------------------------------------------------------


def _readable(user_id: uuid.UUID) -> ColumnElement[bool]:
    """SQL: the entry is about nothing, or about a document ``user_id`` may still read."""

    def document_readable(model: type[Loop] | type[Song], resource_type: str) -> ColumnElement[bool]:
        collaborator = exists().where(Collaborator.resource_id == model.id, Collaborator.user_id == user_id)
        return and_(
            Notification.resource_type == resource_type,
            exists().where(
                model.id == Notification.resource_id,
                or_(
                    model.user_id == user_id,
                    and_(model.hidden_at.is_(None), or_(model.is_public, collaborator)),
                ),
            ),
        )

    return and_(
        or_(
            Notification.resource_id.is_(None),
            Notification.resource_type.not_in(("loop", "song")),
            document_readable(Loop, "loop"),
            document_readable(Song, "song"),
        ),
        ~_names_a_hidden_comment(),
    )


def _names_a_hidden_comment() -> ColumnElement[bool]:
    """SQL: the entry's event names a comment (``data.comment.id``) a moderator has hidden since.

    Compared as text without dashes, the one form both databases give (SQLite keeps a UUID as
    32 hex digits, Postgres prints it with dashes); few comments are hidden, so it is cheap.
    """
    named = Notification.data[("comment", "id")].as_string()
    return exists().where(
        Comment.hidden_at.is_not(None),
        func.replace(cast(Comment.id, String), "-", "") == func.replace(named, "-", ""),
    )


def encode_cursor(n: Notification) -> str:
    raw = json.dumps([n.updated_at.isoformat(), str(n.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, entry_id = json.loads(raw)
        return datetime.fromisoformat(when), uuid.UUID(entry_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadCursor(f"not a cursor this server gave out ({exc.__class__.__name__})") from None


@dataclass(frozen=True)
class Page:
    entries: list[dict[str, Any]]
    next_cursor: str | None
    unread: int


async def list_page(
    session: AsyncSession, user_id: uuid.UUID, *, cursor: str | None, limit: int, unread_only: bool = False
) -> Page:
    """Newest first (by the latest event of each entry), ``limit`` entries after ``cursor``."""
    where = [Notification.user_id == user_id, _readable(user_id)]
    if unread_only:
        where.append(Notification.read_at.is_(None))
    query = select(Notification).where(*where)
    if cursor is not None:
        when, entry_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                Notification.updated_at < when,
                and_(Notification.updated_at == when, Notification.id < entry_id),
            )
        )
    rows = list(
        await session.scalars(
            query.order_by(Notification.updated_at.desc(), Notification.id.desc()).limit(limit + 1)
        )
    )
    unread = await session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None), _readable(user_id))
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([as_json(n) for n in rows], encode_cursor(rows[-1]) if more else None, int(unread or 0))


async def mark_read(session: AsyncSession, user_id: uuid.UUID, entry_id: uuid.UUID | None) -> int:
    """Mark one entry (or all, ``entry_id`` None) read; how many changed. An entry of someone
    else is reported as not found by the caller (0)."""
    where = [Notification.user_id == user_id, Notification.read_at.is_(None)]
    if entry_id is not None:
        where.append(Notification.id == entry_id)
    result = await session.execute(update(Notification).where(*where).values(read_at=utcnow()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def entry_exists(session: AsyncSession, user_id: uuid.UUID, entry_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(Notification.id).where(Notification.id == entry_id, Notification.user_id == user_id)
    )
    return found is not None


async def muted_kinds(session: AsyncSession, user_id: uuid.UUID) -> list[str]:
    row = await session.get(NotificationSetting, user_id)
    return sorted(row.muted_kinds) if row is not None else []


async def set_kinds(session: AsyncSession, user_id: uuid.UUID, kinds: dict[str, bool]) -> list[str]:
    """Turn kinds on (True) or off (False); the kinds now off."""
    known = set(notifiable_kinds())
    unknown = sorted(set(kinds) - known)
    if unknown:
        raise UnknownKind(f"no notification kind is called {', '.join(map(repr, unknown))}")
    row = await session.get(NotificationSetting, user_id)
    muted = set(row.muted_kinds) if row is not None else set()
    muted |= {k for k, on in kinds.items() if not on}
    muted -= {k for k, on in kinds.items() if on}
    if row is None:
        session.add(NotificationSetting(user_id=user_id, muted_kinds=sorted(muted), updated_at=utcnow()))
    else:
        row.muted_kinds = sorted(muted)
        row.updated_at = utcnow()
    return sorted(muted)
